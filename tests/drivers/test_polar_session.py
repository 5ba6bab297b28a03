"""The Polar PMD conversation (pure): presses are never dropped nor doubled, and optional
characteristics are used only as far as they declare (docs/protocols/polar-pmd.md)."""

from __future__ import annotations

import numpy as np

from core.events import ButtonPressed
from drivers import uuids
from drivers.gatt_session import Read, Subscribe, Write
from drivers.gatt_standard import ButtonPress, encode_button_press
from drivers.polar_pmd import encode_ecg_frame
from drivers.polar_session import PolarSession, PolarSettings

PERIOD_NS = 1e9 / 130
T0_NS = 802_094_400_000_000_000
PMD = {
    uuids.PMD_CONTROL_POINT: frozenset({"write", "indicate"}),
    uuids.PMD_DATA: frozenset({"notify"}),
}
BUTTON = {uuids.PATCH_BUTTON: frozenset({"notify"})}


def _frame(k: int) -> bytes:
    """The k-th 73-sample frame of a continuous stream (device samples 73 k ...)."""
    uv = np.random.default_rng(k).integers(-3000, 3000, 73)
    return encode_ecg_frame(T0_NS + round((73 * (k + 1) - 1) * PERIOD_NS), uv)


def _press(press_id: int, device_sample: int) -> bytes:
    return encode_button_press(ButtonPress(press_id, T0_NS + round(device_sample * PERIOD_NS)))


def _presses(out: list) -> list[ButtonPressed]:
    return [o for o in out if isinstance(o, ButtonPressed)]


def test_a_press_before_the_first_frame_is_held_and_placed_by_its_device_time() -> None:
    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    s.connected({**PMD, **BUTTON}, 247, 1000.0, 0.0)
    assert s.notified(uuids.PATCH_BUTTON, _press(1, 40), 1000.1, 0.1) == []  # no clock yet
    out = s.notified(uuids.PMD_DATA, _frame(0), 1000.6, 0.6)
    (press,) = _presses(out)
    assert press.seq == 40 and press.press_id == 1
    out = s.notified(uuids.PATCH_BUTTON, _press(1, 40), 1001.0, 1.0)  # notified again
    assert _presses(out) == [] and s.stats()["presses_repeated"] == 1


def test_a_held_press_is_released_unplaced_when_the_link_ends_first() -> None:
    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    s.connected({**PMD, **BUTTON}, 247, 1000.0, 0.0)
    s.notified(uuids.PATCH_BUTTON, _press(7, 40), 1000.1, 0.1)
    (press,) = _presses(s.link_lost("gone", 1002.0, 2.0))
    assert press.seq is None and press.time == 1000.1 and press.press_id == 7
    s.connected({**PMD, **BUTTON}, 247, 1003.0, 3.0)
    s.notified(uuids.PATCH_BUTTON, _press(8, 50), 1003.1, 3.1)
    out = s.closing()
    assert [p.press_id for p in _presses(out)] == [8] and isinstance(out[-1], Write)
    assert s.stats()["presses_unplaced"] == 2


def test_a_press_dated_far_past_the_stream_is_not_believed() -> None:
    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    s.connected({**PMD, **BUTTON}, 247, 1000.0, 0.0)
    s.notified(uuids.PMD_DATA, _frame(0), 1000.6, 0.6)
    (press,) = _presses(s.notified(uuids.PATCH_BUTTON, _press(2, 3600 * 130), 1000.7, 0.7))
    assert press.seq is None and press.time == 1000.7


def test_optional_characteristics_are_used_only_as_they_declare() -> None:
    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    chars = {
        **PMD,
        uuids.HEART_RATE_MEASUREMENT: frozenset({"read"}),  # cannot notify: left alone
        uuids.PATCH_BUTTON: frozenset({"indicate"}),
        uuids.BATTERY_LEVEL: frozenset({"notify"}),  # not readable
        uuids.SERIAL_NUMBER: frozenset({"read"}),
        uuids.MODEL_NUMBER: frozenset(),
    }
    ops = [o for o in s.connected(chars, 247, 1000.0, 0.0) if isinstance(o, Subscribe | Read)]
    assert Subscribe(uuids.HEART_RATE_MEASUREMENT) not in ops
    assert Subscribe(uuids.PATCH_BUTTON) in ops and Subscribe(uuids.BATTERY_LEVEL) in ops
    assert Read(uuids.BATTERY_LEVEL) not in ops and Read(uuids.MODEL_NUMBER) not in ops
    assert Read(uuids.SERIAL_NUMBER) in ops


def test_only_an_answer_to_start_ecg_starts_the_stream() -> None:
    """A success for another measurement type (PPG here) is not START ECG's answer: the
    session keeps waiting, and fails when the start timeout passes."""
    from drivers.gatt_session import Disconnect

    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    s.connected(PMD, 247, 1000.0, 0.0)
    s.write_done(uuids.PMD_CONTROL_POINT, 1000.0, 0.0)
    assert s.notified(uuids.PMD_CONTROL_POINT, bytes.fromhex("f0020100"), 1000.1, 0.1) == []
    (end,) = s.tick(1006.0, 6.0)
    assert isinstance(end, Disconnect) and "not answered" in end.reason
    s.connected(PMD, 247, 1010.0, 10.0)
    s.write_done(uuids.PMD_CONTROL_POINT, 1010.0, 10.0)
    s.notified(uuids.PMD_CONTROL_POINT, bytes.fromhex("f0020000"), 1010.1, 10.1)
    assert s.tick(1014.0, 14.0) == []  # started: the silence watchdog waits for frames


def test_each_kind_of_malformed_value_is_counted_on_its_own() -> None:
    s = PolarSession(PolarSettings("p", "AA:BB:CC:DD:EE:FF"))
    s.connected({**PMD, **BUTTON}, 247, 1000.0, 0.0)
    counts = [
        (e.what, e.count)
        for uuid, value in (
            (uuids.BATTERY_LEVEL, b"\xff"),
            (uuids.BATTERY_LEVEL, b"\xfe"),
            (uuids.PATCH_BUTTON, b"\x01"),
            (uuids.BATTERY_LEVEL, b""),
        )
        for e in s.notified(uuid, value, 1000.1, 0.1)
    ]
    assert counts == [("battery", 1), ("battery", 2), ("button", 1), ("battery", 3)]
    assert s.stats()["values_malformed"] == 4
