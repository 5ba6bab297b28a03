"""Atrial activity before each QRS: a P-wave score against the patient's own P wave.

Sinus rhythm (and premature atrial beats, sinus arrhythmia, most ectopy) has a P
wave at a fixed time before the QRS; AF has none, only fibrillatory waves that are
not locked to the QRS. :class:`PWaveScorer` keeps a running average of the signal
0.26 s to 0.08 s before each R peak, with its mean and linear trend removed (the
baseline), and scores each beat by the correlation of its own window with that
average: about 0.8-0.9 in sinus rhythm on MIT-BIH lead MLII, about 0 in AF, where
the average holds no consistent wave. The score feeds :class:`dsp.af.AfDetector`
(a clear P wave lowers the RR irregularity it judges).

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
    """

    def __init__(self, fs: float) -> None:
        self.before = int(round(FROM_S * fs))  # samples from the window's start to R
        self.length = self.before - int(round(TO_S * fs))
        t = np.linspace(-1.0, 1.0, self.length)
        basis = np.linalg.qr(np.column_stack([np.ones(self.length), t]))[0]
        # removes a window's mean and linear trend in one product
        self._detrend = np.eye(self.length) - basis @ basis.T
        self._template = np.zeros(self.length)
        self._unit = np.zeros(self.length)
        self._n = 0

    def reset(self) -> None:
        self._template[:] = 0.0
        self._unit[:] = 0.0
        self._n = 0

    def score(self, window: np.ndarray, learn: bool = True) -> float:
        """Correlation of ``window`` (the ``length`` samples before R, mV) with the
        running template (NaN for the first 4 beats); the window joins the template
        when ``learn``."""
        d = self._detrend @ window
        norm = math.sqrt(float(d @ d))
        if not norm > 0:
            return math.nan
        d /= norm
        value = float(self._unit @ d) if self._n >= 4 else math.nan
        if learn:
            self._n += 1
            self._template += (d - self._template) / min(self._n, LEARN)
            t_norm = math.sqrt(float(self._template @ self._template))
            self._unit = self._template / t_norm if t_norm > 0 else self._template * 0.0
        return value
