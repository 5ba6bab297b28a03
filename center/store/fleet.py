"""The fleet (every gateway's retained status) and a device's timeline."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from center.store import schema as t
from center.timefmt import iso

__all__ = ["device_timeline", "list_gateways"]


def _latest_studies(conn: sa.Connection) -> dict[tuple[str, str], dict[str, Any]]:
    s = t.studies.c
    newest = (sa.select(sa.func.max(s.id).label("id")).group_by(s.gateway, s.device)
              .subquery())
    rows = conn.execute(
        sa.select(s.gateway, s.device, s.coverage_pct, s.samples_missing, s.received_at)
        .join(newest, newest.c.id == s.id)
    ).mappings().all()
    return {(r["gateway"], r["device"]): dict(r) for r in rows}


def _device_entry(name: str, facts: dict[str, Any], study: dict[str, Any] | None) -> dict:
    driver = facts.get("driver") if isinstance(facts.get("driver"), dict) else {}
    return {
        "device": name,
        "samples": facts.get("samples"),
        "gaps": facts.get("gaps"),
        "gap_samples": facts.get("gap_samples"),
        "heart_rate_bpm": facts.get("heart_rate_bpm"),
        "battery_pct": facts.get("battery_pct", driver.get("battery_pct")),
        "connects": driver.get("connects", driver.get("opens")),
        "connect_failures": driver.get("connect_failures", driver.get("open_failures")),
        "coverage_pct": study["coverage_pct"] if study else None,
        "samples_missing": study["samples_missing"] if study else None,
        "recent_gaps": facts.get("recent_gaps") or [],
        # health facts (issue #14)
        "contact": facts.get("contact"),
        "rssi_dbm": facts.get("rssi_dbm"),
        "link_up_s": facts.get("link_up_s"),
    }


def list_gateways(conn: sa.Connection, now: float, *, cert_days: float = 21.0,
                  battery_pct: float = 20.0) -> list[dict[str, Any]]:
    """Every gateway: state (retained status / Last Will), last seen, backlog, devices, host
    health, certificate and warnings (thresholds: days of certificate, battery %)."""
    from center.enroll import gateway_certificates
    from center.fleet_health import certificate_days_left, warnings

    studies = _latest_studies(conn)
    certs = gateway_certificates(conn)
    out = []
    for g in conn.execute(sa.select(t.gateways).order_by(t.gateways.c.gateway_id)).mappings():
        devices = json.loads(g["devices"] or "{}")
        entries = [_device_entry(name, facts, studies.get((g["gateway_id"], name)))
                   for name, facts in sorted(devices.items())]
        health = json.loads(g["health"]) if g["health"] else None
        issued = certs.get(g["gateway_id"])
        days = certificate_days_left(health, issued, now)
        out.append({
            "gateway": g["gateway_id"],
            "state": g["state"],
            "last_seen_at": iso(g["last_seen_at"]),
            "last_seen_age_s": round(now - g["last_seen_at"], 1),
            "status_at": iso(g["status_at"]),
            "outbox_pending": g["outbox_pending"],
            "version": g["version"],
            "transmission": json.loads(g["transmission"]) if g["transmission"] else None,
            "devices": entries,
            "health": health,
            "certificate_days_left": None if days is None else round(days, 1),
            "warnings": warnings(health, entries, issued, now, cert_days=cert_days,
                                 battery_pct=battery_pct),
        })
    for gw, issued in sorted(certs.items()):  # enrolled, never reported a status yet
        if not any(o["gateway"] == gw for o in out):
            out.append({"gateway": gw, "state": "enrolled", "last_seen_at": None,
                        "last_seen_age_s": None, "status_at": None, "outbox_pending": None,
                        "version": None, "transmission": None, "devices": [], "health": None,
                        "certificate_days_left": round((issued["not_after"] - now) / 86400, 1),
                        "warnings": []})
    return out


def device_timeline(
    conn: sa.Connection, gateway: str, device: str, since: float, until: float,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Events, strips, gaps, link states, studies and gateway on/offline, newest first."""
    e, s, d, g = t.events.c, t.studies.c, t.device_log.c, t.gateway_log.c
    items: list[dict[str, Any]] = []
    for r in conn.execute(sa.select(e.msg_id, e.kind, e.trigger_type, e.trigger_note,
                                    e.trigger_at, e.start_at, e.end_at, e.received_at,
                                    e.heart_rate_bpm, e.gap_count, e.gap_samples, e.state)
                          .where(e.gateway == gateway, e.device == device,
                                 e.received_at >= since, e.received_at < until)
                          .order_by(e.received_at.desc()).limit(limit)).mappings():
        items.append({"at": r["received_at"], "type": r["kind"], "msg_id": r["msg_id"],
                      "trigger": r["trigger_type"], "trigger_note": r["trigger_note"],
                      "press_at": iso(r["trigger_at"]),
                      "start_at": iso(r["start_at"]), "end_at": iso(r["end_at"]),
                      "heart_rate_bpm": r["heart_rate_bpm"], "gap_count": r["gap_count"],
                      "gap_samples": r["gap_samples"], "state": r["state"]})
    for r in conn.execute(sa.select(s.received_at, s.coverage_pct, s.samples_missing,
                                    s.gap_count, s.payload)
                          .where(s.gateway == gateway, s.device == device,
                                 s.received_at >= since, s.received_at < until)
                          .order_by(s.received_at.desc()).limit(limit)).mappings():
        gaps = json.loads(r["payload"]).get("gaps") or []
        items.append({"at": r["received_at"], "type": "study", "coverage_pct": r["coverage_pct"],
                      "samples_missing": r["samples_missing"], "gaps": gaps[:20]})
    for r in conn.execute(sa.select(d.at, d.link, d.battery_pct, d.gaps, d.gap_samples)
                          .where(d.gateway == gateway, d.device == device, d.at >= since,
                                 d.at < until).order_by(d.at.desc()).limit(limit)).mappings():
        items.append({"at": r["at"], "type": "device", "link": r["link"],
                      "battery_pct": r["battery_pct"], "gaps": r["gaps"],
                      "gap_samples": r["gap_samples"]})
    for r in conn.execute(sa.select(g.at, g.state).where(g.gateway == gateway, g.at >= since,
                                                         g.at < until)
                          .order_by(g.at.desc()).limit(limit)).mappings():
        items.append({"at": r["at"], "type": "gateway", "state": r["state"]})
    items.sort(key=lambda x: x["at"], reverse=True)
    for item in items[:limit]:
        item["at"] = iso(item["at"])
    return items[:limit]
