"""Provisioning end to end (issue #14) on this machine: a real center with its CA, a real
mosquitto with TLS from that CA (certificate CN = user name, per-gateway ACL, only the
center writes pong and config), the bumble virtual radio with two patches and a Polar
advertising, a simulated cart on a pty.

Scripted provisioning from a blank directory: enrollment with a one-time token, the BLE
scan and the cart by USB id (udev rule), the configuration validated and written, the test
transmission with its round-trip time; then the gateway runs with that configuration and the
center's fleet view shows its health. Interactive provisioning re-asks a wrong answer. A
broker that refuses the gateway's certificate is reported by the test transmission.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from center.app import Center
from center.ca import init_ca, issue_pair
from center.enroll import issue_token
from center.store.db import writer
from gateway.cli import build_parser
from gateway.config import load_config
from gateway.provision import run_provision
from tests.center.conftest import add_user, center_config
from tests.support import MOSQUITTO, Mosquitto, wait_for

pytest.importorskip("bumble")

GATEWAY_ACL = [  # docs/broker.md: a gateway writes its own data topics, never config or pong
    "pattern write ecg/v1/%u/status",
    "pattern write ecg/v1/%u/ping",
    "pattern write ecg/v1/%u/+/live",
    "pattern write ecg/v1/%u/+/strip",
    "pattern write ecg/v1/%u/+/event",
    "pattern write ecg/v1/%u/+/study",
    "pattern write ecg/v1/%u/+/record",
    "pattern read ecg/v1/%u/#",
]
CENTER_ACL = {"ecg-center": ["topic read ecg/v1/#", "topic write ecg/v1/+/pong",
                             "topic write ecg/v1/+/config", "topic write ecg/v1/+/+/ack",
                             "topic write ecg/v1/+/+/record-ack"]}


_ALLOWED = ("Success", "No matching subscribers")  # PUBACK success codes (< 0x80)


class CaBroker(Mosquitto):
    """mosquitto with TLS from the center's CA: ``client_ca`` verifies clients (another CA
    makes it refuse every gateway certificate), ``server`` is its own (cert, key)."""

    def __init__(self, directory: Path, server: tuple[Path, Path], client_ca: Path) -> None:
        self.server, self.client_ca = server, client_ca
        super().__init__(directory, acl=CENTER_ACL, acl_patterns=GATEWAY_ACL)

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def _write_config(self, acl):  # type: ignore[no-untyped-def]
        super()._write_config(acl)
        with self.conf_path.open("a") as f:
            f.write(f"cafile {self.client_ca}\ncertfile {self.server[0]}\nkeyfile "
                    f"{self.server[1]}\nrequire_certificate true\ntls_version tlsv1.2\n"
                    "use_identity_as_username true\nmax_queued_messages 0\n")


class Site:
    """The center's side of a provisioning: CA, broker, center, and the tokens it issues."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = init_ca(root / "ca")
        issued = root / "issued"
        self.server = issue_pair(self.ca, "localhost", issued, server=True,
                                 sans=["localhost", "127.0.0.1"])
        self.center_cert = issue_pair(self.ca, "ecg-center", issued, server=False)
        self.broker = CaBroker(root / "mosquitto", self.server, root / "ca" / "ca.pem")
        self.center: Center | None = None

    def config(self) -> Any:
        cert, key = self.center_cert
        return center_config(
            self.root / "center.db", self.broker.url,
            mqtt={"ca_file": str(self.root / "ca" / "ca.pem"), "cert_file": str(cert),
                  "key_file": str(key), "insecure": False},
            enroll={"ca_dir": str(self.root / "ca"), "broker_url": self.broker.url})

    def token(self, gateway: str, ttl: float = 600.0) -> str:
        assert self.center is not None
        with writer(self.center.engine) as conn:
            return issue_token(conn, gateway, ttl_s=ttl, now=time.time())[0]


@pytest.fixture
async def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    import os

    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip("mosquitto not installed")
    s = Site(tmp_path / "site")
    s.broker.start()
    try:
        async with Center(s.config()) as center:
            s.center = center
            await wait_for(center.link.subscribed.is_set, "center subscribed", 20)
            yield s
    finally:
        s.broker.stop()


