"""Heart Rate Measurement, Battery Level and patch button values, fed bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import RrGapSeen
from core.units import EPOCH_2000 as PMD_EPOCH_POSIX
from drivers import uuids as patch_uuids
from drivers.gatt_standard import (
    BatteryLevel,
    ButtonPress,
    GattDecodeError,
    HeartRateMeasurement,
    RrTracker,
    decode_battery_level,
    decode_button_press,
    decode_heart_rate_measurement,
    encode_battery_level,
    encode_button_press,
    encode_heart_rate_measurement,
)

DECODERS = (decode_heart_rate_measurement, decode_battery_level, decode_button_press)


def test_heart_rate_vector_from_spec() -> None:
    m = decode_heart_rate_measurement(bytes.fromhex("10 48 55 03"))
    assert m == HeartRateMeasurement(bpm=72, contact=None, energy_kj=None, rr_1024=(853,))
    assert m.rr_s == (853 / 1024,)


@pytest.mark.parametrize(
    ("hex_value", "expected"),
    [
        ("00 3C", HeartRateMeasurement(60)),
        ("01 2C 01", HeartRateMeasurement(300)),  # u16 rate
        ("06 50", HeartRateMeasurement(80, contact=True)),
        ("04 50", HeartRateMeasurement(80, contact=False)),
        ("02 50", HeartRateMeasurement(80, contact=None)),  # detected bit without support bit
        ("08 50 10 27", HeartRateMeasurement(80, energy_kj=10000)),
        (
            "1F 50 00 34 12 00 04 00 02",
            HeartRateMeasurement(80, contact=True, energy_kj=0x1234, rr_1024=(1024, 512)),
        ),
        ("10 50", HeartRateMeasurement(80, rr_1024=())),  # RR flag, no intervals yet
    ],
)
def test_heart_rate_flags(hex_value: str, expected: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(bytes.fromhex(hex_value)) == expected


@pytest.mark.parametrize("hex_value", ["", "00", "01 50", "08 50 10", "10 50 00", "00 50 00"])
def test_heart_rate_malformed(hex_value: str) -> None:
    with pytest.raises(GattDecodeError):
        decode_heart_rate_measurement(bytes.fromhex(hex_value))


@given(
    st.builds(
        HeartRateMeasurement,
        bpm=st.integers(0, 0xFFFF),
        contact=st.none() | st.booleans(),
        energy_kj=st.none() | st.integers(0, 0xFFFF),
        rr_1024=st.lists(st.integers(0, 0xFFFF), max_size=9).map(tuple),
    )
)
def test_heart_rate_round_trip(m: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(encode_heart_rate_measurement(m)) == m


def test_battery() -> None:
    assert decode_battery_level(b"\x57") == BatteryLevel(87)
    assert encode_battery_level(100) == b"\x64"
    for bad in (b"", b"\x65", b"\x10\x00"):
        with pytest.raises(GattDecodeError):
            decode_battery_level(bad)


def test_button_layout() -> None:
    raw = bytes.fromhex("01 2A000000 0100000000000000")
    press = decode_button_press(raw)
    assert press == ButtonPress(press_id=42, device_time_ns=1, version=1)
    assert press.device_time_posix == pytest.approx(PMD_EPOCH_POSIX + 1e-9)
    assert encode_button_press(press) == raw
    # later versions may append fields
    assert decode_button_press(bytes([2]) + raw[1:] + b"xyz").version == 2
    for bad in (raw[:-1], b"\x00" + raw[1:], b""):
        with pytest.raises(GattDecodeError):
            decode_button_press(bad)


def test_uuids_are_distinct_lower_case_128_bit() -> None:
    values = [
        v
        for k, v in vars(patch_uuids).items()
        if k.isupper() and not k.startswith("_") and isinstance(v, str)
    ]
    assert len(values) == len(set(values))
    assert all(len(v) == 36 and v == v.lower() for v in values)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_fuzz_only_decode_errors(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(GattDecodeError):
            decode(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.data())
def test_fuzz_mutated_button(press_id: int, t_ns: int, data: st.DataObject) -> None:
    raw = bytearray(encode_button_press(ButtonPress(press_id, t_ns)))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(0, 255))
    del raw[data.draw(st.integers(0, len(raw))) :]
    try:
        press = decode_button_press(bytes(raw))
    except GattDecodeError:
        return
    assert press.version >= 1


def _hrs_session(seed: int, outages: list[tuple[float, float]], bpm: float) -> tuple:
    """Beats with a varying RR, notified each second (random phase, 0-60 ms latency) with the
    intervals ending since the last notification; nothing is notified while the link is
    down. Returns (tracker gaps, per outage: (unheard beats, last heard to last unheard, s))."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rr = 60.0 / bpm * (1 + 0.05 * rng.standard_normal(2000))
    beats = np.cumsum(rr)
    tracker = RrTracker()
    gaps: list[RrGapSeen] = []
    heard = np.zeros(beats.size, dtype=bool)
    last_sent = 0.0
    up = True
    t = rng.uniform(0, 1)
    while t < beats[-1] - 5:
        down = any(a <= t < b for a, b in outages)
        if down and up:
            gap = tracker.link_lost()
            gaps += [gap] if gap else []
        if not down:
            new = np.flatnonzero((beats > last_sent) & (beats <= t))
            new = new[new > 0]
            if not up:  # reconnected: only beats since the reconnection are notified
                new = new[beats[new] > max(b for a, b in outages if b <= t)]
            heard[new] = True
            got = tracker.feed([float(x) for x in rr[new]], t + rng.uniform(0, 0.06))
            gaps += [got] if got else []
        last_sent, up = t, not down
        t += 1.0
    truth = []
    for a, b in outages:
        inside = np.flatnonzero(~heard & (beats > a - 1) & (beats < b + 2))
        truth.append((int(inside.size), float(beats[inside[-1]] - beats[inside[0] - 1])))
    return gaps, truth


@pytest.mark.parametrize("bpm", [45.0, 72.0, 130.0])
@pytest.mark.parametrize("seed", range(5))
def test_rr_gaps_count_the_beats_never_heard(seed: int, bpm: float) -> None:
    """HRS outages: spans right to within a quarter of a beat whatever the phase of the
    notifications; beat counts exact for short outages, and for long ones as good as
    the RR variability inside allows (here 5 % per beat)."""
    outages = [(100.3, 104.1), (200.0, 230.7), (400.5, 401.9)]
    gaps, truth = _hrs_session(seed, outages, bpm)
    assert len(gaps) == len(truth)
    for gap, (count, span), (a, b) in zip(gaps, truth, outages, strict=True):
        assert abs(gap.duration_s - span) < 0.25 * 60 / bpm
        if b - a < 10:
            assert gap.beats_missing == count
        else:
            assert abs(gap.beats_missing - count) <= max(1, 0.03 * count)
