"""ECG paper PNG: valid PNG, grid at the right pitch, trace drawn, gaps blank."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from core.block import SampleBlock
from core.events import Gap
from gateway.ecgpaper import (
    MAJOR,
    MARK,
    MINOR,
    PAPER,
    TRACE,
    _marker_s,
    render_message_png,
    render_strip,
    write_png,
)
from gateway.payloads import build_strip_body
from gateway.pipeline import StripFacts, Trigger
from sim.synth import EcgSynth

T0 = 1_790_000_000.0


def _read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, dims = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert zlib.crc32(kind + body) == crc
        if kind == b"IHDR":
            dims = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert dims is not None
    w, h = dims
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    return raw[:, 1:].reshape(h, w, 3)


def test_twelve_leads_with_gap_round_trip(tmp_path: Path) -> None:
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    x = EcgSynth(500.0, leads, seed=2).generate(5000)
    x[2000:2250] = np.nan  # 0.5 s missing
    img = render_strip(x, 500.0, leads, title_lines=["TEST STRIP 1"], px_per_mm=8)
    back = _read_png(write_png(tmp_path / "s.png", img))
    np.testing.assert_array_equal(back, img)
    w = img.shape[1]
    # 10 s at 25 mm/s = 250 mm plus 20 mm margins, at 8 px/mm
    assert w == int(15 * 8) + 250 * 8 + 5 * 8
    assert (img == TRACE).all(axis=2).sum() > 12 * 2000  # every row has a trace


def test_grid_pitch_and_blank_gap() -> None:
    fs, px = 130.0, 10
    x = np.zeros((1300, 1))
    x[500:600] = np.nan
    img = render_strip(x, fs, ["ECG"], px_per_mm=px)
    row = img[-5, : 15 * px + 800]  # near the bottom, before the gap
    major = np.flatnonzero((row == MAJOR).all(axis=1))
    assert set(np.diff(major)) <= {5 * px - 1, 5 * px, 5 * px + 1}
    minor = np.flatnonzero((row == MINOR).all(axis=1))
    assert len(minor) > 4 * len(major) - 8
    # the trace is absent over the gap columns (15 mm margin + 500 samples at 25 mm/s)
    left = 15 * px
    c0 = left + int(500 / fs * 25 * px) + 3
    c1 = left + int(600 / fs * 25 * px) - 3
    band = img[:, c0:c1]
    assert not (band == TRACE).all(axis=2)[60:].any()
    assert not (band == PAPER).all(axis=2)[-20:].any()  # shaded, not paper


def _event_body(trigger: Trigger) -> dict:
    fs = 130.0
    x = EcgSynth(fs, ("ECG",), seed=1).generate(1300)
    x[600:650] = np.nan
    block = SampleBlock(x, fs, T0, 5000, ("ECG",), "p1")
    gap = Gap("p1", 5600, 5650, T0 + 600 / fs, T0 + 650 / fs, "serial frames lost")
    body = build_strip_body(
        block,
        gateway_id="gw1",
        kind="event",
        trigger=trigger,
        facts=StripFacts(heart_rate_bpm=72.0),
        gaps=[gap],
        created=T0 + 11,
    )
    body.update(msg_id="m-1", seq=1)
    return body


def test_one_lead_event_message_png(tmp_path: Path) -> None:
    body = _event_body(Trigger("button", pre_s=2.0, post_s=8.0, seq=5260, time=T0 + 2.0))
    path = render_message_png(body, tmp_path / "ev.png", px_per_mm=10)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h, depth, color = struct.unpack(">IIBB", data[16:26])
    assert (depth, color) == (8, 2)
    assert w == 15 * 10 + 250 * 10 + 5 * 10  # 10 s at 25 mm/s plus margins
    img = _read_png(path)
    assert img.shape == (h, w, 3)
    assert len(zlib.decompress(data[data.index(b"IDAT") + 4 : -16])) == h * (1 + 3 * w)
    # the press, 2 s in, is a blue line 50 mm right of the 15 mm margin
    col = 150 + 2 * 25 * 10
    assert (img[-10, col - 1 : col + 2] == MARK).all(axis=1).any()


def test_press_marker_falls_back_to_time() -> None:
    body = _event_body(Trigger("button", pre_s=3.0, post_s=7.0, time=T0 + 3.0))
    assert _marker_s(body, 130.0) == pytest.approx(3.0)
    assert _marker_s(_event_body(Trigger("periodic", pre_s=10.0)), 130.0) is None


def test_long_strip_continues_on_rows_of_ten_seconds() -> None:
    """25 s of one lead: three rows of 10, 10 and 5 s; the press at 14 s marked on the second."""
    fs, px = 130.0, 8
    x = EcgSynth(fs, ("ECG",), seed=3).generate(int(25 * fs))
    img = render_strip(x, fs, ["ECG"], marker_s=14.0, px_per_mm=px)
    left, row_h = 15 * px, 25 * px
    assert img.shape[1] == left + 250 * px + 5 * px  # 10 s wide, not 25
    header = img.shape[0] - 2 * px - 3 * row_h
    trace = (img == TRACE).all(axis=2)
    mark = (img == MARK).all(axis=2)
    for j in range(3):
        rows = slice(header + j * row_h, header + (j + 1) * row_h)
        assert trace[rows, left:].sum() > 500  # a trace on every row
        marked = mark[rows, left + int(4 * 25 * px) - 2 : left + int(4 * 25 * px) + 3].any()
        assert marked == (j == 1)  # 14 s = 4 s into the second row
    # the last row stops after 5 s: paper beyond
    last = slice(header + 2 * row_h, header + 3 * row_h)
    assert not trace[last, left + 126 * px :].any()
