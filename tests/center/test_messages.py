"""Decoding what the gateways send: recorded payloads, ids from body or user properties,
and every kind of bad message rejected with a reason."""

from __future__ import annotations

import json

import pytest

from center.messages import Record, Reject, Status, Study, classify, decode
from tests.center.conftest import load

P = "ecg/v1"


def test_recorded_payloads_decode() -> None:
    ev = decode(f"{P}/demo-gw/patch-1/event", json.dumps(load("patch-event")).encode(), {}, P)
    assert isinstance(ev, Record)
    assert (ev.kind, ev.trigger_type, ev.priority, ev.n_samples, ev.fs) == (
        "event",
        "button",
        0,
        5000,
        250.0,
    )
    assert ev.trigger_at == pytest.approx(1796141946.469762)
    assert ev.heart_rate_bpm == 72.3 and ev.quality_min == 0.937
    cart = decode(f"{P}/demo-gw/cart-1/strip", json.dumps(load("cart-strip")).encode(), {}, P)
    assert isinstance(cart, Record) and cart.leads.split()[3] == "aVR" and cart.priority == 3
    st = decode(f"{P}/demo-gw/status", json.dumps(load("status-online")).encode(), {}, P)
    assert isinstance(st, Status) and st.state == "online" and st.outbox_pending == 0
    sd = decode(f"{P}/demo-gw/patch-1/study", json.dumps(load("patch-study")).encode(), {}, P)
    assert isinstance(sd, Study) and sd.coverage_pct == 100.0 and sd.final


def test_an_auto_event_keeps_its_reason_and_what_it_measured() -> None:
    """A gateway's own event (a 4.8-s pause, as its pipeline built it): reason and note are
    indexed for the queue; what a heart cannot do is left out of the note, a malformed
    reason is not stored, and neither stops the event from being stored."""
    body = load("patch-auto-event")
    ev = decode(f"{P}/demo-gw/patch-1/event", json.dumps(body).encode(), {}, P)
    assert isinstance(ev, Record) and ev.trigger_type == "auto" and ev.priority == 1
    assert (ev.trigger_reason, ev.trigger_note) == ("pause", "pause 4.8 s")
    button = decode(f"{P}/demo-gw/patch-1/event", json.dumps(load("patch-event")).encode(), {}, P)
    assert (button.trigger_reason, button.trigger_note) == (None, None)
    trigger = body["trigger"]
    episode = trigger["details"]["episode"]
    for change, expected in [
        ({"reason": "vt", "details": {"episode": {**episode, "max_rate_bpm": 182.4}}},
         "VT 182 bpm"),
        ({"reason": "brady", "details": {"episode": {"min_rate_bpm": 1e9}}}, "bradycardia"),
        ({"reason": "af_onset", "details": {"episode": {"details": {"mean_rate_bpm": 96.2}}}},
         "AF onset 96 bpm"),
        ({"details": {"episode": {**episode, "in_unusable_signal": True},
                      "supersedes_episode": 3}},
         "pause 4.8 s, in unusable signal, supersedes one of today's"),
        ({"details": {"episode": {**episode, "in_unusable_signal": True, "details": {
            **episode.get("details", {}), "signal_lost_s": 3.0}}}},
         "pause 4.8 s, no signal for 3.0 s of it"),
        ({"details": {"episode": {**episode, "in_unusable_signal": True, "details": {
            **episode.get("details", {}), "signal_lost_s": "lots"}}}},
         "pause 4.8 s, in unusable signal"),
        ({"details": "garbage"}, "pause"),
    ]:  # fmt: skip
        body["trigger"] = {**trigger, **change}
        ev = decode(f"{P}/demo-gw/patch-1/event", json.dumps(body).encode(), {}, P)
        assert ev.trigger_note == expected
    for reason in ("DROP TABLE events", 7, "x" * 40, None):
        body["trigger"] = {**trigger, "reason": reason}
        ev = decode(f"{P}/demo-gw/patch-1/event", json.dumps(body).encode(), {}, P)
        assert (ev.trigger_reason, ev.trigger_note) == (None, None)


def test_ids_from_user_properties_when_not_in_body() -> None:
    body = load("patch-strip")
    del body["msg_id"], body["seq"]
    rec = decode(
        f"{P}/demo-gw/patch-1/strip", json.dumps(body).encode(), {"msg_id": "abc", "seq": "7"}, P
    )
    assert (rec.msg_id, rec.seq) == ("abc", 7)
    with pytest.raises(Reject, match="msg_id"):
        decode(f"{P}/demo-gw/patch-1/strip", json.dumps(body).encode(), {}, P)


@pytest.mark.parametrize(
    ("topic", "change", "reason"),
    [
        ("demo-gw/patch-1/strip", {"schema": "x"}, "schema"),
        ("other-gw/patch-1/strip", {}, "gateway_id"),
        ("demo-gw/patch-2/strip", {}, "device_id"),
        ("demo-gw/patch-1/event", {}, "kind"),
        ("demo-gw/patch-1/strip", {"samples": {"fs": -1, "n": 5}}, "fs"),
        ("demo-gw/patch-1/strip", {"facts": {"heart_rate_bpm": 9000}}, "heart rate"),
        ("demo-gw/patch-1/strip", {"facts": {"heart_rate_bpm": "fast"}}, "heart rate"),
        ("demo-gw/patch-1/strip", {"msg_id": 5}, "msg_id"),
        ("demo-gw/patch-1/strip", {"seq": "x"}, "seq"),
        ("demo-gw/patch-1/strip", {"seq": float("inf")}, "seq"),  # JSON Infinity
        ("demo-gw/patch-1/strip", {"observation": None}, "FHIR"),
        ("demo-gw/patch-1/strip", {"trigger": {"type": ""}}, "trigger"),
        ("demo-gw/patch-1/strip", {"samples": {"fs": 250, "start": "yesterday"}}, "ISO"),
        ("demo-gw/x/y/z", {}, "topic"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic: str, change: dict, reason: str) -> None:
    body = load("patch-strip") | change
    with pytest.raises(Reject, match=reason):
        decode(f"{P}/{topic}", json.dumps(body).encode(), {}, P)


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[1, 2]", b"null", b"{" * 5000])
def test_garbage_is_rejected(payload: bytes) -> None:
    with pytest.raises(Reject):
        decode(f"{P}/gw/dev/event", payload, {}, P)


def test_status_and_topics() -> None:
    assert classify(f"{P}/gw-1/status", P) == ("gw-1", None, "status")
    assert classify(f"{P}/gw-1/d/event", P) == ("gw-1", "d", "event")
    will = {
        "schema": "ecg-gateway/status/v1",
        "gateway_id": "gw-1",
        "state": "offline",
        "time": "2026-12-01T16:00:00.000Z",
    }
    st = decode(f"{P}/gw-1/status", json.dumps(will).encode(), {}, P)
    assert st.state == "offline" and st.devices == {}
    with pytest.raises(Reject, match="online nor offline"):
        decode(f"{P}/gw-1/status", json.dumps(will | {"state": "maybe"}).encode(), {}, P)
