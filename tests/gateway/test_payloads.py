"""Message bodies: FHIR R4 Observation validity, sample round trip, JSON safety, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fhir.resources.R4B.observation import Observation

from core.block import SampleBlock
from core.events import Gap
from gateway.payloads import (
    PayloadError,
    build_live_payload,
    build_strip_body,
    parse_message,
    samples_from_observation,
    topic,
)
from gateway.pipeline import StripFacts, Trigger
from gateway.status import build_status
from sim.synth import EcgSynth

T0 = 1_790_000_000.25
TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _block(fs: float, leads: tuple[str, ...], seconds: float, hole: slice | None = None):
    x = EcgSynth(fs, leads, seed=4).generate(int(fs * seconds)).astype(np.float32)
    if hole is not None:
        x[hole] = np.nan
    return SampleBlock(x, fs, T0, 1000, leads, "dev-1")


@pytest.mark.parametrize(
    ("fs", "leads"), [(130.0, ("ECG",)), (500.0, TWELVE)], ids=["patch", "12-lead"]
)
def test_strip_body_validates_and_round_trips(fs: float, leads: tuple[str, ...]) -> None:
    block = _block(fs, leads, 10.0, hole=slice(200, 260))
    gap = Gap("dev-1", 1200, 1260, block.time_of(1200), block.time_of(1260), "ble", True)
    body = build_strip_body(
        block,
        gateway_id="gw1",
        kind="event",
        trigger=Trigger("button", pre_s=5.0, post_s=5.0, seq=int(np.int64(1500))),
        facts=StripFacts(heart_rate_bpm=float("nan"), beats_seq=(0, 1, 2)),
        gaps=[gap],
        created=T0 + 20,
    )
    body.update(msg_id="m", seq=1)
    text = json.dumps(body, allow_nan=False)
    back = parse_message(text.encode())
    obs = Observation.model_validate(back["observation"])
    assert obs.status == "final" and len(obs.component) == len(leads)
    assert (
        back["samples"]["n"]
        == int(fs * 10.0)
        == len(obs.component[0].valueSampledData.data.split())
    )
    assert back["gaps"][0]["n_samples"] == 60
    assert back["facts"]["heart_rate_bpm"] is None and back["facts"]["beats_seq"] == [0, 1, 2]
    assert back["trigger"] == {
        "type": "button",
        "time": None,
        "seq": 1500,
        "press_id": None,
        "pre_s": 5.0,
        "post_s": 5.0,
    }
    fs2, leads2, x = samples_from_observation(back["observation"])
    assert fs2 == pytest.approx(fs, rel=1e-6) and tuple(leads2) == leads
    assert np.isnan(x[200:260]).all()
    ok = np.isfinite(block.samples)
    assert np.abs(x[ok] - block.samples[ok]).max() <= 0.0005 + 1e-6  # within 0.5 µV


def test_mdc_codes_of_twelve_leads() -> None:
    body = build_strip_body(
        _block(500.0, TWELVE, 1.0),
        gateway_id="g",
        kind="strip",
        trigger=Trigger("periodic", pre_s=1.0),
        facts=StripFacts(),
        gaps=[],
        created=T0,
    )
    codes = [c["code"]["coding"][0]["code"] for c in body["observation"]["component"]]
    assert codes[:6] == ["131329", "131330", "131389", "131390", "131391", "131392"]
    assert codes[6:] == [str(c) for c in range(131331, 131337)]


def test_live_and_status() -> None:
    live = parse_message(
        build_live_payload(_block(130.0, ("ECG",), 1.0, slice(5, 7)), gateway_id="g", hr_bpm=None)
    )
    assert live["data"]["ECG"][5] is None and len(live["data"]["ECG"]) == 130
    status = build_status("g", "online", now=T0, devices={"d": {"samples": np.int64(3)}})
    assert parse_message(json.dumps(status))["state"] == "online"
    assert topic("ecg/v1", "g", "d", "event") == "ecg/v1/g/d/event"


@pytest.mark.parametrize(
    "junk",
    [b"\xff\xfe", b"[1,2]", b'{"schema": "other"}', b"{", b'{"schema":"ecg-gateway/strip/v1"}'],
)
def test_garbage_is_a_payload_error(junk: bytes) -> None:
    with pytest.raises(PayloadError):
        parse_message(junk)


def test_study_body_counts_out_of_order_blocks_and_coverage() -> None:
    from gateway.payloads import STUDY_SCHEMA, StudyFacts, build_study_body

    f = StudyFacts()
    f.add_block(250, 500, 250.0, 1.0, 2.0)  # live first
    f.add_block(0, 250, 250.0, 0.0, 1.0)  # then the backfill of what came before
    f.add_block(600, 1000, 250.0, 2.4, 4.0)  # 100 samples never arrived
    f.missing = 100
    body = build_study_body("gw", "p1", f, [{"n_samples": 100}], since=0.0, now=10.0)
    rec = body["recording"]
    assert body["schema"] == STUDY_SCHEMA and body["final"] is False
    assert (rec["first_seq"], rec["end_seq"], rec["duration_s"]) == (0, 1000, 4.0)
    assert rec["samples_received"] == 900 and rec["coverage_pct"] == 90.0
    assert rec["start"] == "1970-01-01T00:00:00.000Z" and body["gaps"] == [{"n_samples": 100}]
    empty = build_study_body("gw", "p1", StudyFacts(), [], since=0.0, now=1.0, final=True)
    assert empty["recording"]["coverage_pct"] is None and empty["final"] is True


def test_analysable_share_from_the_pipelines_quality_windows() -> None:
    """Clean ECG then a flat line: the pipeline hands out the seconds it judged and the
    usable ones exactly once; the study facts keep the totals (and survive a round trip)."""
    import dataclasses

    from core.block import SampleBlock
    from gateway.payloads import StudyFacts
    from gateway.pipeline import DevicePipeline, PipelineSettings

    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    ecg = 1.2 * np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01**2)) + 0.05 * np.sin(2 * np.pi * t)
    x = np.concatenate([ecg, np.zeros(int(10 * fs))])
    pipe = DevicePipeline("p1", PipelineSettings())
    facts = StudyFacts()
    for i in range(0, len(x), 250):
        block = SampleBlock(x[i : i + 250, None], fs, start=i / fs, seq=i, leads=("ECG",))
        pipe.on_block(block)
        facts.add_quality(*pipe.take_quality_s())
    assert pipe.take_quality_s() == (0.0, 0.0)
    assert 25 <= facts.judged_s <= 30
    assert 15 <= facts.analysable_s <= 21  # the flat 10 s are not analysable
    again = StudyFacts(**dataclasses.asdict(facts))
    assert again.analysable_pct == facts.analysable_pct and 50 < facts.analysable_pct < 80
