"""A light publisher: paho MQTT v5, QoS 1, the gateway's user properties; no gateway code.

Used by the tests (many simulated gateways) and by ``benchmarks/center_ingest.py``.
``python3 -m tests.center.publisher URL N_GATEWAYS N_MESSAGES OUT.jsonl`` publishes and
writes each acknowledged msg_id to OUT (one per line) so a test can compare.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DATA = Path(__file__).parent / "data"


class LightPublisher:
    """Publish prepared payloads with QoS 1 and count PUBACKs (bounded in-flight window)."""

    def __init__(self, url: str, window: int = 200, client_id: str = "") -> None:
        parts = urlsplit(url)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        self._sem = threading.Semaphore(window)
        self._sent: list[tuple[mqtt.MQTTMessageInfo, str]] = []
        self.refused = 0
        self.client.on_publish = self._on_publish
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # paho holds its own lock here: take none of ours (see FACTS.md on deadlocks)
        if reason_code.is_failure:
            self.refused += 1
        self._sem.release()

    def publish(
        self, topic: str, payload: bytes, msg_id: str, seq: int, kind: str, device: str
    ) -> None:
        """QoS 1 with the user properties the gateway sends; blocks when the window is full."""
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [
            ("msg_id", msg_id),
            ("seq", str(seq)),
            ("kind", kind),
            ("device_id", device),
        ]
        self._sem.acquire()
        info = self.client.publish(topic, payload, qos=1, properties=props)
        self._sent.append((info, msg_id))

    def drain(self, limit_s: float = 60.0) -> None:
        """Wait for the broker's PUBACK of everything published so far."""
        deadline = time.monotonic() + limit_s
        for info, _ in self._sent:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))

    @property
    def acked(self) -> list[str]:
        """msg_ids the broker acknowledged (all of them unless ``refused``)."""
        return [m for info, m in self._sent if info.is_published()]

    def close(self) -> None:
        self.drain()
        self.client.disconnect()
        self.client.loop_stop()


def make_messages(
    n_gateways: int, n: int, kinds: tuple[str, ...] = ("patch-strip",), start: int = 0
) -> list[tuple[str, bytes, str, int, str, str]]:
    """``n`` new messages spread over ``n_gateways`` ids, built from recorded payloads:
    (topic, payload, msg_id, seq, kind, device)."""
    bases = {k: json.loads((DATA / f"{k}.json").read_text()) for k in kinds}
    out = []
    for i in range(start, start + n):
        body = dict(bases[kinds[i % len(kinds)]])
        gw = f"gw-{i % n_gateways:04d}"
        body["gateway_id"] = gw
        body["msg_id"] = str(uuid.uuid4())
        body["seq"] = i // n_gateways + 1
        topic = f"ecg/v1/{gw}/{body['device_id']}/{body['kind']}"
        out.append(
            (
                topic,
                json.dumps(body, separators=(",", ":")).encode(),
                body["msg_id"],
                body["seq"],
                body["kind"],
                body["device_id"],
            )
        )
    return out


def main() -> int:
    url, n_gw, n, out, rate = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
        float(sys.argv[5]) if len(sys.argv) > 5 else 0.0,
    )
    pub = LightPublisher(url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    msgs = make_messages(n_gw, n, ("patch-strip", "patch-event"))
    t0 = time.monotonic()
    for i, m in enumerate(msgs):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        pub.publish(*m)
    pub.close()
    Path(out).write_text("".join(f"{m}\n" for m in pub.acked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
