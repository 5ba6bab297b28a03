"""Studies in the console's API, on an in-process center with a real broker: record chunks
over MQTT, the confirmation on the wire, the list with progress, the viewer's windows, the
supervisor's edit, the report button and the exports read back (WFDB byte for byte, EDF+
sample for sample with the gap annotated)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import aiohttp
import numpy as np

from center.app import Center
from tests.center.conftest import add_user, center_config, publish_sync
from tests.center.test_studies import FS, chunk_messages, record
from tests.support import wait_for


async def test_a_study_over_mqtt_in_the_console_and_its_exports(
    broker, tmp_path: Path, mqtt_listener
) -> None:
    acks = mqtt_listener(broker, "ecg/v1/+/+/record-ack")
    name, hea, dat = record(0, int(300 * FS), hole=(int(100 * FS), int(110 * FS)))
    async with Center(center_config(tmp_path / "c.db", broker.url)) as center, \
            aiohttp.ClientSession() as s:  # fmt: skip
        await wait_for(center.link.subscribed.is_set, "center subscribed")
        for topic, payload in chunk_messages(name, hea, dat, size=40000):
            publish_sync(broker, topic, payload)
        await wait_for(lambda: acks.on("ecg/v1/gw-1/p1/record-ack"), "the confirmation", 20)
        await wait_for(lambda: center.scanner.analysed >= 1, "the record scanned", 20)
        pw = add_user(center.engine, "sup", "supervisor")
        r = await s.post(f"{center.url}/api/login", json={"user": "sup", "password": pw})
        h = {"Authorization": f"Bearer {(await r.json())['token']}"}
        (st,) = await (await s.get(f"{center.url}/api/studies", headers=h)).json()
        base = f"{center.url}/api/studies/{st['study_id']}"
        detail = await (await s.get(base, headers=h)).json()
        window = await (await s.get(f"{base}/ecg?at=95&seconds=20", headers=h)).json()
        overview = await (await s.get(f"{base}/overview?hour=0", headers=h)).json()
        r = await s.post(base, headers=h, json={"patient": "PSN-0042"})
        assert r.status == 200
        pdf = await (await s.get(f"{base}/report.pdf", headers=h)).read()
        wfdb_zip = await (await s.get(f"{base}/export.zip", headers=h)).read()
        edf = await (await s.get(f"{base}/export.edf", headers=h)).read()
        page = await (await s.get(f"{center.url}/study/{st['study_id']}", headers=h)).text()
        edited = await (await s.get(base, headers=h)).json()
    ack = json.loads(acks.on("ecg/v1/gw-1/p1/record-ack")[0].payload)
    assert ack["sha256"] == hashlib.sha256(hea.encode() + dat).hexdigest()
    assert st["hours_recorded"] == round(290 / 3600, 3) and 0.9 < st["analysable_share"] <= 1
    assert [v["version"] for v in detail["versions"]] == [1]
    data = window["data"]
    assert len(data) == 20 * FS and all(v is None for v in data[int(5 * FS) : int(15 * FS)])
    assert data[0] is not None and window["beats"]
    assert overview["fs"] == 25 and len(overview["min"]) == 3600 * 25  # an hour a page
    assert overview["min"][299 * 25] is not None and overview["max"][301 * 25] is None
    assert edited["patient"] == "PSN-0042" and pdf.startswith(b"%PDF")
    assert 'id="disclosure"' in page and 'id="overview"' in page
    with zipfile.ZipFile(io.BytesIO(wfdb_zip)) as z:
        assert z.read(f"{name}.dat") == dat and z.read(f"{name}.hea").decode() == hea
        assert "version 1 verified" in z.read("VERSIONS").decode()
    import edfio

    (tmp_path / "s.edf").write_bytes(edf)
    got = edfio.read_edf(tmp_path / "s.edf")
    x = np.frombuffer(dat, "<i2")
    assert np.array_equal(got.signals[0].digital[: len(x)], x)  # sample for sample, holes too
    gaps = [a for a in got.annotations if a.text == "no sample"]
    assert [(round(a.onset, 3), round(a.duration, 3)) for a in gaps] == [(100.0, 10.0)]
