"""The console in a real browser (headless Chromium via selenium) against ``ecg-center
serve`` and a real mosquitto: an event appears without a reload, its strip is drawn sample
by sample, acknowledging by clicking is stored, survives a restart and reaches the
gateway's ack topic; a 12-lead strip in the standard layout; escalation and its sound cue.
Screenshots of the queue and the strips are saved in the test's directory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.center import browser
from tests.center.conftest import (
    REPO,
    CenterBroker,
    publish_sync,
    variant,
    wait_until,
    with_gap,
)

pytestmark = pytest.mark.slow

PASSWORD = "a long test password"


@pytest.fixture(scope="module")
def driver():  # type: ignore[no-untyped-def]
    why = browser.missing()
    if why:
        pytest.skip(why)
    d = browser.start()
    yield d
    d.quit()


def _serve(serve, broker: CenterBroker, tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "center.toml"
    esc = extra.get("escalate_after_s", "120")
    cfg.write_text(
        f'[mqtt]\nurl = "{broker.url}"\ninsecure = true\nclient_id = "browser-c"\n'
        f'[db]\nurl = "sqlite:///{tmp_path}/center.db"\n'
        f'[web]\nlisten = "127.0.0.1:0"\n[auth]\ncookie_secure = false\n'
        f"[escalation]\nescalate_after_s = {esc}\ncheck_every_s = 0.2\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "center",
            "user",
            "add",
            "tech",
            "--role",
            "technician",
            "--config",
            str(cfg),
        ],
        input=PASSWORD,
        text=True,
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    proc = serve(["--config", str(cfg)], wait_web=True)
    wait_until(lambda: "connected to" in proc.log_path.read_text(), "center connected")
    time.sleep(0.3)  # subscriptions
    return proc, cfg


def _row(driver, msg_id: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'#rows tr[data-msg-id="{msg_id}"]')
    return rows[0] if rows else None


def _row_js(driver, msg_id: str, what: str) -> str | None:  # type: ignore[no-untyped-def]
    """A row's className or innerText read in one script (rows are re-rendered live)."""
    return driver.execute_script(
        f"const r = document.querySelector('#rows tr[data-msg-id=\"' + arguments[0] + '\"]');"
        f" return r ? r.{what} : null;",
        msg_id,
    )


def _points(driver) -> int:  # type: ignore[no-untyped-def]
    """Sample points really in the SVG paths (M/L commands), not just an element."""
    return driver.execute_script(
        "let n = 0; for (const p of document.querySelectorAll('#ecg path.ecg'))"
        " n += (p.getAttribute('d').match(/[ML]/g) || []).length; return n;"
    )


def test_event_live_strip_ack_restart(
    driver,
    broker: CenterBroker,
    tmp_path: Path,
    serve,  # type: ignore[no-untyped-def]
    mqtt_listener,
) -> None:
    from selenium.webdriver.common.by import By

    acks = mqtt_listener(broker, "ecg/v1/+/+/ack")
    proc, _cfg = _serve(serve, broker, tmp_path)
    browser.login(driver, proc.url, "tech", PASSWORD)
    driver.execute_script("window.notReloaded = true;")
    topic, payload, body = variant("patch-event", gateway="gw-b")
    publish_sync(broker, topic, payload)
    wait_until(lambda: _row(driver, body["msg_id"]) is not None, "the event in the open queue")
    assert driver.execute_script("return window.notReloaded === true;")  # no reload
    text = _row_js(driver, body["msg_id"], "innerText")
    assert "patient button" in text and "gw-b" in text and "72" in text
    driver.save_screenshot(str(tmp_path / "queue.png"))
    driver.execute_script(
        "document.querySelector('#rows tr[data-msg-id=\"' + arguments[0] + '\"] td').click();",
        body["msg_id"],
    )
    wait_until(lambda: driver.find_elements(By.ID, "ecg"), "the strip drawn")
    svg = driver.find_element(By.ID, "ecg")
    assert svg.get_attribute("data-samples-drawn") == "5000"  # 20 s at 250 Hz, no gaps
    assert _points(driver) == 5000
    assert driver.find_elements(By.CSS_SELECTOR, "#ecg line.press")  # the press marked
    assert len(driver.find_elements(By.CSS_SELECTOR, "#ecg path.cal")) == 2  # one per row
    driver.find_element(By.ID, "beats").click()
    wait_until(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "#ecg line.beat")) == 25, "beat marks"
    )
    driver.save_screenshot(str(tmp_path / "strip.png"))
    driver.find_element(By.ID, "note").send_keys("patient called back; feels fine")
    driver.find_element(By.ID, "ack").click()
    wait_until(lambda: "Acknowledged" in driver.find_element(By.ID, "state").text, "acked")
    wait_until(lambda: acks.on(f"ecg/v1/gw-b/{body['device_id']}/ack"), "ack on the wire")
    assert acks.on(f"ecg/v1/gw-b/{body['device_id']}/ack")[0].json()["acknowledged_by"] == "tech"
    proc.stop()  # the acknowledgement survives a restart
    proc.start(wait_web=True)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/center.db")
    with engine.connect() as conn:
        state, by, note = conn.execute(
            sa.text("SELECT state, acknowledged_by, ack_note FROM events WHERE msg_id = :m"),
            {"m": body["msg_id"]},
        ).one()
        trail = (
            conn.execute(
                sa.text("SELECT action FROM audit WHERE msg_id = :m ORDER BY id"),
                {"m": body["msg_id"]},
            )
            .scalars()
            .all()
        )
    assert (state, by, note) == ("acknowledged", "tech", "patient called back; feels fine")
    assert trail == ["view", "acknowledge"]
    driver.get(proc.url)  # the session lives in the database: still logged in
    wait_until(lambda: driver.find_elements(By.ID, "rows"), "the queue again")
    assert _row(driver, body["msg_id"]) is None  # acknowledged items leave the queue


