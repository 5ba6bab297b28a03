"""Remote configuration (issue #14): the decisions (pure), then the whole loop on this
machine — the center's console publishes a version retained, a running gateway (simulated
patches on the bumble radio, a real mosquitto) applies it, refuses an invalid one, rolls back
one whose device does not come up, reports each outcome in its status, and starts on the
applied version after a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.config import parse_config
from gateway.remote_config import Apply, Ignore, Refuse, RemoteConfig, decide, not_up
from tests.support import wait_for


def _base(tmp: Path, url: str = "mqtt://127.0.0.1:1883", devices: list | None = None):  # type: ignore[no-untyped-def]
    return parse_config({"gateway": {"id": "gw-1", "state_dir": str(tmp / "state")},
                         "mqtt": {"url": url, "insecure": True},
                         "recording": {"enabled": False}, "devices": devices or []})


def _doc(version: Any, config: Any, gateway: str = "gw-1") -> bytes:
    return json.dumps({"schema": "ecg-center/config/v1", "gateway_id": gateway,
                       "version": version, "config": config}).encode()


def test_decisions(tmp_path: Path) -> None:
    base = _base(tmp_path)
    ok = decide(_doc(3, {"strips": {"period_s": 60}}), base, {})
    assert isinstance(ok, Apply) and ok.cfg.strips.period_s == 60
    assert ok.cfg.mqtt == base.mqtt and ok.cfg.gateway == base.gateway  # local sections kept
    refusals = {
        b"not json": "not JSON",
        _doc(1, {}, gateway="gw-2"): "for gateway 'gw-2'",
        _doc(0, {}): "no version",
        _doc(True, {}): "no version",
        _doc(2, {"mqtt": {"url": "mqtt://evil:1883"}}): "gateway's own file",
        _doc(2, {"strips": {"period_s": -1}}): "strips.period_s",
        _doc(2, {"devices": [{"kind": "patch", "id": "p"}]}): "devices.0.patch.address",
        _doc(2, {"strps": {}}): "strps: unknown key",
        _doc(2, []): "no config object",
    }
    for payload, reason in refusals.items():
        got = decide(payload, base, {})
        assert isinstance(got, Refuse) and reason in got.reason, (payload, got)
    state = {"applied_version": 5, "last": {"version": 6, "outcome": "rolled_back"}}
    for version, reason in [(5, "is applied"), (4, "older"), (6, "rolled_back already")]:
        got = decide(_doc(version, {}), base, state)
        assert isinstance(got, Ignore) and reason in got.reason
    assert isinstance(decide(_doc(7, {}), base, state), Apply)


def test_a_restart_during_a_trial_rolls_it_back(tmp_path: Path) -> None:
    base = _base(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "remote-config.json").write_text(json.dumps({
        "applied_version": 2, "config": {"strips": {"period_s": 42}},
        "trial": {"version": 3, "config": {"strips": {"period_s": 7}}}}))
    rc = RemoteConfig(base)
    assert rc.effective().strips.period_s == 42
    assert rc.status()["remote_config"]["last"]["outcome"] == "rolled_back"
    assert rc.status()["config_version"] == 2


@pytest.fixture
async def radio():  # type: ignore[no-untyped-def]
    pytest.importorskip("bumble")
    from sim.bumble_backend import SimBleWorld
    from sim.patch import SimPatch

    world = SimBleWorld()
    patches = [SimPatch(world, name=f"ECG Patch {n}", speed=1.0) for n in "AB"]
    for p in patches:
        await p.start()
    world.patches = patches  # type: ignore[attr-defined]
    yield world
    for p in patches:
        await p.stop()


class Console:
    """The center's config editor through its API, as a supervisor."""

    def __init__(self, s: aiohttp.ClientSession, url: str, token: str) -> None:
        self.s, self.path = s, f"{url}/api/gateways/gw-1/config"
        self.h = {"Authorization": f"Bearer {token}"}

    async def publish(self, config: dict) -> int:
        async with self.s.post(self.path, json={"config": config}, headers=self.h) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["version"]

    async def reported(self, version: int) -> dict:
        """The gateway's report once it names ``version`` (polled)."""
        for _ in range(100):
            async with self.s.get(self.path, headers=self.h) as r:
                rep = (await r.json())["reported"] or {}
            if (rep.get("last") or {}).get("version") == version:
                return rep
            await asyncio.sleep(0.1)
        pytest.fail(f"the center never got the gateway's report of version {version}")


async def test_console_to_gateway_applied_refused_rolled_back(tmp_path: Path, mosquitto,  # type: ignore[no-untyped-def]
                                                              radio) -> None:
    from center.app import Center
    from gateway.app import Gateway
    from tests.center.conftest import add_user, center_config

    broker = mosquitto()
    a, b = radio.patches
    patch_a = {"kind": "patch", "id": "patch-a", "address": a.address, "connect_timeout_s": 3}
    patch_b = {"kind": "patch", "id": "patch-b", "address": b.address, "connect_timeout_s": 3}
    gone = {"kind": "patch", "id": "patch-gone", "address": "E0:00:00:00:0F:FF",
            "connect_timeout_s": 1}
    base = _base(tmp_path, broker.url, [patch_a])
    async with Center(center_config(tmp_path / "c.db", broker.url)) as center, \
            aiohttp.ClientSession() as s:
        pw = add_user(center.engine, "sup", "supervisor")
        async with s.post(f"{center.url}/api/login", json={"user": "sup", "password": pw}) as r:
            console = Console(s, center.url, (await r.json())["token"])
        publish = console.publish
        gw, stop = Gateway(base, ble_backend=radio.backend(), remote_up_timeout_s=4.0), \
            asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            await wait_for(lambda: gw.channels.get("patch-a") is not None
                           and gw.channels["patch-a"].stats()["samples"] > 0, "patch-a", 30)
            v1 = await publish({"devices": [patch_a, patch_b], "strips": {"period_s": 120}})
            await wait_for(lambda: gw.remote.state.get("applied_version") == v1, "v1", 30)
            assert set(gw.channels) == {"patch-a", "patch-b"} and gw.cfg.strips.period_s == 120
            assert not not_up(gw.channels)

            v2 = await publish({"devices": [{"kind": "patch", "id": "x"}]})  # no address
            await wait_for(lambda: (gw.remote.state.get("last") or {}).get("version") == v2,
                           "v2 refused", 15)
            assert gw.remote.state["last"]["outcome"] == "refused"
            assert "address" in gw.remote.state["last"]["reason"]

            v3 = await publish({"devices": [patch_a, gone]})
            await wait_for(lambda: (gw.remote.state.get("last") or {}).get("version") == v3,
                           "v3 tried", 30)
            last = gw.remote.state["last"]
            assert last["outcome"] == "rolled_back" and "patch-gone" in last["reason"]
            assert set(gw.channels) == {"patch-a", "patch-b"}  # v1's devices are back
            await wait_for(lambda: not not_up(gw.channels), "v1 devices up again", 30)
            rep = await console.reported(v3)  # the center has the gateway's report
            assert rep["applied_version"] == v1 and rep["last"]["outcome"] == "rolled_back"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    state = tmp_path / "state" / "remote-config.json"
    assert state.stat().st_mode & 0o777 == 0o600
    again = Gateway(base)  # a restart starts on the applied version
    again.remote.base = base
    assert again.remote.effective().strips.period_s == 120
