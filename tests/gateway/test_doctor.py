"""``ecg-gateway doctor`` (issue #14): every check passes on good facts and is made to fail
once on purpose; the real gatherer on this machine (no BlueZ, no systemd: FAIL with the fix;
a pty cart; the simulated radio; a real broker); ``--json`` and the exit status."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.doctor import FAIL, OK, WARN, Facts, doctor, gather, render, run_checks
from gateway.preflight import Problem

ROOT = Path(__file__).resolve().parents[2]
PATCH = "E0:00:00:00:00:01"


def _cfg(tmp: Path, url: str = "mqtts://b:8883", **mqtt: Any):  # type: ignore[no-untyped-def]
    return parse_config({
        "gateway": {"id": "gw-1", "state_dir": str(tmp / "state"), "outbox_max_mb": 100},
        "mqtt": {"url": url, **mqtt},
        "recording": {"max_mb": 100},
        "devices": [{"kind": "patch", "id": "p1", "address": PATCH},
                    {"kind": "cart_serial", "id": "c1", "port": "/dev/ttyX"}]})


def _good(tmp: Path) -> Facts:
    return Facts(
        _cfg(tmp), bluez={"powered": True}, user="ecg-gateway",
        groups={"bluetooth", "dialout"}, ble_seen={PATCH: -60}, serial={"/dev/ttyX": "ok"},
        broker={"connack": 0}, cert={"cn": "gw-1", "days_left": 150.0}, clock_synced=True,
        disk_free_mb=5000.0, state_used_mb=10.0, outbox_pending=3,
        state_dir={"mode": 0o700, "owner": "ecg-gateway"},
        unit={"installed": True, "enabled": True})


def test_all_ok_on_good_facts(tmp_path: Path) -> None:
    results = run_checks(_good(tmp_path))
    assert {r.status for r in results} == {OK}, render(results)
    assert len(results) == 12  # one line per device


BROKEN = {  # check name -> a way to break it, and the status it must give
    "bluetooth: no BlueZ": ({"bluez": {"error": "no system D-Bus"}}, "bluetooth", FAIL),
    "bluetooth: adapter off": ({"bluez": {"powered": False}}, "bluetooth", FAIL),
    "groups": ({"groups": {"bluetooth"}}, "groups", FAIL),
    "patch not heard": ({"ble_seen": {}}, "device p1", FAIL),
    "patch weak": ({"ble_seen": {PATCH: -97}}, "device p1", WARN),
    "no scan": ({"ble_seen": None}, "device p1", WARN),
    "cart missing": ({"serial": {"/dev/ttyX": "No such file or directory"}}, "device c1", FAIL),
    "broker unreachable": ({"broker": {"error": "connection refused"}}, "broker", FAIL),
    "broker refuses": ({"broker": {"connack": 0x87}}, "broker", FAIL),
    "certificate unreadable": ({"cert": {"error": "x"}}, "certificate", FAIL),
    "certificate of another gateway": ({"cert": {"cn": "gw-2", "days_left": 90}},
                                       "certificate", FAIL),
    "certificate expired": ({"cert": {"cn": "gw-1", "days_left": -1}}, "certificate", FAIL),
    "certificate ending": ({"cert": {"cn": "gw-1", "days_left": 9}}, "certificate", WARN),
    "clock": ({"clock_synced": False}, "clock", FAIL),
    "disk full": ({"disk_free_mb": 5.0}, "disk", FAIL),
    "disk short of quotas": ({"disk_free_mb": 150.0}, "disk", WARN),
    "disk unmeasurable": ({"disk_free_mb": None}, "disk", FAIL),
    "outbox backlog": ({"outbox_pending": 5000}, "outbox", WARN),
    "state dir open": ({"state_dir": {"mode": 0o755, "owner": "ecg-gateway"}}, "state dir",
                       FAIL),
    "state dir missing": ({"state_dir": {"error": "No such file"}}, "state dir", FAIL),
    "unit missing": ({"unit": {"installed": False}}, "systemd unit", FAIL),
    "unit disabled": ({"unit": {"installed": True, "enabled": False}}, "systemd unit", FAIL),
    "no systemd": ({"unit": {"error": "systemctl not found"}}, "systemd unit", FAIL),
    "run would refuse": ({"preflight": [Problem("mqtt.password_file", "readable by others")]},
                         "start checks", FAIL),
    "run would warn": ({"preflight": [Problem("devices.1.port", "missing", fatal=False)]},
                       "start checks", WARN),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_check_fails_once(tmp_path: Path, case: str) -> None:
    change, check, status = BROKEN[case]
    facts = dataclasses.replace(_good(tmp_path), **change)
    results = run_checks(facts)
    bad = [r for r in results if r.status != OK]
    assert [(r.check, r.status) for r in bad] == [(check, status)], render(results)
    assert bad[0].fix, "every WARN/FAIL says how to fix it"
    assert "fix: " in render(results)


def test_plaintext_broker_is_a_warning(tmp_path: Path) -> None:
    facts = dataclasses.replace(_good(tmp_path), cfg=_cfg(tmp_path, "mqtt://b:1883",
                                                          insecure=True))
    assert [r.status for r in run_checks(facts) if r.check == "broker"] == [WARN]


async def test_real_facts_on_this_machine(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    """No BlueZ and no systemd here: both FAIL with their fix; the pty cart, the simulated
    patch, the broker, the disk and the state directory are seen for real."""
    pytest.importorskip("bumble")
    from drivers import uuids
    from sim.bumble_backend import SimBleWorld
    from sim.bumble_scanner import advertise, scanner_backend
    from sim.patch import SimPatch

    broker = mosquitto()
    world = SimBleWorld()
    patch = SimPatch(world)
    advertise(patch.device, "ECG Patch", [uuids.PATCH_SERVICE])
    master, slave = os.openpty()
    (tmp_path / "state").mkdir(mode=0o700)
    cfg = parse_config({
        "gateway": {"id": "gw-1", "state_dir": str(tmp_path / "state"), "outbox_max_mb": 10},
        "mqtt": {"url": broker.url, "insecure": True},
        "recording": {"max_mb": 10},
        "devices": [{"kind": "patch", "id": "p1", "address": patch.address},
                    {"kind": "cart_serial", "id": "c1", "port": os.ttyname(slave)},
                    {"kind": "cart_serial", "id": "c2", "port": str(tmp_path / "ttyGone")}]})
    await patch.start()
    try:
        facts = await gather(cfg, ble_backend=scanner_backend(world), scan_s=1.0)
        bluez = await gather(cfg.model_copy(update={"devices": cfg.devices[:1]}), scan_s=0.1)
    finally:
        await patch.stop()
        os.close(master)
        os.close(slave)
    by = {r.check: r for r in run_checks(facts)}
    assert by["device p1"].status == OK and "RSSI -50 dBm" in by["device p1"].detail
    assert by["device c1"].status == OK and by["device c2"].status == FAIL
    assert by["broker"].status == WARN and "accepted" in by["broker"].detail
    assert by["disk"].status == OK and by["state dir"].status == OK
    assert by["systemd unit"].status == FAIL and "systemctl" in by["systemd unit"].fix
    assert by["clock"].status in (OK, FAIL)
    real_bt = {r.check: r for r in run_checks(bluez)}["bluetooth"]
    assert real_bt.status == FAIL and "systemctl enable --now bluetooth" in real_bt.fix
    lines: list[str] = []
    assert await doctor(cfg, ble_backend=scanner_backend(world), scan_s=0.2,
                        echo=lines.append) == 1
    assert "FAIL" in lines[0] and "checks:" in lines[-1]


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(
        f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path}/s"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:9"\ninsecure = true\n')
    out = subprocess.run([sys.executable, "-m", "gateway", "doctor", "--config",
                          str(tmp_path / "g.toml"), "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    results = {r["check"]: r for r in json.loads(out.stdout)}
    assert results["broker"]["status"] == FAIL and "refused" in results["broker"]["detail"]
    assert results["bluetooth"]["status"] == OK  # no BLE device configured
    assert results["state dir"]["status"] == FAIL and "install -d" in results["state dir"]["fix"]
