"""The QoS 1 delivery window fed by hand: room, PUBACKs, refusals, reconnections, stalls."""

from __future__ import annotations

from gateway.mqtt.window import Acked, DeliveryWindow, Refused, Send
from gateway.outbox import OutboxMessage


def _rows(n: int, first: int = 1) -> list[OutboxMessage]:
    return [
        OutboxMessage(i, "strip", "p1", "t", i, f"m-{i}", b"{}", 0.0)
        for i in range(first, first + n)
    ]


def test_room_is_the_smaller_of_our_limit_and_the_brokers_receive_maximum() -> None:
    w = DeliveryWindow(max_inflight=20)
    assert w.room == 0  # not connected
    w.connected(receive_maximum=5, session_present=False, now=0.0)
    assert w.room == 4  # one left for the status
    sends = w.offer(_rows(10), now=0.0)
    assert [s.row.row_id for s in sends] == [1, 2, 3, 4] and w.room == 0
    assert len({s.packet_id for s in sends}) == 4 and not any(s.dup for s in sends)


def test_success_acks_refusal_backs_off_unknown_ids_are_ignored() -> None:
    w = DeliveryWindow(max_inflight=3, retry_backoff_s=30.0)
    w.connected(65535, False, 0.0)
    a, b, _ = w.offer(_rows(3), 0.0)
    assert w.puback(a.packet_id, 0x10, 1.0) == Acked(a.row)  # No matching subscribers: fine
    assert w.puback(b.packet_id, 0x87, 1.0) == Refused(b.row, 0x87)
    assert w.puback(999, 0, 1.0) is None
    assert b.row.row_id in w.busy(now=20.0)  # backing off
    assert b.row.row_id not in w.busy(now=31.5)


def test_reconnect_with_session_resends_with_dup_and_same_ids_first() -> None:
    w = DeliveryWindow(max_inflight=5)
    w.connected(65535, False, 0.0)
    sent = w.offer(_rows(3), 0.0)
    w.disconnected()
    assert w.room == 0 and w.offer(_rows(1, 10), 0.0) == []
    again = w.connected(65535, True, 5.0)
    assert again == [Send(s.row, s.packet_id, dup=True) for s in sent]


def test_reconnect_without_session_offers_the_rows_again_as_new() -> None:
    w = DeliveryWindow(max_inflight=5)
    w.connected(65535, False, 0.0)
    w.offer(_rows(3), 0.0)
    w.disconnected()
    assert w.connected(65535, False, 5.0) == []
    assert w.busy(5.0) == set()  # the outbox will offer them again, oldest first
    assert len(w.offer(_rows(3), 5.0)) == 3


def test_a_puback_that_never_comes_means_a_stalled_connection_not_a_resend() -> None:
    w = DeliveryWindow(max_inflight=5, ack_timeout_s=10.0)
    w.connected(65535, False, 0.0)
    w.offer(_rows(1), 0.0)
    assert not w.stalled(9.0)
    assert w.stalled(10.5)
    w.disconnected()
    assert not w.stalled(20.0)


def test_packet_ids_wrap_and_skip_those_in_flight() -> None:
    w = DeliveryWindow(max_inflight=3)
    w.connected(65535, False, 0.0)
    w._next_id = 65533
    ids = [s.packet_id for s in w.offer(_rows(3), 0.0)]
    assert ids == [65533, 65534, 1]  # 65535 is SUBSCRIBE's
