"""IIR filters as cascades of second-order sections: design and filtering (pure numpy).

Design (no SciPy at run time: importing ``scipy.signal`` costs a Raspberry Pi about
60 MB of resident memory, half the gateway's budget):

- :func:`butter_sos`: digital Butterworth low-pass, high-pass and band-pass filters by
  the bilinear transform with pre-warped edges. The analog prototype's poles lie on the
  unit circle; conjugate pairs become one section each; zeros sit at z = -1 (low-pass),
  z = +1 (high-pass) or one of each (band-pass); every section is scaled to unit gain
  where the filter passes (DC, Nyquist, or the geometric centre of the band).
- :func:`notch_sos`: the second-order IIR notch of width ``f0 / Q``.
- :func:`steady_state`: each section's state for a unit step held forever, to start a
  filter on its first sample without a start-up transient.

The tests compare every design with :func:`scipy.signal.butter` / ``iirnotch`` (same
frequency response to 1e-12).

Filtering, :func:`sosfilt_inplace`, runs each section in transposed direct form II.
Its implementation is chosen once, at first use: the compiled kernel
(``dsp._qrs_kernel.sosfilt``, built at install when a C compiler is there), else SciPy's
compiled loop (imported then, not before). Both compute the same recurrence, operation
for operation. :func:`sosfiltfilt` filters a whole window forward and backward (zero
phase; for strips, never for streams).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal

import numpy as np

__all__ = ["butter_sos", "notch_sos", "sosfilt_inplace", "sosfiltfilt", "steady_state"]

BType = Literal["lowpass", "highpass", "bandpass"]


def _prototype(order: int) -> np.ndarray:
    """Poles of the analog Butterworth low-pass with a 1 rad/s cutoff (left half plane)."""
    k = np.arange(order)
    return np.exp(1j * np.pi * (2 * k + order + 1) / (2 * order))


def _bilinear(s: np.ndarray, fs: float) -> np.ndarray:
    """Analog poles → digital poles, z = (2 fs + s) / (2 fs - s)."""
    return (2 * fs + s) / (2 * fs - s)


def _warp(f_hz: float, fs: float) -> float:
    """The analog frequency (rad/s) the bilinear transform maps to ``f_hz``."""
    return 2 * fs * np.tan(np.pi * f_hz / fs)


def _sections(poles: np.ndarray, zeros: tuple[float, float]) -> list[np.ndarray]:
    """One section per conjugate pole pair (a real pole alone: first order), each with
    the zeros given (z1, z2 as real numbers; 0 stands for "no zero" in a first-order one)."""
    upper = sorted((p for p in poles if p.imag > 1e-12), key=lambda p: -abs(p))
    real = sorted((p.real for p in poles if abs(p.imag) <= 1e-12), key=abs)
    out = []
    for p in upper:
        z1, z2 = zeros
        out.append(np.array([1.0, -(z1 + z2), z1 * z2, 1.0, -2 * p.real, p.real**2 + p.imag**2]))
    for i in range(0, len(real) - 1, 2):
        z1, z2 = zeros
        a = [1.0, -(real[i] + real[i + 1]), real[i] * real[i + 1]]
        out.append(np.array([1.0, -(z1 + z2), z1 * z2, *a]))
    if len(real) % 2:
        out.append(np.array([1.0, -zeros[0], 0.0, 1.0, -real[-1], 0.0]))
    return out


def _unit_gain(sec: np.ndarray, w: float) -> np.ndarray:
    """``sec`` scaled to gain 1 at ``w`` rad/sample."""
    z = np.exp(-1j * w * np.arange(3))
    gain = abs(np.dot(sec[:3], z) / np.dot(sec[3:], z))
    out = sec.copy()
    out[:3] /= gain
    return out


def butter_sos(
    order: int, cutoff: float | tuple[float, float], btype: BType, fs: float
) -> np.ndarray:
    """A digital Butterworth filter as second-order sections (sections, 6).

    Parameters
    ----------
    order
        Order of the analog prototype (a band-pass has twice as many poles).
    cutoff
        -3 dB frequency, Hz; ``(low, high)`` for a band-pass.
    btype
        ``"lowpass"``, ``"highpass"`` or ``"bandpass"``.
    fs
        Sample rate, Hz.
    """
    proto = _prototype(order)
    if btype == "bandpass":
        low, high = cutoff  # type: ignore[misc]
        w1, w2 = _warp(low, fs), _warp(high, fs)
        bw, w0 = w2 - w1, np.sqrt(w1 * w2)
        half = proto * bw / 2
        root = np.sqrt(half**2 - w0**2 + 0j)
        poles = _bilinear(np.concatenate([half + root, half - root]), fs)
        centre = 2 * np.arctan(w0 / (2 * fs))
        return np.vstack([_unit_gain(s, centre) for s in _sections(poles, (1.0, -1.0))])
    wc = _warp(float(cutoff), fs)  # type: ignore[arg-type]
    if btype == "lowpass":
        poles = _bilinear(proto * wc, fs)
        return np.vstack([_unit_gain(s, 0.0) for s in _sections(poles, (-1.0, -1.0))])
    if btype == "highpass":
        poles = _bilinear(wc / proto, fs)
        return np.vstack([_unit_gain(s, np.pi) for s in _sections(poles, (1.0, 1.0))])
    raise ValueError(f"unknown filter type {btype!r}")


def notch_sos(f0: float, q: float, fs: float) -> np.ndarray:
    """Second-order notch at ``f0`` Hz, -3 dB width ``f0 / q``, unit gain elsewhere (1, 6)."""
    w0 = 2 * np.pi * f0 / fs
    g = 1.0 / (1.0 + np.tan(w0 / q / 2))
    c = np.cos(w0)
    return np.array([[g, -2 * g * c, g, 1.0, -2 * g * c, 2 * g - 1.0]])


def steady_state(sos: np.ndarray) -> np.ndarray:
    """Each section's transposed-direct-form-II state (sections, 2) after a unit step at
    the cascade's input has been held forever (later sections see the earlier gains)."""
    zi = np.zeros((sos.shape[0], 2))
    level = 1.0  # the step's level at this section's input
    for i, (b0, b1, b2, _a0, a1, a2) in enumerate(sos / sos[:, 3:4]):
        gain = (b0 + b1 + b2) / (1.0 + a1 + a2)
        z2 = b2 - a2 * gain
        zi[i] = (b1 - a1 * gain + z2, z2)
        zi[i] *= level
        level *= gain
    return zi


