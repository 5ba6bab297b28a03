"""What the broker refused: PUBACKs with a failure reason code, counted and said (pure)."""

from __future__ import annotations

from gateway.mqtt.codec import Prop, PubAck, reason_name
from gateway.mqtt.window import Refused

__all__ = ["Refusals"]


class Refusals:
    """Refused messages counted by reason name; :meth:`add` returns the line to log (also
    kept as ``last``): which message, on which topic, why, and when it is offered again."""

    def __init__(self) -> None:
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.last: str | None = None

    def add(self, r: Refused, packet: PubAck, retry_s: float) -> str:
        """Count one refusal; ``retry_s``: seconds before the message is offered again."""
        reason = reason_name(r.reason)
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        text = packet.props.get(Prop.REASON_STRING)
        msg = r.row
        self.last = (
            f"broker refused {msg.kind} {msg.msg_id} (device {msg.device_id}, seq {msg.seq}) "
            f"on {msg.topic}: {reason}{f' ({text})' if text else ''}; kept in the outbox, "
            f"retry in {retry_s:g} s"
        )
        return self.last
