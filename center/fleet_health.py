"""Warnings for the fleet view, from a gateway's reported facts (pure; issue #14).

The gateway's status carries host facts (``health``: disk, CPU temperature and throttling,
clock synchronisation, certificate expiry, software and configuration versions) and per
device battery, contact, RSSI and link uptime. The center adds what it knows itself: the
newest certificate it issued to the gateway. Each warning is one line a person can act on,
raised *before* a battery or certificate runs out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["certificate_days_left", "warnings"]

DISK_WARN_PCT = 10.0
CPU_WARN_C = 80.0


def certificate_days_left(health: dict[str, Any] | None, issued: dict[str, Any] | None,
                          now: float) -> float | None:
    """Days until the certificate in use ends: the gateway's own report, else the newest one
    the center issued (renewed but not yet reported counts as renewed)."""
    left = []
    cert = (health or {}).get("certificate")
    if isinstance(cert, dict) and isinstance(cert.get("days_left"), int | float):
        left.append(float(cert["days_left"]))
    if issued is not None:
        left.append((issued["not_after"] - now) / 86400.0)
    return max(left) if left else None


def _device_warnings(devices: list[dict[str, Any]], battery_pct: float) -> list[str]:
    out = []
    for d in devices:
        level = d.get("battery_pct")
        if isinstance(level, int | float) and level <= battery_pct:
            out.append(f"{d['device']}: battery {level:.0f} % — charge or change the patch soon")
        if d.get("contact") is False:
            out.append(f"{d['device']}: electrode contact lost — ask the patient to press the "
                       "patch on firmly")
    return out


def _host_warnings(health: dict[str, Any]) -> list[str]:
    out = []
    disk = health.get("disk") if isinstance(health.get("disk"), dict) else {}
    if isinstance(disk.get("free_pct"), int | float) and disk["free_pct"] < DISK_WARN_PCT:
        out.append(f"disk {disk['free_pct']:.0f} % free — recordings will be pruned early")
    cpu = health.get("cpu") if isinstance(health.get("cpu"), dict) else {}
    if isinstance(cpu.get("temp_c"), int | float) and cpu["temp_c"] >= CPU_WARN_C:
        out.append(f"CPU at {cpu['temp_c']:.0f} °C — check the case ventilation")
    throttled = cpu.get("throttled") if isinstance(cpu.get("throttled"), dict) else {}
    if throttled.get("under_voltage_now") or throttled.get("under_voltage_since_boot"):
        out.append("under-voltage seen — use the original power supply")
    clock = health.get("clock") if isinstance(health.get("clock"), dict) else {}
    if clock.get("synchronized") is False:
        out.append("clock not synchronised — device times may drift (check NTP / network)")
    rc = health.get("remote_config") if isinstance(health.get("remote_config"), dict) else {}
    last = rc.get("last") if isinstance(rc.get("last"), dict) else {}
    if last.get("outcome") in ("refused", "rolled_back"):
        outcome = last["outcome"].replace("_", " ")
        out.append(f"configuration version {last.get('version')} {outcome}: "
                   f"{last.get('reason') or 'no reason given'}")
    return out


def warnings(health: dict[str, Any] | None, devices: list[dict[str, Any]],
             issued: dict[str, Any] | None, now: float, *, cert_days: float,
             battery_pct: float) -> list[str]:
    """Every warning for one gateway (empty: nothing to do)."""
    out = _device_warnings(devices, battery_pct)
    days = certificate_days_left(health, issued, now)
    if days is not None and days <= 0:
        out.append("certificate expired — the gateway cannot connect: enroll it again")
    elif days is not None and days < cert_days:
        out.append(f"certificate ends in {days:.0f} days — renewal is overdue: run "
                   "'ecg-gateway doctor' on the gateway")
    if isinstance(health, dict):
        out += _host_warnings(health)
    return out
