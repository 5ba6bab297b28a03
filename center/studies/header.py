"""The gateway's WFDB records read back at the center (pure): header facts and samples.

A gateway record is WFDB format 16 (little-endian int16, leads interleaved), gain 1000
adu/mV (1 µV), and -32768 ("no sample") where nothing was received.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

__all__ = ["NO_SAMPLE", "HeaderFacts", "parse_header", "samples_of"]

NO_SAMPLE = -32768


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What a record header says: signals, rate (Hz), samples, UTC of the first sample."""

    n_sig: int
    fs: float
    samples: int
    start_utc: float
    leads: tuple[str, ...]
    first_seq: int


def parse_header(name: str, text: str) -> HeaderFacts:
    """The facts of a gateway record header (``ValueError`` when it is not one)."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    head = lines[0].split()
    n_sig, fs, length = int(head[1]), float(head[2]), int(head[3])
    start = datetime.strptime(f"{head[5]} {head[4]}", "%d/%m/%Y %H:%M:%S.%f")
    leads = tuple(ln.split(maxsplit=8)[-1] for ln in lines[1 : 1 + n_sig])
    tail = name.rpartition("/")[2].rpartition("_")[2]
    if not 0 < fs <= 10000 or n_sig < 1 or len(leads) != n_sig:
        raise ValueError("not a gateway record header")
    return HeaderFacts(
        n_sig,
        fs,
        length,
        start.replace(tzinfo=UTC).timestamp(),
        leads,
        int(tail) if tail.isdigit() else 0,
    )


def samples_of(data: bytes, n_sig: int) -> np.ndarray:
    """Signal bytes as int16 samples, shape (n, n_sig) (µV; -32768 = no sample)."""
    usable = len(data) - len(data) % (2 * n_sig)
    return np.frombuffer(data[:usable], dtype="<i2").reshape(-1, n_sig)
