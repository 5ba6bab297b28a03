"""A recorded ECG replayed as a simulated device's signal (a WFDB record, e.g. MIT-BIH).

``RecordReplay(path)`` reads one channel of a WFDB record (``wfdb``, the ``[records]``
extra), resamples it to the device's rate (polyphase, SciPy) and hands it out block by
block with ``generate(n)`` like :class:`~sim.synth.EcgSynth`, starting again at the end.
Missing samples of the record are replayed as a flat line at 0 mV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["RecordReplay"]


class RecordReplay:
    """One channel of a WFDB record at ``fs`` Hz, in a loop (see the module docstring)."""

    def __init__(
        self, path: str | Path, fs: float = 250.0, channel: int = 0, start_s: float = 0.0
    ) -> None:
        import wfdb
        from scipy.signal import resample_poly

        record = wfdb.rdrecord(str(path), channels=[channel])
        x = np.nan_to_num(record.p_signal[:, 0].astype(np.float64))
        ratio = Fraction(fs / float(record.fs)).limit_denominator(1000)
        if ratio != 1:
            x = resample_poly(x, ratio.numerator, ratio.denominator)
        self.fs = fs
        self.name = Path(path).name
        self.signal = x.astype(np.float32)
        self._pos = int(round(start_s * fs)) % len(self.signal)

    @property
    def duration_s(self) -> float:
        return len(self.signal) / self.fs

    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` samples, (n, 1) mV."""
        idx = (self._pos + np.arange(n)) % len(self.signal)
        self._pos = (self._pos + n) % len(self.signal)
        return self.signal[idx][:, None]