@contextlib.asynccontextmanager
async def sim_radio():  # type: ignore[no-untyped-def]
    """Two of our patches and a Polar advertising on a virtual radio (+ its scanner); the
    benchmark (benchmarks/provision.py) uses it too."""
    from drivers import uuids
    from sim.bumble_backend import SimBleWorld
    from sim.bumble_scanner import advertise, scanner_backend
    from sim.patch import SimPatch
    from sim.polar_patch import SimBlePatch

    world = SimBleWorld()
    a, b = SimPatch(world, name="ECG Patch A", speed=1.0), SimPatch(world, name="ECG Patch B")
    polar = SimBlePatch(world, name="Polar H10 SIM")
    advertise(a.device, "ECG Patch A", [uuids.PATCH_SERVICE], battery_pct=64)
    advertise(b.device, "ECG Patch B", [uuids.PATCH_SERVICE], battery_pct=18)
    advertise(polar.device, "Polar H10 SIM", [uuids.HEART_RATE_SERVICE, uuids.PMD_SERVICE])
    for dev in (a, b, polar):
        await dev.start()
    world.scanner = scanner_backend(world)  # type: ignore[attr-defined]
    world.patches = (a, b, polar)  # type: ignore[attr-defined]
    try:
        yield world
    finally:
        for dev in (a, b, polar):
            with contextlib.suppress(Exception):
                await dev.stop()


@pytest.fixture
async def radio():  # type: ignore[no-untyped-def]
    async with sim_radio() as world:
        yield world


@pytest.fixture
def cart_port():  # type: ignore[no-untyped-def]
    """A pty standing for the cart's USB-serial bridge, as pyserial's list_ports shows one."""
    import os

    from serial.tools.list_ports_common import ListPortInfo

    master, slave = os.openpty()
    info = ListPortInfo(os.ttyname(slave), skip_link_detection=True)
    info.vid, info.pid, info.serial_number = 0x0403, 0x6001, "CART42"
    info.description = "FT232R USB UART"
    yield info
    os.close(master)
    os.close(slave)


def _publish_reason(site: Site, cert: tuple[Path, Path], topic: str) -> str:
    """The broker's PUBACK reason for a QoS 1 publish with this identity (paho, MQTT v5)."""
    import ssl
    import threading

    import paho.mqtt.client as mqtt

    done, reason = threading.Event(), []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(site.root / "ca" / "ca.pem"))
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    c.tls_set_context(ctx)
    c.on_publish = lambda *a: (reason.append(str(a[3])), done.set())
    c.connect(site.broker.host, site.broker.port)
    c.loop_start()
    try:
        c.publish(topic, b"{}", qos=1)
        assert done.wait(10), "no PUBACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return reason[0]


def _args(tmp: Path, *extra: str) -> Any:
    return build_parser().parse_args([
        "provision", "--config", str(tmp / "etc" / "gateway.toml"),
        "--tls-dir", str(tmp / "etc" / "tls"), "--state-dir", str(tmp / "state"),
        "--udev-dir", str(tmp / "udev"), "--scan-seconds", "1.5", "--ping-timeout", "15",
        *extra])


async def test_scripted_provisioning_to_a_verified_gateway(site: Site, radio, cart_port,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    a, _b, polar = radio.patches
    out: list[str] = []
    args = _args(tmp_path, "--non-interactive", "--gateway-id", "gw-0042",
                 "--center", site.center.url, "--token", site.token("gw-0042"),
                 "--patch", f"patch-a={a.address}", "--patch", f"polar-1={polar.address}",
                 "--cart", f"cart-1={cart_port.device}")
    t0 = time.monotonic()
    code = await run_provision(args, ble_backend=radio.scanner, ports=[cart_port],
                               echo=out.append)
    text = "\n".join(out)
    assert code == 0, text
    assert time.monotonic() - t0 < 60
    # the scan listed the three advertisers with their profiles, RSSI and advertised battery
    assert "ECG Patch A" in text and "battery 64 %" in text and "polar_pmd" in text
    assert "ECG Patch B" in text and "battery 18 %" in text
    cfg = load_config(tmp_path / "etc" / "gateway.toml")
    assert cfg.gateway.id == "gw-0042" and cfg.mqtt.url == site.broker.url
    assert [(d.kind, d.id) for d in cfg.devices] == [
        ("patch", "patch-a"), ("polar_pmd", "polar-1"), ("cart_serial", "cart-1")]
    assert cfg.devices[2].port == "/dev/ecg-cart-CART42"  # the udev rule's stable name
    assert (tmp_path / "udev" / "99-ecg-cart.rules").read_text() == (
        Path(__file__).parents[1] / "udev" / "99-ecg-cart.rules").read_text()
    assert (tmp_path / "etc" / "gateway.toml").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "etc" / "tls" / "client.key").stat().st_mode & 0o777 == 0o600
    assert "READY" in text and "round trip" in text and "For the patient" in text
    # the ACL: a gateway cannot write its own configuration (or pongs); the center can
    tls = tmp_path / "etc" / "tls"
    gw_id = (tls / "client.pem", tls / "client.key")
    assert _publish_reason(site, gw_id, "ecg/v1/gw-0042/config") == "Not authorized"
    assert _publish_reason(site, gw_id, "ecg/v1/gw-0042/pong") == "Not authorized"
    assert _publish_reason(site, gw_id, "ecg/v1/gw-0042/patch-a/strip") in _ALLOWED
    assert _publish_reason(site, site.center_cert, "ecg/v1/gw-0042/config") in _ALLOWED

    # the gateway runs with what provisioning wrote; its health reaches the fleet view
    g = await _run_and_read_fleet(site, cfg.model_copy(update={"devices": cfg.devices[:1]}),
                                  radio)  # the pty is not a cart here: the patch only
    assert g["gateway"] == "gw-0042" and g["state"] == "online"
    assert g["health"]["certificate"]["days_left"] > 100
    assert g["health"]["disk"]["free_mb"] > 0 and "software_version" in g["health"]
    assert g["certificate_days_left"] > 100
    assert g["devices"][0]["device"] == "patch-a"