def test_twelve_lead_layout_and_escalation_cue(
    driver,
    broker: CenterBroker,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    serve,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    proc, _cfg = _serve(serve, broker, tmp_path, escalate_after_s="1.5")
    browser.login(driver, proc.url, "tech", PASSWORD)
    driver.find_element(By.ID, "sound").click()  # a user gesture unlocks Web Audio
    wait_until(lambda: "on" in driver.find_element(By.ID, "sound").text, "sound on")
    cart_topic, cart_payload, cart = variant("cart-strip", gateway="gw-c")
    ev_topic, ev_payload, ev = variant("patch-event", gateway="gw-c")
    auto_topic, _, auto = variant("patch-auto-event", gateway="gw-c")
    labels = list(auto["facts"]["beat_labels"])
    labels[3], labels[5] = "V", "S"  # the gateway's classes are drawn on their beats
    auto["facts"]["beat_labels"] = "".join(labels)
    auto["facts"]["lead_off"] = {"time": auto["trigger"]["time"] - 5, "leads": ["ECG"]}
    auto_payload = json.dumps(auto).encode()
    publish_sync(broker, cart_topic, cart_payload)
    publish_sync(broker, ev_topic, ev_payload)
    publish_sync(broker, auto_topic, auto_payload)
    wait_until(lambda: _row(driver, ev["msg_id"]) is not None, "event row")
    # an event the gateway raised by itself says what it measured, in the queue already
    wait_until(lambda: _row(driver, auto["msg_id"]) is not None, "auto event row")
    assert "automatic · pause 4.8 s" in _row_js(driver, auto["msg_id"], "innerText")
    wait_until(
        lambda: "escalated" in (_row_js(driver, ev["msg_id"], "className") or ""),
        "the event escalated on screen",
    )
    assert "ESCALATED" in _row_js(driver, ev["msg_id"], "innerText")
    wait_until(lambda: driver.execute_script("return window.centerBeeps || 0;") > 0, "a beep")
    assert driver.execute_script("return Center.beep(1);") is True  # audible
    driver.find_element(By.ID, "sound").click()  # mute
    assert driver.execute_script("return Center.beep(1);") is False
    assert "escalated" not in _row_js(driver, cart["msg_id"], "className")
    driver.save_screenshot(str(tmp_path / "queue-escalated.png"))
    driver.get(f"{proc.url}/strip/{cart['msg_id']}")
    wait_until(lambda: driver.find_elements(By.ID, "ecg"), "the 12-lead strip drawn")
    svg = driver.find_element(By.ID, "ecg")
    assert svg.get_attribute("data-layout") == "standard"
    assert svg.get_attribute("data-samples-drawn") == str(12 * 1250 + 5000)  # 4x3 + II
    texts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#ecg text.lead")]
    assert {"aVR", "aVL", "aVF", "V1", "V6", "II (rhythm)"} <= set(texts)
    facts = driver.find_element(By.ID, "facts").text
    assert "135/80 mmHg" in facts and "Bruce 1" in facts and "V5" in facts
    driver.save_screenshot(str(tmp_path / "strip-12lead.png"))
    Select(driver.find_element(By.ID, "layout")).select_by_value("rows")
    wait_until(
        lambda: driver.find_element(By.ID, "ecg").get_attribute("data-layout") == "rows", "12 rows"
    )
    assert _points(driver) == 12 * 5000
    # a dropout: 250 samples missing are drawn as a break with its reason, not a line
    gap_topic, gap_payload, gapped = with_gap("patch-strip", "gw-c", 1000, 250)
    publish_sync(broker, gap_topic, gap_payload)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/center.db")

    def stored() -> bool:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.text("SELECT count(*) FROM events WHERE msg_id = :m"),
                    {"m": gapped["msg_id"]},
                ).scalar()
                == 1
            )

    wait_until(stored, "the gapped strip stored")
    driver.get(f"{proc.url}/strip/{gapped['msg_id']}")
    wait_until(lambda: driver.find_elements(By.ID, "ecg"), "the gapped strip drawn")
    assert driver.find_element(By.ID, "ecg").get_attribute("data-samples-drawn") == "2250"
    assert _points(driver) == 2250
    assert driver.execute_script(
        "return [...document.querySelectorAll('#ecg path.ecg')]"
        ".map(p => (p.getAttribute('d').match(/M/g) || []).length);"
    ) == [2]  # two pieces
    gap_label = driver.find_element(By.CSS_SELECTOR, "#ecg text.gaplabel").text
    assert "250 samples" in gap_label and "not in patch memory" in gap_label
    assert "250 samples (not in patch memory)" in driver.find_element(By.ID, "facts").text
    driver.save_screenshot(str(tmp_path / "strip-gap.png"))
    driver.get(f"{proc.url}/strip/{auto['msg_id']}")
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#ecg text.press"), "auto drawn")
    heading = driver.find_element(By.TAG_NAME, "h1").text
    assert heading.startswith("Event raised by the gateway: pause 4.8 s")
    assert "auto: pause 4.8 s" in driver.find_element(By.CSS_SELECTOR, "#ecg text.press").text
    windows = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#ecg text.window")]
    assert windows == ["pre-trigger window 10 s", "post-trigger window 10 s"]
    facts = driver.find_element(By.ID, "facts").text
    assert "pause 4.8 s (automated; read it on the tracing)" in facts
    assert "16 N · 1 S · 1 V" in facts
    assert "Electrodes off (the device says)" in facts and "ECG since" in facts
    driver.find_element(By.ID, "beats").click()  # beat marks on demand, classes with them
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#ecg text.beatclass"), "classes")
    marks = driver.find_elements(By.CSS_SELECTOR, "#ecg text.beatclass")
    assert sorted(m.text for m in marks) == ["S", "V"]
    driver.save_screenshot(str(tmp_path / "strip-auto.png"))


