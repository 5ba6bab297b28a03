"""The center in one process: database, MQTT ingest, ack sender, escalation, web console.

``Center(config)`` is an async context manager; inside it the center runs and ``.url`` is
the console's address. ``ecg-center serve`` runs one until SIGTERM/SIGINT; the gateway's
demo (or a test) can start one in-process on an empty SQLite file::

    async with Center(demo_config("/tmp/c.db", "mqtt://127.0.0.1:1883")) as center:
        print(create_demo_user(center.engine), center.url)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from center.acks import AckSender
from center.auth import AuthError, add_user
from center.config import CenterConfig, parse_config
from center.ingest import IngestWorker
from center.mqtt_link import Incoming, MqttLink
from center.pong import PongResponder, ping_gateway
from center.store import queue as q
from center.store.db import open_engine, upgrade, writer
from center.store.ingest_writer import BatchResult

__all__ = ["Center", "create_demo_user", "demo_config"]

log = logging.getLogger(__name__)


class Center:
    """Everything ``serve`` runs (see the module docstring).

    Parameters
    ----------
    config
        The validated configuration.
    web
        Start the console (False: ingest only, e.g. for ingest benchmarks).
    """

    def __init__(self, config: CenterConfig, *, web: bool = True) -> None:
        self.config = config
        self.engine: sa.Engine = open_engine(config.db.url, pool_size=config.db.pool_size)
        self._web_enabled = web
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._runner = None
        self.link: MqttLink | None = None
        self.ingest: IngestWorker | None = None
        self.acks: AckSender | None = None
        self.escalations = 0
        self.hub = None
        self.scanner = None  # the scanning analysis of verified records (issue #13)

    async def __aenter__(self) -> Center:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(upgrade, self.engine)
        if self._web_enabled:
            from center.web.hub import ChangeHub
            from center.web.server import start_web

            self.hub = ChangeHub(self.engine)
            self._runner, self.url = await start_web(self)
            self._tasks.append(asyncio.create_task(self.hub.run(), name="center-changes"))
        self.ingest = IngestWorker(self.engine, self._ack, self.config.ingest,
                                   self.config.mqtt.topic_prefix, on_batch=self._on_batch)
        self.pong = PongResponder(self.config.mqtt.topic_prefix, self.config.mqtt.client_id)
        self.link = MqttLink(self.config.mqtt, self._on_message, self._on_puback)
        self.acks = AckSender(self.engine, self.link)
        from center.studies.scan import StudyScanner

        studies = self.config.studies
        self.scanner = StudyScanner(self.engine, abandon_after_s=studies.abandon_after_s,
                                    housekeeping_s=studies.housekeeping_s)
        self.scanner.start()
        self.ingest.start()
        self.acks.start()
        self.link.start()
        self._tasks.append(asyncio.create_task(self._escalate_loop(), name="center-escalate"))
        log.info("ecg-center running: broker %s, database %s, console %s",
                 self.config.mqtt.url, self.engine.url.render_as_string(hide_password=True),
                 self.url or "off")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.ingest is not None:
            await asyncio.to_thread(self.ingest.stop)
        if self.acks is not None:
            await asyncio.to_thread(self.acks.stop)
        if self.scanner is not None:
            await asyncio.to_thread(self.scanner.stop)
        if self.link is not None:
            await asyncio.to_thread(self.link.stop)
        self.engine.dispose()

    # --- glue between threads ---------------------------------------------------------
    def _ack(self, generation: int, mid: int, qos: int) -> bool:
        assert self.link is not None
        return self.link.ack(generation, mid, qos)

    def _on_puback(self, mid: int, ok: bool, reason: str) -> None:
        if self.acks is not None:
            self.acks.on_puback(mid, ok, reason)

    def _on_batch(self, res: BatchResult) -> None:
        """From the ingest thread: tell the console (SSE) something changed."""
        if self.hub is not None and self._loop is not None and (res.stored or res.statuses):
            self._loop.call_soon_threadsafe(self.hub.poke)
        if res.confirmations:  # full disclosure: record-acks to send, records to scan
            self.ack_sent_wake()
        if res.verified and self.scanner is not None:
            self.scanner.wake()

    # --- test transmissions of provisioning (issue #14) ---------------------------------
    def _on_message(self, msg: Incoming) -> None:
        """From paho's thread: a gateway's ping to the pong responder (on the event loop),
        everything else to the ingest."""
        prefix = self.config.mqtt.topic_prefix
        if ping_gateway(msg.topic, prefix) is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._answer_ping, msg)
            return
        assert self.ingest is not None
        self.ingest.put(msg)

    def _answer_ping(self, msg: Incoming) -> None:
        """Answer on ``{gw}/pong`` (QoS 0: no PUBACK to mix with the ack sender's), then
        acknowledge the ping."""
        link = self.link
        if link is None:
            return
        out = self.pong(msg.topic, msg.payload, time.time())
        if out is not None:
            link.client.publish(out[0], out[1], qos=0)
        link.ack(msg.generation, msg.mid, msg.qos)

    # --- end of issue #14 ---------------------------------------------------------------

    def ack_sent_wake(self) -> None:
        """An acknowledgement was committed: send it to the gateway now."""
        if self.acks is not None:
            self.acks.wake()

    async def _escalate_loop(self) -> None:
        cfg = self.config.escalation
        while True:
            await asyncio.sleep(cfg.check_every_s)
            try:
                ids = await asyncio.to_thread(self._escalate_once, time.time())
            except sa.exc.SQLAlchemyError as exc:
                log.error("escalation check failed: %s", type(exc).__name__)
                continue
            if ids:
                self.escalations += len(ids)
                log.warning("%d item(s) not acknowledged within %.0f s: escalated",
                            len(ids), cfg.escalate_after_s)
                if self.hub is not None:
                    self.hub.poke()

    def _escalate_once(self, now: float) -> list[str]:
        cfg = self.config.escalation
        with writer(self.engine) as conn:
            return q.escalate_due(conn, now, cfg.escalate_after_s, list(cfg.triggers))


def demo_config(
    db_path: str | Path, broker_url: str, *, listen: str = "127.0.0.1:0"
) -> CenterConfig:
    """A configuration for a demo or a test: SQLite file, plaintext loopback broker."""
    return parse_config({
        # a fresh client id per run: no shared group and a short session, so a demo's
        # session never keeps a share of the messages after it stopped
        "mqtt": {"url": broker_url, "insecure": broker_url.startswith("mqtt://"),
                 "client_id": f"ecg-center-demo-{secrets.token_hex(4)}", "share_group": "",
                 "session_expiry_s": 300},
        "db": {"url": f"sqlite:///{Path(db_path).absolute()}"},
        "web": {"listen": listen},
        "auth": {"cookie_secure": False},
    }, "<demo>")


def create_demo_user(engine: sa.Engine, name: str = "demo", role: str = "supervisor") -> str:
    """Create (or reset) a demo login on a migrated database; print and return its password."""
    password = secrets.token_urlsafe(12)
    from center.store import schema as t

    with writer(engine) as conn:
        conn.execute(t.users.delete().where(t.users.c.name == name))
        try:
            add_user(conn, name, role, password, time.time())
        except AuthError as exc:  # pragma: no cover - name/role are ours
            raise RuntimeError(str(exc)) from exc
    print(f"demo login: user {name!r}, password {password!r}")
    return password
