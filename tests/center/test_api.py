"""The JSON API and the security around it, on an in-process center with a real broker:
login, bearer and cookie sessions, CSRF, roles, expiry, login rate limits, 409 on double
acknowledgement, the ack message on the wire, escalation."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from center.app import Center
from center.store import schema as t
from tests.center.conftest import CenterBroker, add_user, center_config, publish_sync, variant
from tests.support import wait_for


async def _started(center: Center) -> None:
    await wait_for(center.link.subscribed.is_set, "center subscribed")


async def _token(s: aiohttp.ClientSession, url: str, user: str, pw: str) -> str:
    r = await s.post(f"{url}/api/login", json={"user": user, "password": pw})
    assert r.status == 200, await r.text()
    return (await r.json())["token"]


async def _publish_event(
    center: Center, broker: CenterBroker, name: str = "patch-event", gateway: str = "gw-1"
) -> dict:
    topic, payload, body = variant(name, gateway=gateway)
    before = center.ingest.stats.stored
    publish_sync(broker, topic, payload)
    await wait_for(lambda: center.ingest.stats.stored > before, "stored")
    return body


async def test_api_flow_ack_409_and_ack_on_the_wire(broker, tmp_path: Path, mqtt_listener) -> None:  # type: ignore[no-untyped-def]
    acks = mqtt_listener(broker, "ecg/v1/+/+/ack")
    async with (
        Center(center_config(tmp_path / "c.db", broker.url)) as center,
        aiohttp.ClientSession() as s,
    ):
        await _started(center)
        pw = add_user(center.engine, "tech", "technician")
        async with s.get(f"{center.url}/healthz") as r:  # no login needed
            assert r.status == 200 and (await r.json())["broker"] is True
        async with s.get(f"{center.url}/api/events") as r:
            assert r.status == 401
        h = {"Authorization": f"Bearer {await _token(s, center.url, 'tech', pw)}"}
        body = await _publish_event(center, broker)
        strip = await _publish_event(center, broker, "patch-strip")
        async with s.get(f"{center.url}/api/events?state=open", headers=h) as r:
            items = await r.json()
            assert r.headers["X-Total-Count"] == "2"
        assert [i["msg_id"] for i in items] == [body["msg_id"], strip["msg_id"]]  # press first
        keys = {
            "msg_id",
            "gateway",
            "device",
            "trigger",
            "received_at",
            "state",
            "acknowledged_by",
            "acknowledged_at",
        }
        assert keys <= set(items[0]) and items[0]["trigger"] == "button"
        async with s.get(f"{center.url}/api/events/{body['msg_id']}", headers=h) as r:
            detail = await r.json()
        assert detail["payload"]["observation"]["resourceType"] == "Observation"
        assert [a["action"] for a in detail["audit"]] == ["view"]
        url = f"{center.url}/api/events/{body['msg_id']}/ack"
        async with s.post(url, json={"note": "called the patient"}, headers=h) as r:
            assert r.status == 200
            done = await r.json()
        assert done["state"] == "acknowledged" and done["acknowledged_by"] == "tech"
        async with s.post(url, json={}, headers=h) as r:
            assert r.status == 409 and (await r.json())["acknowledged_by"] == "tech"
        async with s.post(f"{center.url}/api/events/nope/ack", json={}, headers=h) as r:
            assert r.status == 404
        async with s.get(f"{center.url}/api/events?state=acknowledged", headers=h) as r:
            assert [i["msg_id"] for i in await r.json()] == [body["msg_id"]]
        async with s.get(f"{center.url}/api/gateways", headers=h) as r:
            assert r.status == 200
        for page in (
            "/",
            "/fleet",
            "/search?state=all",
            f"/strip/{strip['msg_id']}",
            "/device/gw-1/patch-1",
        ):
            async with s.get(f"{center.url}{page}", headers=h) as r:
                assert r.status == 200, page
                assert "Content-Security-Policy" in r.headers
        async with s.get(f"{center.url}/api/devices/gw-1/patch-1/timeline", headers=h) as r:
            assert {i["type"] for i in await r.json()} == {"event", "strip"}
        async with s.get(f"{center.url}/api/events?state=all&trigger=button", headers=h) as r:
            assert [i["msg_id"] for i in await r.json()] == [body["msg_id"]]
        async with s.get(f"{center.url}/api/events?since=yesterday", headers=h) as r:
            assert r.status == 400
        topic = f"ecg/v1/gw-1/{body['device_id']}/ack"
        await wait_for(lambda: acks.on(topic), "the ack message")
        msg = acks.on(topic)[0].json()
        assert msg["msg_id"] == body["msg_id"] and msg["note_present"] is True
        assert msg["schema"] == "ecg-center/ack/v1" and msg["kind"] == "event"
        assert "called" not in json.dumps(msg)  # the note stays at the center
        await wait_for(lambda: center.acks.stats.confirmed == 1, "PUBACK recorded")
        with center.engine.connect() as conn:
            assert conn.execute(sa.select(t.ack_outbox.c.sent_at)).scalar() is not None


async def test_cookie_session_csrf_roles_and_expiry(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with Center(center_config(tmp_path / "c.db", broker.url)) as center:
        await _started(center)
        tech_pw = add_user(center.engine, "tech", "technician")
        sup_pw = add_user(center.engine, "boss", "supervisor")
        body = await _publish_event(center, broker)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.post(
                f"{center.url}/login",
                data={"user": "tech", "password": tech_pw},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
            async with s.get(f"{center.url}/") as r:
                page = await r.text()
            csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
            ack = f"{center.url}/api/events/{body['msg_id']}/ack"
            async with s.post(ack, json={"note": ""}) as r:
                assert r.status == 403  # a cookie request without the CSRF token
            async with s.post(ack, json={"note": ""}, headers={"X-CSRF-Token": "wrong"}) as r:
                assert r.status == 403
            async with s.get(f"{center.url}/api/users") as r:
                assert r.status == 403  # technicians do not manage users
            async with s.post(
                f"{center.url}/api/users",
                headers={"X-CSRF-Token": csrf},
                json={"name": "x", "role": "technician", "password": "p" * 12},
            ) as r:
                assert r.status == 403
            async with s.get(f"{center.url}/users", allow_redirects=False) as r:
                assert r.status == 403
            async with s.post(ack, json={"note": ""}, headers={"X-CSRF-Token": csrf}) as r:
                assert r.status == 200
            with center.engine.begin() as conn:  # the session sat idle past the limit
                conn.execute(t.sessions.update().values(last_used_at=0.0))
            async with s.get(f"{center.url}/api/events") as r:
                assert r.status == 401
            async with s.get(f"{center.url}/", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/login"
        async with aiohttp.ClientSession() as s:
            h = {"Authorization": f"Bearer {await _token(s, center.url, 'boss', sup_pw)}"}
            new = {"name": "nurse", "role": "technician", "password": "long enough pw"}
            async with s.post(f"{center.url}/api/users", json=new, headers=h) as r:
                assert r.status == 201  # bearer: no CSRF token needed
            async with s.get(f"{center.url}/api/users", headers=h) as r:
                assert {u["name"] for u in await r.json()} == {"tech", "boss", "nurse"}
            await _token(s, center.url, "nurse", "long enough pw")
            with center.engine.begin() as conn:  # absolute limit: logged in 13 h ago
                conn.execute(t.sessions.update().values(created_at=1.0))
            async with s.get(f"{center.url}/api/events", headers=h) as r:
                assert r.status == 401
        with center.engine.connect() as conn:
            actions = conn.execute(sa.select(t.audit.c.action)).scalars().all()
        assert {"login", "acknowledge", "user_add"} <= set(actions)


@pytest.mark.parametrize("per", ["user", "ip"])
async def test_login_rate_limit(broker, tmp_path: Path, per: str) -> None:  # type: ignore[no-untyped-def]
    cfg = center_config(
        tmp_path / "c.db", broker.url, auth={"max_failures_per_user": 3, "max_failures_per_ip": 5}
    )
    async with Center(cfg) as center, aiohttp.ClientSession() as s:
        pw = add_user(center.engine, "tech", "technician")
        names = ["tech"] * 3 if per == "user" else [f"u{i}" for i in range(5)]
        for name in names:
            async with s.post(
                f"{center.url}/api/login", json={"user": name, "password": "wrong"}
            ) as r:
                assert r.status == 401
        async with s.post(f"{center.url}/api/login", json={"user": "tech", "password": pw}) as r:
            assert r.status == 429  # even the right password waits
        with center.engine.connect() as conn:
            assert "login_limited" in conn.execute(sa.select(t.audit.c.action)).scalars().all()


async def test_escalation_is_counted_and_audited(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = center_config(
        tmp_path / "c.db", broker.url, escalation={"escalate_after_s": 0.5, "check_every_s": 0.1}
    )
    async with Center(cfg) as center, aiohttp.ClientSession() as s:
        await _started(center)
        pw = add_user(center.engine, "tech", "technician")
        h = {"Authorization": f"Bearer {await _token(s, center.url, 'tech', pw)}"}
        body = await _publish_event(center, broker)
        await _publish_event(center, broker, "patch-strip")  # periodic strips do not escalate
        await wait_for(lambda: center.escalations == 1, "escalation")
        async with s.get(f"{center.url}/api/summary", headers=h) as r:
            assert (await r.json())["queue"]["escalated"] == 1
        async with s.get(f"{center.url}/api/events/{body['msg_id']}/audit", headers=h) as r:
            trail = await r.json()
        assert trail[0]["action"] == "escalate" and trail[0]["actor"] is None
