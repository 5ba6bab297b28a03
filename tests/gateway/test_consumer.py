"""Consumer bookkeeping: duplicates, gaps, late arrivals."""

from __future__ import annotations

from gateway.consumer import MessageTracker


def _body(seq: int, msg_id: str | None = None, device: str = "d") -> dict:
    return {
        "gateway_id": "g",
        "device_id": device,
        "kind": "strip",
        "seq": seq,
        "msg_id": msg_id or f"{device}-{seq}",
    }


def test_duplicates_gaps_and_late_arrivals() -> None:
    t = MessageTracker()
    assert t.accept(_body(1)).new
    assert not t.accept(_body(1)).new and t.duplicates == 1
    a = t.accept(_body(4))
    assert a.new and a.missing == (range(2, 4),) and a.missing_seqs == [range(2, 4)]
    assert t.missing() == {("g", "d", "strip"): [2, 3]}
    late = t.accept(_body(2))
    assert late.late and t.out_of_order == 1
    assert t.missing() == {("g", "d", "strip"): [3]}
    assert t.accept(_body(1, device="other")).missing == ()


def test_first_message_after_restart_of_consumer_reports_earlier_seqs() -> None:
    t = MessageTracker()
    assert t.accept(_body(3)).missing == (range(1, 3),)


def test_streams_are_separate_per_kind_and_device() -> None:
    t = MessageTracker()
    t.accept(_body(1))
    event = {**_body(1, msg_id="e1"), "kind": "event"}
    assert t.accept(event).missing == ()
    assert t.accept(_body(2, device="x")).missing_seqs == [range(1, 2)]
    assert t.accept(_body(2)).missing == ()
    assert t.duplicates == 0 and t.out_of_order == 0
