"""The study viewer in a real browser (headless Chromium): a record sent over MQTT, the
studies list, the full disclosure drawn on paper page by page (a hole stays a hole), the
hour overview, and no script error on the way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from center.app import Center
from tests.center import browser
from tests.center.conftest import add_user, center_config, publish_sync, wait_until
from tests.center.test_studies import FS, chunk_messages, record
from tests.support import wait_for

pytestmark = pytest.mark.slow


def _drawn(driver) -> int | None:  # type: ignore[no-untyped-def]
    """Samples really drawn on the current full-disclosure page (None: not drawn yet)."""
    n = driver.execute_script(
        "const s = document.getElementById('disclosure-svg'); return s ? s.dataset.samples : null;"
    )
    return None if n is None else int(n)


def _look(url: str, password: str, shots: Path) -> dict:
    """Everything the browser does, in one thread (selenium blocks)."""
    from selenium.webdriver.common.by import By

    driver = browser.start()
    try:
        browser.login(driver, url, "sup", password)
        driver.get(f"{url}/studies")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#studies a"), "the list")
        driver.find_element(By.CSS_SELECTOR, "#studies a").click()
        wait_until(lambda: _drawn(driver) is not None, "the first page drawn")
        first = _drawn(driver)
        wait_until(lambda: driver.find_elements(By.ID, "overview-svg"), "the overview")
        minute_labels = len(driver.find_elements(By.CSS_SELECTOR, "#overview-svg text"))
        driver.save_screenshot(str(shots / "study-page0.png"))
        driver.find_element(By.ID, "page-next").click()
        wait_until(lambda: "minute 1" in driver.find_element(By.ID, "page-label").text, "page 2")
        wait_until(lambda: _drawn(driver) != first, "the second page drawn")
        second = _drawn(driver)
        driver.save_screenshot(str(shots / "study-page1.png"))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        return {"first": first, "second": second, "labels": minute_labels, "errors": errors}
    finally:
        driver.quit()


async def test_the_full_disclosure_in_a_browser(broker, tmp_path: Path, mqtt_listener) -> None:
    why = browser.missing()
    if why:
        pytest.skip(why)
    acks = mqtt_listener(broker, "ecg/v1/+/+/record-ack")
    name, hea, dat = record(0, int(300 * FS), hole=(int(100 * FS), int(110 * FS)))
    async with Center(center_config(tmp_path / "c.db", broker.url)) as center:
        await wait_for(center.link.subscribed.is_set, "center subscribed")
        for topic, payload in chunk_messages(name, hea, dat, size=40000):
            publish_sync(broker, topic, payload)
        await wait_for(lambda: acks.on("ecg/v1/gw-1/p1/record-ack"), "the confirmation", 20)
        password = add_user(center.engine, "sup", "supervisor")
        seen = await asyncio.to_thread(_look, center.url, password, tmp_path)
    assert seen["errors"] == []
    assert seen["first"] == int(60 * FS)  # minute 0: every sample
    assert seen["second"] == int(50 * FS)  # minute 1: 100-110 s never recorded, not drawn
    assert seen["labels"] >= 60  # a row per minute of the hour
