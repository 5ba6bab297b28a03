"""Rhythm strips drawn on ECG paper, written as PNG (pure numpy + zlib).

Standard paper: 25 mm/s, 10 mm/mV; a 1 mm grid with a heavier line every 5 mm.
Each lead gets its own row with its label and a 1 mV calibration pulse; a strip
longer than 10 s continues on further rows (all leads for 0-10 s, then 10-20 s...),
as a rhythm strip on paper does; a header gives device, time, trigger, heart rate
and gaps. Samples that never
arrived are left blank on a grey band, so nobody mistakes a gap for asystole.

No plotting library: this runs on the gateway (a Raspberry Pi) as well as at
the monitoring center. Text uses a built-in 5 x 7 bitmap font.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["render_message_png", "render_strip", "write_png"]

PAPER = np.array([255, 247, 247], np.uint8)
MINOR = np.array([250, 200, 200], np.uint8)
MAJOR = np.array([232, 120, 120], np.uint8)
TRACE = np.array([0, 0, 0], np.uint8)
GAP = np.array([215, 215, 215], np.uint8)
MARK = np.array([30, 60, 220], np.uint8)

MM_PER_S = 25.0
MM_PER_MV = 10.0
ROW_MM = 25.0  # height of one lead row
LEFT_MM = 15.0  # label and calibration pulse
HEADER_MM = 14.0
ROW_S = 10.0  # seconds of ECG per row; longer strips continue on further rows

# 5 x 7 glyphs: 7 rows of 5 bits (MSB left).
_FONT: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    ":": (0, 12, 12, 0, 12, 12, 0),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
    "/": (0, 1, 2, 4, 8, 16, 0),
    "-": (0, 0, 0, 31, 0, 0, 0),
    "+": (0, 4, 4, 31, 4, 4, 0),
    "=": (0, 0, 31, 0, 31, 0, 0),
    "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8),
    "%": (24, 25, 2, 4, 8, 19, 3),
    "*": (0, 4, 21, 14, 21, 4, 0),
    "#": (10, 10, 31, 10, 31, 10, 10),
    "_": (0, 0, 0, 0, 0, 0, 31),
    "?": (14, 17, 1, 2, 4, 0, 4),
}
_GLYPHS = {
    ch: np.array([[(row >> (4 - c)) & 1 for c in range(5)] for row in rows], bool)
    for ch, rows in _FONT.items()
}


def _draw_text(img: np.ndarray, text: str, x: int, y: int, scale: int, color=TRACE) -> None:
    """Draw ``text`` with its top-left corner at pixel (x, y)."""
    for ch in text.upper():
        glyph = _GLYPHS.get(ch, _GLYPHS["?"])
        big = np.kron(glyph, np.ones((scale, scale), bool))
        h, w = big.shape
        region = img[y : y + h, x : x + w]
        region[big[: region.shape[0], : region.shape[1]]] = color
        x += 6 * scale
        if x >= img.shape[1]:
            return


def _grid(h: int, w: int, px_mm: float, top: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = PAPER
    xs = np.arange(0, w / px_mm, 1.0)
    ys = np.arange(0, (h - top) / px_mm, 1.0)
    for major in (False, True):
        color = MAJOR if major else MINOR
        for v in xs[(np.round(xs) % 5 == 0) == major]:
            img[top:, min(int(round(v * px_mm)), w - 1)] = color
        for v in ys[(np.round(ys) % 5 == 0) == major]:
            img[top + min(int(round(v * px_mm)), h - top - 1), :] = color
    return img


def _trace_spans(y: np.ndarray, x0: float, px_s: float, width: int) -> tuple[np.ndarray, ...]:
    """Per pixel column: (columns, low y, high y) of a trace joining consecutive samples.

    ``y`` is the trace in pixel rows per sample (NaN: missing), ``x0`` the column of
    the first sample and ``px_s`` pixels per sample. Sparse samples are linearly
    interpolated so the line stays continuous; dense ones are reduced to min/max
    per column.
    """
    n = y.size
    up = int(np.ceil(px_s * 2)) if px_s > 0.5 else 1
    if up > 1:
        t = np.arange((n - 1) * up + 1) / up
        y = np.interp(t, np.arange(n), y)
    else:
        t = np.arange(n, dtype=np.float64)
    cols = np.floor(x0 + t * px_s).astype(np.int64)
    ok = np.isfinite(y) & (cols >= 0) & (cols < width)
    if ok.sum() < 2:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    cols, y = cols[ok], y[ok]
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    columns = cols[starts]
    low = np.minimum.reduceat(y, starts)
    high = np.maximum.reduceat(y, starts)
    last = y[np.r_[starts[1:], y.size] - 1]
    # join each column to the last point of the column just before it
    adjacent = np.r_[False, columns[1:] == columns[:-1] + 1]
    prev = np.r_[0.0, last[:-1]]
    low = np.where(adjacent, np.minimum(low, prev), low)
    high = np.where(adjacent, np.maximum(high, prev), high)
    return columns, low, high


def render_strip(
    samples_mv: np.ndarray,
    fs: float,
    leads: Sequence[str],
    *,
    title_lines: Sequence[str] = (),
    marker_s: float | None = None,
    px_per_mm: float = 8.0,
    row_s: float = ROW_S,
) -> np.ndarray:
    """The strip on ECG paper as an (H, W, 3) uint8 RGB image.

    A strip longer than ``row_s`` continues on further rows, as on paper: all leads
    for the first ``row_s`` seconds, then all leads for the next, each continuation
    row labelled with its offset from the strip start (``II +10S``).

    Parameters
    ----------
    samples_mv
        (n, leads) samples in mV; NaN where a sample is missing.
    fs
        Sample rate, Hz.
    leads
        Lead names, one per column.
    title_lines
        Header text (upper-cased; letters, digits and common punctuation).
    marker_s
        Seconds from the strip start to mark (e.g. the button press), or None.
    px_per_mm
        Resolution, pixels per millimetre of paper.
    row_s
        Seconds of ECG per row (10 s: 250 mm at 25 mm/s).
    """
    x = np.asarray(samples_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n, n_leads = x.shape
    px = float(px_per_mm)
    scale = max(int(round(px / 4)), 1)
    per_row = max(int(round(row_s * fs)), 1)  # samples per row
    segments = [(s0, min(s0 + per_row, n)) for s0 in range(0, max(n, 1), per_row)]
    header = int(round(max(HEADER_MM, (len(title_lines) * 9 * scale + 4) / px) * px))
    left = int(round(LEFT_MM * px))
    width = left + int(np.ceil(min(n, per_row) / fs * MM_PER_S * px - 1e-3)) + int(5 * px)
    row_h = int(round(ROW_MM * px))
    height = header + len(segments) * n_leads * row_h + int(2 * px)
    img = _grid(height, width, px, header)
    img[:header] = 255
    for i, line in enumerate(title_lines):
        _draw_text(img, line, int(2 * px), int(2 * px) + i * 9 * scale, scale)

    px_s = MM_PER_S * px / fs  # pixels per sample
    paper = _Paper(px, px_s, left, width, row_h, scale)
    mark = None if marker_s is None else marker_s * fs  # in samples from the strip start
    for j, (s0, s1) in enumerate(segments):
        top = header + j * n_leads * row_h
        bottom = top + n_leads * row_h if j < len(segments) - 1 else height
        seg = x[s0:s1]
        # gap bands (any lead missing)
        missing = ~np.isfinite(seg)
        if missing.any():
            cols = (left + np.flatnonzero(missing.any(axis=1)) * px_s).astype(np.int64)
            cols = cols[cols < width]
            band = np.zeros(width, bool)
            band[cols] = True
            band[np.minimum(cols + 1, width - 1)] = True
            img[top:bottom, band] = GAP
        if mark is not None and s0 <= mark < s0 + per_row:
            c = int(round(left + (mark - s0) * px_s))
            if 0 <= c < width:
                img[top:bottom, max(c - 1, 0) : c + 2] = MARK
                if j == 0:
                    _draw_text(img, "*", c - 3 * scale, header - 8 * scale, scale, MARK)
                else:
                    _draw_text(img, "*", c + 3 * scale, top + int(1 * px), scale, MARK)
        for k in range(n_leads):
            row_top = top + k * row_h
            label = str(leads[k])[:4] + (f" +{s0 / fs:g}S" if j else "")
            _draw_text(img, label, int(1 * px), row_top + int(2 * px), scale)
            _draw_lead_row(img, seg[:, k], row_top, paper)
    return img


@dataclass(frozen=True, slots=True)
class _Paper:
    """Geometry of one rendered strip, in pixels."""

    px: float  # per mm
    px_s: float  # per sample
    left: int  # where the trace starts
    width: int
    row_h: int
    scale: int  # line and font thickness


def _draw_lead_row(img: np.ndarray, y_mv: np.ndarray, top: int, paper: _Paper) -> None:
    """One lead's row from pixel row ``top``: its 1 mV, 200 ms calibration pulse and trace."""
    px, scale, row_h, width = paper.px, paper.scale, paper.row_h, paper.width
    base = int(round(row_h * 0.6))
    px_mv = MM_PER_MV * px
    p0, p1 = int(round(5 * px)), int(round(10 * px))
    step = int(round(px_mv))
    img[top + base - step : top + base + 1, p0 : p0 + scale + 1] = TRACE
    img[top + base - step : top + base + 1, p1 : p1 + scale + 1] = TRACE
    img[top + base - step : top + base - step + scale + 1, p0:p1] = TRACE
    img[top + base : top + base + scale + 1, int(2 * px) : p0] = TRACE
    img[top + base : top + base + scale + 1, p1 : int(round(12 * px))] = TRACE
    cols, lo, hi = _trace_spans(base - y_mv * px_mv, float(paper.left), paper.px_s, width)
    if cols.size == 0:
        return
    lo = np.clip(np.floor(lo) - scale // 2, 0, row_h - 1)
    hi = np.clip(np.ceil(hi) + scale // 2, 0, row_h - 1)
    rows = np.arange(row_h)[:, None]
    mask = (rows >= lo[None, :]) & (rows <= hi[None, :])
    block = img[top : top + row_h]
    for dx in range(scale):
        c = np.minimum(cols + dx, width - 1)
        sub = block[:, c]
        sub[mask] = TRACE
        block[:, c] = sub


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 image as PNG (8-bit RGB, no interlace)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, c = rgb.shape
    if c != 3:
        raise ValueError("expected an RGB image")
    raw = np.empty((h, 1 + w * 3), np.uint8)
    raw[:, 0] = 0  # filter: none
    raw[:, 1:] = rgb.reshape(h, w * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
    png += chunk(b"IEND", b"")
    out = Path(path)
    out.write_bytes(png)
    return out


def _title(body: Mapping[str, Any], fs: float, n_leads: int) -> list[str]:
    trig = body.get("trigger") or {}
    facts = body.get("facts") or {}
    samples = body.get("samples") or {}
    kind = str(body.get("kind", "strip"))
    what = {
        "button": "POST-SYMPTOM EVENT (PATIENT BUTTON)",
        "periodic": "PERIODIC RHYTHM STRIP",
        "stage_end": "STRESS TEST STAGE END",
    }.get(str(trig.get("type")), kind.upper())
    start = str(samples.get("start", ""))
    hr = facts.get("heart_rate_bpm")
    line1 = f"{body.get('gateway_id', '')}/{body.get('device_id', '')}  {what}  START {start}"
    pressed = trig.get("time_utc")
    if trig.get("type") == "button" and isinstance(pressed, str):
        line1 += f"  PRESSED {pressed}"
    parts = [f"HR {hr:.0f} BPM" if isinstance(hr, int | float) else "HR --"]
    stage = trig.get("stage") if trig.get("type") == "stage_end" else facts.get("stage")
    if isinstance(stage, Mapping):
        parts.append(f"STAGE {stage.get('stage', '')} {stage.get('name', '')}".strip())
    bp = facts.get("blood_pressure")
    if isinstance(bp, Mapping) and bp.get("systolic_mmhg"):
        parts.append(f"BP {bp.get('systolic_mmhg')}/{bp.get('diastolic_mmhg')} MMHG")
    gaps = body.get("gaps") or []
    missing = sum(int(g.get("n_samples", 0)) for g in gaps)
    parts.append(f"GAPS {len(gaps)} ({missing} SAMPLES)" if gaps else "NO GAPS")
    line3 = (
        f"25 MM/S  10 MM/MV  {fs:g} HZ  {n_leads} LEAD(S)  AS RECORDED (UNFILTERED)  "
        f"SEQ {body.get('seq', '')}  TRACING ONLY"
    )
    lines = [line1, "  ".join(parts), line3]
    st = facts.get("st")
    levels = st.get("st60_mv") if isinstance(st, Mapping) else None
    if isinstance(levels, Mapping) and levels:
        # on paper ST is read in mm (1 mm = 0.1 mV at 10 mm/mV)
        shown = "  ".join(
            f"{lead} {10 * v:+.1f}" for lead, v in levels.items() if isinstance(v, int | float)
        )
        lines.append(f"ST AT J+60 MS, MM (MEDIAN OF {st.get('beats', '?')} BEATS): {shown}")
    return lines


def render_message_png(body: Mapping[str, Any], path: str | Path, px_per_mm: float = 8.0) -> Path:
    """Draw a strip/event message (``docs/mqtt.md``) and write it as PNG."""
    from gateway.payloads import samples_from_observation

    fs, leads, x = samples_from_observation(body["observation"])
    stated = (body.get("samples") or {}).get("fs")
    if isinstance(stated, int | float) and abs(stated - fs) <= 1e-3 * fs:
        fs = float(stated)  # exact; the Observation's period (ms) is rounded
    img = render_strip(
        x,
        fs,
        leads,
        title_lines=_title(body, fs, len(leads)),
        marker_s=_marker_s(body, fs),
        px_per_mm=px_per_mm,
    )
    return write_png(path, img)


def _marker_s(body: Mapping[str, Any], fs: float) -> float | None:
    """Seconds from the strip start to the button press, or None (not a press / unknown).

    The press's sample number is exact; its UTC time (POSIX s) is the fallback.
    """
    trig = body.get("trigger") or {}
    samples = body.get("samples") or {}
    if trig.get("type") != "button":
        return None
    seq, first = trig.get("seq"), samples.get("first_seq")
    if isinstance(seq, int | float) and isinstance(first, int | float):
        return (float(seq) - float(first)) / fs
    pressed, start = trig.get("time"), samples.get("start")
    if isinstance(pressed, int | float) and isinstance(start, str):
        try:
            t0 = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return float(pressed) - t0
    return None
