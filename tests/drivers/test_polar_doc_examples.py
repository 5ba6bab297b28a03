"""Every wire example of docs/protocols/polar-pmd.md decodes to exactly what the page says.

The page marks each example as a fenced block whose info string is ``pmd-example``; inside,
one ``key: value`` per line: ``name`` (unique), ``type`` (what it is, below), ``hex`` (the
bytes, when the example has any) and the values the page states, as JSON. Each block is
checked with the gateway's own decoders (and, where the gateway has one, re-encoded with its
encoder), so the page can never drift from the code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.block import SampleBlock
from drivers import uuids
from drivers.gatt_session import Disconnect, Write
from drivers.gatt_standard import (
    ButtonPress,
    HeartRateMeasurement,
    decode_battery_level,
    decode_button_press,
    decode_heart_rate_measurement,
    encode_battery_level,
    encode_button_press,
    encode_heart_rate_measurement,
)
from drivers.polar_pmd import (
    PmdDecodeError,
    PmdEcgFrame,
    decode_ecg_frame,
    encode_ecg_frame,
    parse_control_response,
    parse_settings,
    start_ecg_command,
    stop_command,
)
from drivers.polar_session import PolarSession, PolarSettings
from drivers.polar_stream import PmdEcgStream

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocols" / "polar-pmd.md"
_BLOCK = re.compile(r"^```pmd-example\n(.*?)^```", re.MULTILINE | re.DOTALL)
_RAW_KEYS = ("name", "type", "hex")
_ALL_CHARS = {
    uuids.PMD_CONTROL_POINT: frozenset({"write", "indicate"}),
    uuids.PMD_DATA: frozenset({"notify"}),
}


def _examples() -> list[dict[str, Any]]:
    out = []
    for body in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        ex: dict[str, Any] = {}
        for line in body.splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition(": ")
            assert sep, f"not a 'key: value' line in a pmd-example block: {line!r}"
            assert key not in ex, f"{key} twice in one example"
            ex[key] = value.strip() if key in _RAW_KEYS else json.loads(value)
        if "hex" in ex:
            ex["bytes"] = bytes.fromhex(ex["hex"])
        out.append(ex)
    return out


EXAMPLES = _examples()


def _session() -> tuple[PolarSession, list[Any]]:
    """A session just connected to a device that has only the PMD service."""
    session = PolarSession(PolarSettings("doc", "AA:BB:CC:DD:EE:FF"))
    return session, session.connected(_ALL_CHARS, 247, 1000.0, 0.0)


def check_pmd_command(ex: dict[str, Any]) -> None:
    raw = ex["bytes"]
    assert (raw[0], raw[1]) == (ex["op"], ex["measurement"])
    session, out = _session()
    if ex["command"] == "start_ecg":
        settings = {str(k): list(v) for k, v in parse_settings(raw[2:]).items()}
        assert settings == ex["settings"]
        assert raw == start_ecg_command(ex["settings"]["0"][0], ex["settings"]["1"][0])
        assert out[-1] == Write(uuids.PMD_CONTROL_POINT, raw)  # what the gateway writes
    else:
        assert ex["command"] == "stop"
        assert raw == stop_command(ex["measurement"])
        assert session.closing() == [Write(uuids.PMD_CONTROL_POINT, raw)]


def check_pmd_response(ex: dict[str, Any]) -> None:
    r = parse_control_response(ex["bytes"])
    assert (r.op, r.measurement, int(r.status)) == (ex["op"], ex["measurement"], ex["status"])
    assert (r.status_name, r.more) == (ex["status_name"], ex["more"])
    session, _ = _session()
    session.write_done(uuids.PMD_CONTROL_POINT, 1000.0, 0.1)
    out = session.notified(uuids.PMD_CONTROL_POINT, ex["bytes"], 1000.0, 0.2)
    refused = any(isinstance(o, Disconnect) for o in out)
    assert refused is not ex["start_accepted"]
    assert session.tick(1000.0, 5.15) == []  # answered: no "START ECG not answered" at 5.1 s


def check_pmd_ecg_frame(ex: dict[str, Any]) -> None:
    frame = decode_ecg_frame(ex["bytes"])
    assert frame.timestamp_ns == ex["timestamp_ns"]
    assert frame.samples_uv.tolist() == ex["samples_uv"]
    assert len(ex["bytes"]) == 10 + 3 * frame.n
    assert encode_ecg_frame(ex["timestamp_ns"], np.array(ex["samples_uv"])) == ex["bytes"]


def check_pmd_frame_refused(ex: dict[str, Any]) -> None:
    with pytest.raises(PmdDecodeError):
        decode_ecg_frame(ex["bytes"])
    session, _ = _session()
    session.notified(uuids.PMD_DATA, ex["bytes"], 1000.0, 0.2)
    assert session.stats()["frames_malformed"] == 1
    assert session.stats()["samples"] == 0


def check_hr_measurement(ex: dict[str, Any]) -> None:
    m = decode_heart_rate_measurement(ex["bytes"])
    expected = HeartRateMeasurement(ex["bpm"], ex["contact"], ex["energy_kj"], tuple(ex["rr_1024"]))
    assert m == expected
    assert encode_heart_rate_measurement(expected) == ex["bytes"]


def check_battery_level(ex: dict[str, Any]) -> None:
    assert decode_battery_level(ex["bytes"]).percent == ex["percent"]
    assert encode_battery_level(ex["percent"]) == ex["bytes"]


def check_button_press(ex: dict[str, Any]) -> None:
    press = decode_button_press(ex["bytes"])
    assert (press.version, press.press_id, press.device_time_ns) == (
        ex["version"],
        ex["press_id"],
        ex["device_time_ns"],
    )
    assert press.device_time_posix == pytest.approx(ex["device_time_posix"], abs=1e-6)
    assert encode_button_press(ButtonPress(ex["press_id"], ex["device_time_ns"])) == ex["bytes"]


def _samples(offset_ns: int, n: int) -> np.ndarray:
    """A frame's samples, µV: the same for the same timestamp, different otherwise."""
    return np.random.default_rng(offset_ns % 2**32).integers(-5000, 5000, n).astype(np.int32)