def test_supervisor_revokes_a_lost_gateway(driver, broker: CenterBroker, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           serve) -> None:
    """The configuration page lists the gateway's certificates; a supervisor types its id
    and revokes them: the page says what to do next and shows them revoked (issue #14)."""
    from selenium.webdriver.common.by import By

    from center.ca import init_ca
    from center.enroll import enroll, issue_token
    from center.store.db import open_engine, upgrade, writer
    from gateway.enroll import make_csr, new_key

    ca = init_ca(tmp_path / "ca")
    cfg = tmp_path / "center.toml"
    cfg.write_text(
        f'[mqtt]\nurl = "{broker.url}"\ninsecure = true\nclient_id = "browser-r"\n'
        f'[db]\nurl = "sqlite:///{tmp_path}/center.db"\n'
        f'[web]\nlisten = "127.0.0.1:0"\n[auth]\ncookie_secure = false\n'
        f'[enroll]\nca_dir = "{tmp_path / "ca"}"\n'
    )
    engine = open_engine(f"sqlite:///{tmp_path}/center.db")
    upgrade(engine)
    with writer(engine) as conn:
        token, _ = issue_token(conn, "gw-lost", ttl_s=600, now=time.time())
        enroll(conn, ca, token, make_csr(new_key(), "gw-lost"), days=30, now=time.time())
    engine.dispose()
    subprocess.run([sys.executable, "-m", "center", "user", "add", "boss", "--role",
                    "supervisor", "--config", str(cfg)], input=PASSWORD, text=True, cwd=REPO,
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    proc = serve(["--config", str(cfg)], wait_web=True)
    browser.login(driver, proc.url, "boss", PASSWORD)
    driver.get(f"{proc.url}/gateway/gw-lost/config")
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#certificates tr"), "certificates")
    assert driver.find_element(By.CSS_SELECTOR, "#certificates tr").text.endswith("no")
    driver.find_element(By.ID, "revoke-confirm").send_keys("gw-lost")
    driver.find_element(By.ID, "revoke-button").click()
    result = driver.find_element(By.ID, "revoke-result")
    wait_until(lambda: "revoked" in result.text, "the revocation's answer")
    assert result.text.startswith("1 certificate(s) revoked") and "reload the broker" in result.text
    wait_until(lambda: not driver.find_element(By.CSS_SELECTOR, "#certificates tr")
               .text.endswith("no"), "the certificate shown revoked")  # fmt: skip
    assert (tmp_path / "ca" / "crl.pem").exists()
    driver.save_screenshot(str(tmp_path / "revoke.png"))
