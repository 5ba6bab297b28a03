"""EDF+C written data record by data record, so a study of weeks never sits in memory.

Why not edfio here: edfio (which the tests still use to read the files back) builds an
``Edf`` from whole signal arrays and writes the file from one array of every data record;
a 14-day 250 Hz lead is 600 MB as int16 before any copy. This module writes the same
layout incrementally: :func:`edf_header` makes the header record, :class:`EdfRecords` turns
blocks of samples (a whole number of 1-s data records) into the bytes of their data records
with the ``EDF Annotations`` signal, and the caller writes them as it reads the study.

Layout (EDF+ specification, "EDF+C": contiguous): the header gives the start date and
time to the second; the first time-keeping annotation of data record ``k`` is ``+(k +
frac)`` where ``frac`` is the start's fraction of a second; other annotations carry their
onset from the header's start time and sit in the data record their onset falls in (the
last record takes any later). The annotation signal has the width of the longest record's
annotations. Pure: no database, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

__all__ = ["EdfAnnotationNote", "EdfRecords", "edf_header"]

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_ANNOTATION_LABEL = "EDF Annotations"


@dataclass(frozen=True, slots=True)
class EdfAnnotationNote:
    """An annotation: onset (s from the recording's start), duration (s or None), text."""

    onset: float
    duration: float | None
    text: str


def _number(x: float) -> str:
    """A TAL number: at most 6 decimals, no trailing zeros."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _tal(onset: float, duration: float | None, text: str) -> bytes:
    head = f"+{_number(onset)}" if onset >= 0 else _number(onset)
    if duration is not None:
        head += f"\x15{_number(duration)}"
    return f"{head}\x14{text}\x14\x00".encode()


def _field(value: str, width: int) -> bytes:
    raw = value.encode("ascii", "replace")[:width]
    return raw.ljust(width, b" ")


def _ascii_token(value: str) -> str:
    """An EDF+ subfield: printable ASCII, no spaces."""
    out = "".join(c if 33 <= ord(c) < 127 else "_" for c in value)
    return out or "X"


class EdfRecords:
    """The data records of an EDF+C file of ``n_records`` 1-s records (see module docstring).

    Parameters
    ----------
    n_records
        Data records in the file (whole seconds).
    fs
        Samples per second of every signal (an integer rate).
    n_sig
        Signals (leads), int16 digital values each.
    frac
        The start's fraction of a second (0 <= frac < 1).
    notes
        Every annotation of the file (onsets from the start, s).
    """

    def __init__(
        self,
        n_records: int,
        fs: int,
        n_sig: int,
        frac: float = 0.0,
        notes: Sequence[EdfAnnotationNote] = (),
    ) -> None:
        self.n_records, self.fs, self.n_sig, self.frac = n_records, fs, n_sig, frac
        self._notes: dict[int, bytes] = {}
        for note in sorted(notes, key=lambda a: a.onset):
            k = min(max(int(math.floor(note.onset)), 0), n_records - 1)
            text = note.text.replace("\x14", " ").replace("\x15", " ")
            tal = _tal(note.onset + frac, note.duration, text)
            self._notes[k] = self._notes.get(k, b"") + tal
        widest = max((len(self._keeping(k)) + len(v) for k, v in self._notes.items()),
                     default=0)  # fmt: skip
        widest = max(widest, len(self._keeping(n_records - 1)))
        self.annotation_samples = (widest + 1) // 2  # int16 "samples" of the annotations

    def _keeping(self, k: int) -> bytes:
        return _tal(k + self.frac, None, "")

    @property
    def record_bytes(self) -> int:
        return 2 * (self.fs * self.n_sig + self.annotation_samples)

    def records(self, first: int, samples: np.ndarray) -> bytes:
        """The bytes of data records ``first``, ``first + 1``, ... holding ``samples``
        (int16, shape (k * fs, n_sig))."""
        k = len(samples) // self.fs
        if len(samples) != k * self.fs or samples.shape[1] != self.n_sig:
            raise ValueError("samples must be whole data records of every signal")
        if first + k > self.n_records:
            raise ValueError("more data records than the file holds")
        out = np.zeros((k, self.record_bytes), np.uint8)
        x = np.ascontiguousarray(samples, dtype="<i2")
        step = 2 * self.fs
        for i in range(self.n_sig):
            out[:, i * step : (i + 1) * step] = (
                np.ascontiguousarray(x[:, i]).view(np.uint8).reshape(k, step)
            )
        ann = self.n_sig * step
        for j in range(k):
            tals = self._keeping(first + j) + self._notes.get(first + j, b"")
            out[j, ann : ann + len(tals)] = np.frombuffer(tals, np.uint8)
        return out.tobytes()


def edf_header(
    records: EdfRecords,
    start_utc: float,
    labels: Sequence[str],
    *,
    patient: str = "X",
    equipment: str = "X",
    physical: tuple[float, float] = (-32.768, 32.767),
    dimension: str = "mV",
) -> bytes:
    """The header record (256 bytes + 256 per signal) of an EDF+C file of ``records``."""
    start = datetime.fromtimestamp(math.floor(start_utc), UTC)
    date = f"{start.day:02d}-{_MONTHS[start.month - 1]}-{start.year}"
    signals = [*labels, _ANNOTATION_LABEL]
    ns = len(signals)
    main = [
        _field("0", 8),
        _field(f"{_ascii_token(patient)} X X X", 80),
        _field(f"Startdate {date} X X {_ascii_token(equipment)}", 80),
        _field(f"{start:%d.%m.%y}", 8),
        _field(f"{start:%H.%M.%S}", 8),
        _field(str(256 * (ns + 1)), 8),
        _field("EDF+C", 44),
        _field(str(records.n_records), 8),
        _field("1", 8),
        _field(str(ns), 4),
    ]
    lo, hi = (_number(v) for v in physical)

    def per_signal(ecg: str, annotation: str, width: int) -> list[bytes]:
        return [_field(ecg, width)] * len(labels) + [_field(annotation, width)]

    fields = [
        [_field(lab, 16) for lab in labels] + [_field(_ANNOTATION_LABEL, 16)],
        per_signal("", "", 80),
        per_signal(dimension, "", 8),
        per_signal(lo, "-1", 8),
        per_signal(hi, "1", 8),
        per_signal("-32768", "-32768", 8),
        per_signal("32767", "32767", 8),
        per_signal("", "", 80),
        [_field(str(records.fs), 8)] * len(labels) + [_field(str(records.annotation_samples), 8)],
        per_signal("", "", 32),
    ]
    header = b"".join(main) + b"".join(b"".join(f) for f in fields)
    assert len(header) == 256 * (ns + 1)
    return header