def check_pmd_stream(ex: dict[str, Any]) -> None:
    stream = PmdEcgStream("doc", fs=130)
    got: list[list[Any]] = []
    for offset_ns, n, arrival in ex["frames"]:
        frame = PmdEcgFrame(ex["t0_ns"] + offset_ns, _samples(offset_ns, n))
        for item in stream.feed_frames([frame], arrival):
            if isinstance(item, SampleBlock):
                got.append(["block", item.seq, item.end_seq])
            else:
                assert item.final
                got.append(["gap", item.first_seq, item.end_seq, item.reason])
    assert got == ex["expect"]
    assert stream.duplicates == ex["duplicates"]
    assert stream.timestamps_rejected == ex["timestamps_rejected"]
    assert stream.clock_steps == ex.get("clock_steps", 0)
    if "press_offset_ns" in ex:
        assert stream.seq_of_device_time(ex["t0_ns"] + ex["press_offset_ns"]) == ex["press_seq"]


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pmd_command": check_pmd_command,
    "pmd_response": check_pmd_response,
    "pmd_ecg_frame": check_pmd_ecg_frame,
    "pmd_frame_refused": check_pmd_frame_refused,
    "hr_measurement": check_hr_measurement,
    "battery_level": check_battery_level,
    "button_press": check_button_press,
    "pmd_stream": check_pmd_stream,
}


def test_the_page_has_every_kind_of_example() -> None:
    names = [ex.get("name") for ex in EXAMPLES]
    assert len(names) == len(set(names)), "example names must be unique"
    assert {ex.get("type") for ex in EXAMPLES} == set(CHECKS)


@pytest.mark.parametrize("ex", EXAMPLES, ids=[str(ex.get("name")) for ex in EXAMPLES])
def test_example_decodes_to_what_the_page_says(ex: dict[str, Any]) -> None:
    CHECKS[ex["type"]](ex)
