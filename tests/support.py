"""Helpers shared by the whole suite (fixtures live in the conftest files and use these).

- waiting without timing assertions: :func:`wait_for`;
- what an async test left running, stopped at its end (:func:`stop_leftover_tasks`,
  :func:`bound_loop_teardown`: the conftest's guard against a hung event-loop teardown);
- a real mosquitto broker (:class:`Mosquitto`), TLS material made with ``cryptography``,
  and a paho subscriber that records what arrives (:class:`MqttListener`);
- DSP inputs: :func:`blocks_of`, :func:`peak_search_cases`;
- a running driver task and what it delivered (:class:`RunningDriver`).

Nothing here imports bleak, bumble, paho or pyserial at module level, so the pure tests
collect and run without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

from core.block import SampleBlock
from core.events import DeviceEvent, RecordingSink
from core.tasks import cancel_and_wait
from drivers import uuids

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

START_LIMIT_S = 10.0

#: Every characteristic of our patch profile, as a pure patch session is told at connection.
PATCH_CHARACTERISTICS = {
    u: frozenset({"notify"})
    for u in (
        uuids.PATCH_TIME,
        uuids.PATCH_RACP,
        uuids.PATCH_ECG,
        uuids.PATCH_BACKFILL,
        uuids.PATCH_SYMPTOM,
        uuids.PATCH_STATUS,
    )
}
"""Hang guard: how long a broker may take to accept connections (not a timing assertion)."""


async def wait_for(predicate: Callable[[], bool], what: str, limit_s: float = 15.0) -> None:
    """Poll ``predicate`` until true; fail (a hang guard, not a timing assertion) after limit."""
    try:
        async with asyncio.timeout(limit_s):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"gave up waiting for: {what}")


# --- what an async test left running ---------------------------------------------------
LEFTOVER_LIMIT_S = 10.0
"""How long the tasks an async test left running get to end once cancelled."""


async def stop_leftover_tasks(limit_s: float = LEFTOVER_LIMIT_S) -> list[asyncio.Task[Any]]:
    """Cancel every task of the running loop but the caller's, once each (also those they
    start as they end), and wait up to ``limit_s`` in all: the tasks still running then,
    each of which outlived its cancellation."""
    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    deadline = loop.time() + limit_s
    cancelled: set[asyncio.Task[Any]] = set()
    while left := {t for t in asyncio.all_tasks() if t is not me}:
        for task in left - cancelled:
            task.cancel()
        cancelled |= left
        if loop.time() >= deadline:
            return sorted(left, key=asyncio.Task.get_name)
        await asyncio.wait(left, timeout=deadline - loop.time())
    return []


def describe_task(task: asyncio.Task[Any]) -> str:
    """A task's name and where it waits: its chain of awaits, innermost last (a suspended
    task's own stack is only its outermost frame), for a failure report."""
    lines = [f"- {task!r}, waiting in:"]
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = next((getattr(awaited, a) for a in _FRAME if getattr(awaited, a, None)), None)
        if frame is None:  # a future's iterator, or a C awaitable: the end of the chain
            lines.append(f"    {awaited!r}")
            break
        code = frame.f_code
        lines.append(f'    File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaited = next((getattr(awaited, a) for a in _AWAITS if hasattr(awaited, a)), None)
    return "\n".join(lines) + "\n"


_FRAME = ("cr_frame", "gi_frame", "ag_frame")
_AWAITS = ("cr_await", "gi_yieldfrom", "ag_await")


def bound_loop_teardown(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """Tasks still pending on ``loop`` (between pytest-asyncio's runs: the loop is idle);
    if any, the loop is stopped ``LEFTOVER_LIMIT_S`` from now. The runner's own teardown
    cancels every task and waits for them without a limit: a task that swallows its
    cancellation would hang it for ever. Stopped, it gives up (pytest-asyncio reports
    that as a RuntimeWarning) and the suite goes on."""
    if loop.is_closed():
        return []
    pending = sorted(asyncio.all_tasks(loop), key=asyncio.Task.get_name)  # (not done)
    if pending:
        loop.call_later(LEFTOVER_LIMIT_S, loop.stop)
    return pending


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# --- TLS material -------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away PKI: a CA, a broker certificate, a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    ca_key: Path


def make_client_cert(tls: TlsFiles, cn: str, directory: Path) -> tuple[Path, Path]:
    """Issue another client certificate (CN ``cn``) from ``tls``'s CA: (cert, key 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = directory / f"{cn}.pem", directory / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_tls_files(directory: Path, client_cn: str = "gw1") -> TlsFiles:
    """Create a CA, a server cert for 127.0.0.1/localhost and a client cert (keys 0600)."""
    pytest.importorskip("cryptography", reason="the TLS broker variant needs `cryptography`")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, **kw
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("ecg-gateway test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for ext, critical in kw.get("extensions", []):
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue(
        "ecg-gateway test CA",
        ca_key,
        ca_key,
        extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue(
        "localhost",
        server_key,
        ca_key,
        extensions=[
            (
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue(
        client_cn,
        client_key,
        ca_key,
        extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    files = TlsFiles(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        ca_key=directory / "ca.key",
    )
    pem = serialization.Encoding.PEM
    files.ca_file.write_bytes(ca.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.client_cert.write_bytes(client.public_bytes(pem))
    write_key(server_key, files.server_key)
    write_key(client_key, files.client_key)
    write_key(ca_key, files.ca_key)
    return files


# --- the broker -----------------------------------------------------------------------


class Mosquitto:
    """One mosquitto process with its own config directory; restartable on the same port."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        acl: dict[str, list[str]] | None = None,
        tls: bool = False,
        persistence: bool = False,
        identity_as_username: bool = False,
        acl_patterns: list[str] | None = None,
    ) -> None:
        self.dir = directory
        self.identity_as_username = identity_as_username
        self.acl_patterns = list(acl_patterns or [])
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.users = dict(users or {})
        self.tls: TlsFiles | None = make_tls_files(directory) if tls else None
        self.log_path = directory / "mosquitto.log"
        self.conf_path = directory / "mosquitto.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.persistence = persistence
        self._write_config(acl)

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    def _write_config(self, acl: dict[str, list[str]] | None) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
        ]
        if self.persistence:  # sessions and queued messages survive a restart (SIGTERM)
            lines += ["persistence true", f"persistence_location {self.dir}/"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto`, who can't read tmp
        if self.users:
            pw = self.dir / "passwd"
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run(
                    [MOSQUITTO_PASSWD, *flags, str(pw), user, password],
                    check=True,
                    capture_output=True,
                )
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None or self.acl_patterns:
            acl = acl or {}
            acl_path = self.dir / "acl"
            acl_lines = [*self.acl_patterns, ""]  # patterns apply to every user (%u, %c)
            for user, rules in acl.items():
                acl_lines.append(f"user {user}")
                acl_lines += rules
                acl_lines.append("")
            acl_path.write_text("\n".join(acl_lines))
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
                "tls_version tlsv1.2",
            ]
            if self.identity_as_username:  # the certificate's CN is the username (ACLs)
                lines.append("use_identity_as_username true")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start (again) on the same port; return when the port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_LIMIT_S
        while not _port_accepts(self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"mosquitto exited ({self.proc.returncode}): {err}\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mosquitto did not accept on port {self.port}\n{self.log()}")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Terminate the broker (SIGKILL with ``kill=True``: a crash) and wait for it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)  # in case it was paused
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr is not None:
            proc.stderr.close()

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing is answered."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --- a subscriber ---------------------------------------------------------------------


@dataclass
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    user_properties: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttListener:
    """A paho MQTT v5 subscriber (own network thread) recording every message.

    With ``session_expiry_s`` (and a fixed ``client_id``) the broker keeps the
    subscription and queues QoS 1 messages while the listener is away, like a
    monitoring-center consumer would.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics: str | list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
        session_expiry_s: int | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            ctx = ssl.create_default_context(cafile=str(broker.tls.ca_file))
            cert_file, key_file = cert or (broker.tls.client_cert, broker.tls.client_key)
            ctx.load_cert_chain(str(cert_file), str(key_file))
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if session_expiry_s is None:
            self.client.connect(broker.host, broker.port, keepalive=30)
        else:  # a persistent session: survives our reconnects and a broker restart
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            self.client.connect(
                broker.host, broker.port, keepalive=30, clean_start=False, properties=props
            )
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        props: dict[str, str] = {}
        for k, v in getattr(msg.properties, "UserProperty", None) or []:
            props[k] = v
        rec = Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props)
        with self._lock:
            self.messages.append(rec)

    def on(self, topic: str) -> list[Received]:
        """Messages received so far on exactly ``topic``."""
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# --- DSP inputs ----------------------------------------------------------------------
def blocks_of(x: np.ndarray, fs: float, sizes: Sequence[int], leads=None) -> Iterator[SampleBlock]:
    """Cut ``x`` (n, leads) into consecutive blocks of the given sizes (cycled)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    leads = tuple(leads or [f"L{i}" for i in range(x.shape[1])])
    pos, i = 0, 0
    while pos < len(x):
        n = max(int(sizes[i % len(sizes)]), 1)
        yield SampleBlock(x[pos : pos + n], fs, 1_700_000_000.0 + pos / fs, pos, leads, "test")
        pos += n
        i += 1


@st.composite
def peak_search_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int, int] | None:
    """(e, first, a, b, r) for a candidate-peak search over a feature ``e`` of few levels
    (plateaus and ties everywhere), with ``first < a <= b < len(e)`` and ``a >= r``; None
    when the drawn cut leaves nothing to search."""
    values = draw(st.lists(st.integers(0, 4), min_size=8, max_size=300))
    r = draw(st.integers(1, 40))
    cut = draw(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300)))
    e = np.asarray(values, dtype=np.float64)
    first, a, b = sorted(c % (len(e) - 1) for c in cut)
    a, b = max(a, first + 1, r), min(b, len(e) - 1)
    return (e, first, a, b, r) if b > a else None


# --- drivers ---------------------------------------------------------------------------
SPEED = 10.0
"""Simulated device clock speed in the BLE tests: 1 s of ECG every 0.1 s."""


class RunningDriver:
    """A driver task plus what it delivered."""

    def __init__(self, driver: Any, sink: RecordingSink) -> None:
        self.driver = driver
        self.sink = sink
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.driver.run(), name="driver")

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            await cancel_and_wait(self.task)

    def events(self, cls: type[DeviceEvent]) -> list:
        return self.sink.of(cls)

    @property
    def samples(self) -> int:
        return sum(b.n for b in self.sink.blocks)

    def stat(self, name: str) -> Any:
        return self.driver.stats()[name]


# --- the gateway's full recording, read back ----------------------------------------------
NO_SAMPLE = -32768
"""WFDB format 16 "no sample": what the gateway's recording holds where nothing arrived."""


def read_recording(device_dir: Path) -> dict[str, tuple[int, np.ndarray]]:
    """A device's WFDB records as written by the gateway, joined per stream folder:
    ``{folder relative to device_dir ("." for the first stream): (first seq, (n, leads)
    int16 µV, NO_SAMPLE where nothing arrived)}``. Reads the signal files directly (their
    layout is ours: int16 little-endian, leads interleaved), whatever the headers say."""
    out: dict[str, tuple[int, np.ndarray]] = {}
    for folder in sorted({p.parent for p in Path(device_dir).rglob("*.dat")}):
        parts = []
        for dat in folder.glob("*.dat"):
            hea = dat.with_suffix(".hea").read_text().splitlines()[0].split()
            n_leads = int(hea[1])
            first = int(dat.stem.rpartition("_")[2])
            data = np.fromfile(dat, dtype="<i2")
            parts.append((first, data[: data.size - data.size % n_leads].reshape(-1, n_leads)))
        start = min(f for f, _ in parts)
        end = max(f + len(x) for f, x in parts)
        joined = np.full((end - start, parts[0][1].shape[1]), NO_SAMPLE, dtype=np.int16)
        for f, x in parts:
            joined[f - start : f - start + len(x)] = x
        out[str(folder.relative_to(device_dir))] = (start, joined)
    return out


def outbox_counters(db: Path) -> dict[tuple[str, str], int]:
    """The outbox's last seq given per (device, kind), read-only while a gateway may be
    running on it."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {(d, k): int(n) for d, k, n in con.execute("SELECT * FROM counters")}
    finally:
        con.close()