@functools.cache
def _implementation() -> Callable[[np.ndarray, np.ndarray, np.ndarray], None]:
    """The SOS loop to use, chosen at first call: compiled kernel, else SciPy's."""
    try:
        from dsp import _qrs_kernel

        return _qrs_kernel.sosfilt
    except ImportError:  # pragma: no cover - built wherever a C compiler was at install
        pass
    try:  # SciPy's compiled loop without the public function's per-call checks
        from scipy.signal._sosfilt import _sosfilt

        return lambda sos, zi, y: _sosfilt(sos, y, zi)
    except ImportError:  # pragma: no cover - other SciPy layouts
        from scipy import signal

        def public(sos: np.ndarray, zi: np.ndarray, y: np.ndarray) -> None:
            y[...], z = signal.sosfilt(sos, y, axis=1, zi=zi.transpose(1, 0, 2))
            zi[...] = z.transpose(1, 0, 2)

        return public


def sosfilt_inplace(sos: np.ndarray, y: np.ndarray, zi: np.ndarray) -> None:
    """Filter ``y`` (channels, n), C-contiguous float64, in place; ``zi`` (channels,
    sections, 2) float64 C-contiguous is the state carried between calls."""
    _implementation()(sos, zi, y)


def sosfiltfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filtering of ``x`` (n, channels) along time: forward, then backward,
    each started in steady state on an odd reflection of the ends (3 × (2 × sections + 1)
    samples, shortened for short inputs)."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    y = np.array(np.asarray(x, dtype=np.float64).T, order="C", ndmin=2)
    n = y.shape[1]
    pad = min(3 * (2 * sos.shape[0] + 1), max(n - 1, 0))
    if pad:
        left = 2 * y[:, :1] - y[:, pad:0:-1]
        right = 2 * y[:, -1:] - y[:, -2 : -pad - 2 : -1]
        y = np.ascontiguousarray(np.concatenate([left, y, right], axis=1))
    unit = steady_state(sos)
    for _ in range(2):
        zi = np.ascontiguousarray(unit[None, :, :] * y[:, :1, None])
        sosfilt_inplace(sos, y, zi)
        y = np.ascontiguousarray(y[:, ::-1])
    return y[:, pad : pad + n].T
