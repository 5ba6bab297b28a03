"""Atrial activity before each QRS: a P-wave score against the patient's own P wave.

Sinus rhythm (and premature atrial beats, sinus arrhythmia, most ectopy) has a P
wave at a fixed time before the QRS; AF has none, only fibrillatory waves that are
not locked to the QRS. :class:`PWaveScorer` keeps a running average of the signal
0.26 s to 0.08 s before each R peak, with its mean and linear trend removed (the
baseline), and scores each beat by the correlation of its own window with that
average: about 0.8-0.9 in sinus rhythm on MIT-BIH lead MLII, about 0 in AF, where
the average holds no consistent wave. The score feeds :class:`dsp.af.AfDetector`
(a clear P wave lowers the RR irregularity it judges). The mean and linear trend of
each window are removed by regression on a centred time axis.

Atrial flutter with variable conduction scores low as well (its flutter waves are
not locked to the QRS either): the score does not tell flutter from AF.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PWaveScorer"]

FROM_S = 0.26  # the window starts this long before R ...
TO_S = 0.08  # ... and ends this long before it
LEARN = 16  # the running average's horizon, beats


class PWaveScorer:
    """Running P-wave template and per-beat score (see the module docstring).

    Parameters
    ----------
    fs
        Sample rate, Hz.
    kernel
        The compiled kernel module (``dsp._qrs_kernel``), or None for the numpy code.

    Notes
    -----
    The state is one float64 array (:attr:`state`: the number of beats learnt, the
    running template, its unit-norm copy), so that the compiled kernel
    (``dsp._qrs_kernel.pwave``) can score with it; both compute every sum in index
    order and give the same score to the last bit.
    """

    def __init__(self, fs: float, kernel: object | None = None) -> None:
        self._kernel = kernel
        self.before = int(round(FROM_S * fs))  # samples from the window's start to R
        self.length = self.before - int(round(TO_S * fs))
        n = self.length
        self._t = np.linspace(-1.0, 1.0, n)  # a time axis centred on the window
        self._tt = float(np.add.accumulate(self._t * self._t)[-1])
        self.state = np.zeros(1 + 2 * n)  # [beats learnt, template (n), unit template (n)]

    def reset(self) -> None:
        self.state[:] = 0.0

    def score(self, window: np.ndarray, learn: bool = True) -> float:
        """Correlation of ``window`` (the ``length`` samples before R, mV) with the
        running template, each with its mean and linear trend removed (NaN for the first
        4 beats); the window joins the template when ``learn``."""
        if self._kernel is not None:
            return self._kernel.pwave(self.state, self._t, self._tt, window, learn)  # type: ignore[attr-defined]
        n = self.length
        state = self.state
        mean = float(np.add.accumulate(window)[-1]) / n
        slope = float(np.add.accumulate(window * self._t)[-1]) / self._tt
        d = window - mean - slope * self._t
        norm = math.sqrt(float(np.add.accumulate(d * d)[-1]))
        if not norm > 0:
            return math.nan
        d = d / norm
        template, unit = state[1 : 1 + n], state[1 + n :]
        count = state[0]
        value = float(np.add.accumulate(unit * d)[-1]) if count >= 4 else math.nan
        if learn:
            count = state[0] = count + 1.0
            template += (d - template) / min(count, LEARN)
            t_norm = math.sqrt(float(np.add.accumulate(template * template)[-1]))
            unit[:] = template / t_norm if t_norm > 0 else 0.0
        return value
