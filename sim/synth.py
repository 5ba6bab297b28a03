"""Realistic synthetic ECG for the simulated devices.

The heart is modelled as a moving electrical dipole (a vectorcardiogram): each
beat is a sum of Gaussian waves (P, Q, R, S, T), each with a 3-D direction.
Leads are projections of that dipole, so a 12-lead recording keeps the
relations real leads have (III = II - I, aVR = -(I + II) / 2, ...), the septal
q wave shows in V6 and not V1, and R waves grow from V1 to V5.

An ST-segment shift (ischaemic depression or elevation) is a dipole added as a
plateau from the J point into the T wave (:meth:`EcgSynth.set_st_vector`).

Heart rhythm: RR intervals follow the set heart rate with respiratory sinus
arrhythmia and a little random variability; the QT interval stretches with RR
(Bazett-like). Baseline wander from respiration and white noise are added.

Coordinates: x to the patient's left, y towards the feet, z anterior. Units mV, s.
Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["EcgSynth"]

# (name, time of wave centre relative to R in s (T scales with sqrt(RR)),
#  Gaussian width in s, dipole direction and size in mV)
_WAVES: tuple[tuple[str, float, float, tuple[float, float, float]], ...] = (
    ("P", -0.165, 0.022, (0.06, 0.11, 0.02)),
    ("Q", -0.024, 0.008, (-0.08, 0.02, 0.16)),
    ("R", 0.000, 0.010, (0.90, 1.00, 0.15)),
    ("S", 0.026, 0.010, (-0.20, -0.20, -0.45)),
    ("T", 0.290, 0.055, (0.20, 0.27, 0.10)),
)
_T_INDEX = 4
_WANDER_DIR = np.array([0.6, 0.8, 0.3])

# Frontal-plane leads are computed from I and II (Einthoven/Goldberger),
# precordial leads as projections on horizontal-plane directions
# (angle from the patient's left towards anterior, in degrees).
_PRECORDIAL_DEG = {"V1": 120.0, "V2": 100.0, "V3": 80.0, "V4": 60.0, "V5": 35.0, "V6": 10.0}
_PRECORDIAL_GAIN = 1.4  # chest electrodes sit closer to the heart than the limb electrodes
_I = np.array([1.0, 0.0, 0.0])
_II = np.array([np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0])

_LIMB = {
    "I": (1.0, 0.0),
    "II": (0.0, 1.0),
    "III": (-1.0, 1.0),
    "aVR": (-0.5, -0.5),
    "aVL": (1.0, -0.5),
    "aVF": (-0.5, 1.0),
}


def _lead_vector(name: str) -> np.ndarray:
    """The 3-D direction whose dot product with the dipole gives lead ``name`` (mV)."""
    if name in _LIMB:
        a, b = _LIMB[name]
        return a * _I + b * _II
    if name in _PRECORDIAL_DEG:
        ang = np.deg2rad(_PRECORDIAL_DEG[name])
        return _PRECORDIAL_GAIN * np.array([np.cos(ang), 0.0, np.sin(ang)])
    # A single-lead chest patch worn over the sternum looks much like lead II.
    return _II.copy()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class EcgSynth:
    """A continuous synthetic ECG source.

    Parameters
    ----------
    fs
        Sample rate, Hz.
    leads
        Lead names. Standard names (I, II, III, aVR, aVL, aVF, V1..V6) get their
        own projection; any other name (e.g. ``"ECG"`` for a patch) looks like II.
    hr_bpm
        Initial mean heart rate, beats per minute.
    seed
        Seed for the random variability and noise.
    noise_mv
        Standard deviation of additive white noise, mV.
    wander_mv
        Amplitude of respiratory baseline wander, mV.
    """

    def __init__(
        self,
        fs: float,
        leads: Sequence[str],
        hr_bpm: float = 72.0,
        seed: int = 0,
        *,
        noise_mv: float = 0.01,
        wander_mv: float = 0.05,
    ) -> None:
        if fs <= 0:
            raise ValueError("fs must be positive")
        self.fs = float(fs)
        self.leads = tuple(leads)
        self._proj = np.stack([_lead_vector(n) for n in self.leads], axis=1)  # (3, n_leads)
        self._rng = np.random.default_rng(seed)
        self._hr = float(hr_bpm)
        self.noise_mv = float(noise_mv)
        self.wander_mv = float(wander_mv)
        self._resp_hz = 0.25
        self._n_done = 0  # samples generated so far
        # Scheduled beats: R-peak time (s) and the RR (s) that preceded it.
        self._r_times: list[float] = []
        self._rr: list[float] = []
        self._next_r = 0.35  # first R peak at 0.35 s so its P wave is whole
        self._st = np.zeros(3)  # ST-segment dipole (mV): zero for a normal ST segment

    # --- ST segment --------------------------------------------------------
    def set_st_vector(self, dipole_mv: Sequence[float]) -> None:
        """Shift the ST segment (from the J point, 50 ms after R, into the T wave) by
        this 3-D dipole, mV: each lead's ST level moves by its projection (see
        :meth:`st_shift_mv`). Zero: a normal, isoelectric ST segment."""
        self._st = np.asarray(dipole_mv, dtype=np.float64).reshape(3)

    def st_shift_mv(self) -> np.ndarray:
        """The ST shift each lead shows with the current ST dipole, mV per lead."""
        return self._st @ self._proj

    @staticmethod
    def lead_dipole(name: str) -> np.ndarray:
        """The dipole along lead ``name``'s direction that moves that lead by +1 mV:
        ``set_st_vector(-0.1 * EcgSynth.lead_dipole("V5"))`` depresses V5's ST segment
        by 0.1 mV (and its neighbours by their projections)."""
        v = _lead_vector(name)
        return v / float(v @ v)

    # --- rhythm ----------------------------------------------------------
    @property
    def heart_rate(self) -> float:
        return self._hr

    def set_heart_rate(self, bpm: float) -> None:
        """Change the mean heart rate for beats not yet scheduled."""
        if not 20 <= bpm <= 250:
            raise ValueError(f"heart rate {bpm} bpm outside 20..250")
        self._hr = float(bpm)

    @property
    def beats_seq(self) -> np.ndarray:
        """Sample numbers of the true R peaks generated so far (int64)."""
        r = np.asarray(self._r_times, dtype=np.float64)
        seq = np.round(r * self.fs).astype(np.int64)
        return seq[seq < self._n_done]

    def r_times_between(self, t0: float, t1: float) -> list[float]:
        """True R-peak times (s since the start) in ``[t0, t1)``, among samples generated."""
        t1 = min(t1, self._n_done / self.fs)
        return [t for t in self._r_times if t0 <= t < t1]

    def _schedule_until(self, t_end: float) -> None:
        while self._next_r <= t_end:
            t = self._next_r
            rr_mean = 60.0 / self._hr
            # Respiratory sinus arrhythmia (+-4 %) and random beat-to-beat variability (2 %).
            rsa = 0.04 * np.sin(2 * np.pi * self._resp_hz * t)
            rr = rr_mean * (1.0 + rsa + 0.02 * self._rng.standard_normal())
            rr = float(np.clip(rr, 0.24, 3.0))
            self._r_times.append(t)
            self._rr.append(rr if self._rr else rr_mean)
            self._next_r = t + rr

    # --- samples ---------------------------------------------------------
    def generate(self, n: int) -> np.ndarray:
        """The next ``n`` samples, float32 ``(n, n_leads)`` in mV."""
        if n < 0:
            raise ValueError("n must be >= 0")
        s0 = self._n_done
        t = (s0 + np.arange(n)) / self.fs
        t_lo = s0 / self.fs
        t_hi = (s0 + n) / self.fs
        self._schedule_until(t_hi + 0.4)
        dipole = np.zeros((n, 3))
        # Beats whose waves reach into [t_lo, t_hi): P starts ~0.25 s before R, T ends ~0.7 s after.
        r = np.asarray(self._r_times)
        first = int(np.searchsorted(r, t_lo - 0.9))
        last = int(np.searchsorted(r, t_hi + 0.35))
        for k in range(first, last):
            rk = self._r_times[k]
            rr = self._rr[k]
            lo = int(np.searchsorted(t, rk - 0.3))
            hi = int(np.searchsorted(t, rk + 0.8))
            if lo >= hi:
                continue
            tt = t[lo:hi] - rk
            qt_scale = np.sqrt(min(max(rr, 0.3), 2.0))
            for i, (_name, off, width, vec) in enumerate(_WAVES):
                if i == _T_INDEX:
                    off, width = off * qt_scale, width * qt_scale
                g = np.exp(-0.5 * ((tt - off) / width) ** 2)
                dipole[lo:hi] += g[:, None] * np.asarray(vec)[None, :]
            if self._st.any():
                # plateau from the J point (rising over ~10 ms at 50 ms) to the T wave's peak
                t_peak = _WAVES[_T_INDEX][1] * qt_scale
                plateau = _sigmoid((tt - 0.050) / 0.003) * _sigmoid((t_peak - tt) / 0.025)
                dipole[lo:hi] += plateau[:, None] * self._st[None, :]
        out = dipole @ self._proj
        if self.wander_mv:
            # Respiration moves the heart and the electrodes' contact: wander as a slow dipole
            # keeps the relations between leads.
            wander = self.wander_mv * np.sin(2 * np.pi * self._resp_hz * t + 0.3)
            out += wander[:, None] * (_WANDER_DIR @ self._proj)[None, :]
        if self.noise_mv:
            out += self.noise_mv * self._rng.standard_normal(out.shape)
        self._n_done += n
        return out.astype(np.float32)
