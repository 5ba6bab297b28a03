"""Study progress on the fleet page (issue #13), in a real browser: per open study the
hours recorded, the analysable share, how much is scanned and the duration band, the same
numbers the API gives; an ended study is not listed there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from center.app import Center
from center.store import schema as t
from center.store.db import writer
from tests.center import browser
from tests.center.conftest import add_user, center_config, wait_until
from tests.center.test_studies import FS, T0, chunk_messages, ingest, record

pytestmark = pytest.mark.slow

_READ_ROWS = """
const out = {};
for (const tr of document.querySelectorAll('#study-progress tr')) {
  const cell = (c) => tr.querySelector('td.' + c).textContent;
  out[tr.dataset.study] = {hours: cell('hours'), share: cell('share'),
                           scanned: cell('scanned'), band: cell('band')};
}
return out;
"""


def _look(url: str, password: str, shot: Path) -> dict[str, dict[str, str]]:
    """The progress rows of the fleet page as the browser shows them (selenium blocks)."""
    from selenium.webdriver.common.by import By

    driver = browser.start()
    try:
        browser.login(driver, url, "sup", password)
        driver.get(f"{url}/fleet")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#study-progress tr"),
                   "the study progress rows")  # fmt: skip
        seen = driver.execute_script(_READ_ROWS)  # at once: the page redraws on changes
        driver.save_screenshot(str(shot))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
        return seen
    finally:
        driver.quit()


async def test_the_fleet_page_shows_each_open_studys_progress(broker, tmp_path: Path) -> None:
    why = browser.missing()
    if why:
        pytest.skip(why)
    async with Center(center_config(tmp_path / "c.db", broker.url)) as center:
        n = int(600 * FS)
        name, hea, dat = record(0, n, hole=(int(100 * FS), int(160 * FS)))  # 9 of 10 min
        ingest(center.engine, chunk_messages(name, hea, dat, size=60000), now=1.8e9)
        late = 4 * 86400 * int(FS)  # four days later: the patch's next study, then ended
        n2, h2, d2 = record(late, int(120 * FS), seed=2)
        ingest(center.engine, chunk_messages(n2, h2, d2, size=60000), now=1.8e9)
        with writer(center.engine) as conn:
            s = t.patch_studies.c
            later = s.started_at > T0 + 86400
            conn.execute(t.patch_studies.update().where(later).values(ended_at=s.last_end_at))
        center.scanner.wake()
        password = add_user(center.engine, "sup", "supervisor")
        async with aiohttp.ClientSession() as http:
            login = {"user": "sup", "password": password}
            r = await http.post(f"{center.url}/api/login", json=login)
            h = {"Authorization": f"Bearer {(await r.json())['token']}"}

            async def studies() -> list[dict]:
                return await (await http.get(f"{center.url}/api/studies", headers=h)).json()

            async def analysed() -> bool:
                return all(st["hours_analysed"] > 0 for st in await studies())

            for _ in range(300):  # the scanner's thread analyses both records
                if await analysed():
                    break
                await asyncio.sleep(0.05)
            api = {st["study_id"]: st for st in await studies()}
        shown = await asyncio.to_thread(_look, center.url, password, tmp_path / "fleet.png")
    open_ids = [i for i, st in api.items() if not st["ended_at"]]
    assert list(shown) == open_ids and len(api) == 2  # the ended one is not on the fleet page
    st = api[open_ids[0]]
    assert st["hours_recorded"] == round(540 / 3600, 3) and 0.9 <= st["analysable_share"] <= 1
    assert st["duration_band"] == "48 hours or less (not more than 48 hours)"
    assert st["days_left_in_band"] == pytest.approx(2 - 600 / 86400, abs=0.01)
    row = shown[open_ids[0]]
    assert row["hours"] == f"{st['hours_recorded']:.2f}"
    assert row["share"] == f"{100 * st['analysable_share']:.1f} %"
    assert row["scanned"] == f"{st['hours_analysed']:.2f} of {st['hours_recorded']:.2f} h"
    assert row["band"] == st["duration_band"]