async def _run_and_read_fleet(site: Site, cfg: Any, radio: Any) -> dict:  # type: ignore[no-untyped-def]
    """Run the gateway until its patch streams and its status is in; the fleet's entry."""
    from gateway.app import Gateway

    gw, stop = Gateway(cfg, ble_backend=radio.backend()), asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await wait_for(lambda: gw.channels.get("patch-a") is not None
                       and gw.channels["patch-a"].stats()["samples"] > 0, "patch streaming", 30)
        gw.publisher.status.post("online")  # type: ignore[union-attr]
        gw.publisher.wake()  # type: ignore[union-attr]
        pw = add_user(site.center.engine, "sup", "supervisor")
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{site.center.url}/api/login",
                              json={"user": "sup", "password": pw}) as r:
                h = {"Authorization": f"Bearer {(await r.json())['token']}"}
            for _ in range(200):
                async with s.get(f"{site.center.url}/api/gateways", headers=h) as r:
                    gws = await r.json()
                if gws and gws[0].get("health") and gws[0]["devices"]:
                    return gws[0]
                await asyncio.sleep(0.1)
        pytest.fail(f"the fleet view never showed the gateway's health: {gws}")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_interactive_provisioning_reasks_a_wrong_answer(site: Site, radio,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    answers = iter(["gw 42",  # a space: refused, asked again
                    "gw-43", "http://center.example.org",  # http off loopback: asked again
                    site.center.url, site.token("gw-43"), "",  # broker: the center's default
                    "9", "1", ""])  # 9 is not in the list; 1 = patch-1 (default id)
    asked: list[str] = []

    def ask(question: str, default: str | None) -> str:  # Enter takes the default
        asked.append(question)
        return next(answers) or (default or "")

    out: list[str] = []
    code = await run_provision(_args(tmp_path), ble_backend=radio.scanner, ports=[], ask=ask,
                               echo=out.append)
    text = "\n".join(out)
    assert code == 0, text
    assert asked.count("gateway id") == 2 and asked.count("center URL") == 2
    assert "✗ 1-64 of" in text and "✗ the center must be reached over https://" in text
    assert "✗ 9: not the number of an ECG patch" in text
    cfg = load_config(tmp_path / "etc" / "gateway.toml")
    assert [d.id for d in cfg.devices] == ["patch-1"]


async def test_a_broker_that_refuses_the_certificate(site: Site, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other-ca")
    other_pem = tmp_path / "other-ca" / "ca.pem"
    strict = CaBroker(tmp_path / "strict", site.server, other_pem)  # trusts another CA
    strict.start()
    try:
        out: list[str] = []
        args = _args(tmp_path, "--non-interactive", "--gateway-id", "gw-44", "--center",
                     site.center.url, "--token", site.token("gw-44"), "--broker", strict.url,
                     "--no-scan", "--ping-timeout", "5")
        code = await run_provision(args, ports=[], echo=out.append)
    finally:
        strict.stop()
    text = "\n".join(out)
    assert code == 1 and "NOT VERIFIED" in text, text
    assert "refused our client certificate" in text, text
    assert other.pem != site.ca.pem


async def test_refused_tokens_stop_provisioning_before_anything_is_written(  # type: ignore[no-untyped-def]
        site: Site, tmp_path: Path) -> None:
    expired = site.token("gw-45", ttl=0.01)
    await asyncio.sleep(0.05)
    for token, gateway, reason in [("nope", "gw-45", "unknown enrollment token"),
                                   (expired, "gw-45", "expired"),
                                   (site.token("gw-46"), "gw-45", "not for gateway 'gw-46'")]:
        out: list[str] = []
        args = _args(tmp_path, "--non-interactive", "--gateway-id", gateway, "--center",
                     site.center.url, "--token", token, "--no-scan")
        assert await run_provision(args, ports=[], echo=out.append) == 1
        assert reason in "\n".join(out)
    assert not (tmp_path / "etc" / "gateway.toml").exists()
    assert not (tmp_path / "etc" / "tls" / "client.key").exists()
    json.dumps(out)
