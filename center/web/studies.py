"""Long-term studies in the console (issue #13): list, detail, full-disclosure viewer,
report and export. Pages are shells drawn by ``study.js`` from the JSON below.

| request | answer |
| --- | --- |
| ``GET /studies``, ``GET /study/{id}`` | the pages |
| ``GET /api/studies`` | every study with its progress (hours recorded, analysable share) |
| ``GET /api/studies/{id}`` | the study, every record version, the events during it |
| ``POST /api/studies/{id}`` ``{"patient", "started_at", "ended_at"}`` | supervisors: edit |
| ``GET /api/studies/{id}/ecg?at=S&seconds=N`` | µV (null = none) from S s on, and beats |
| ``GET /api/studies/{id}/overview?hour=H`` | one hour as min/max per 40 ms (overview) |
| ``GET /api/studies/{id}/report.pdf``, ``export.edf``, ``export.zip`` | files (audited) |
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from center.store import queue as q
from center.store.db import writer
from center.studies import read
from center.timefmt import parse_iso
from center.web.dbcall import run_db
from center.web.session import CENTER, client_ip, require

__all__ = ["routes"]

routes = web.RouteTableDef()
MAX_SECONDS = 600.0
OVERVIEW_HZ = 25


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _audit(request: web.Request, action: str, study_id: str) -> None:
    center, session = request.app[CENTER], require(request)
    with writer(center.engine) as conn:
        q.add_audit(conn, time.time(), action, actor=session.user, msg_id=study_id,
                    ip=client_ip(request))  # fmt: skip


@routes.get("/studies")
async def studies_page(request: web.Request) -> web.Response:
    from center.web.pages import render

    require(request)
    return render(request, "studies.html")


@routes.get("/study/{study_id}")
async def study_page(request: web.Request) -> web.Response:
    from center.web.pages import render

    require(request)
    return render(request, "study.html", study_id=request.match_info["study_id"])


@routes.get("/api/studies")
async def api_studies(request: web.Request) -> web.Response:
    require(request)
    center = request.app[CENTER]

    def load() -> list[dict]:
        with center.engine.connect() as conn:
            return read.list_studies(conn)

    return _json(await run_db(load))


def _detail(center: Any, study_id: str) -> dict[str, Any]:
    from center.report.build import gather

    with center.engine.connect() as conn:
        row, study = read.get_study(conn, study_id)
        study["versions"] = read.record_versions(conn, row.id)
        data = gather(conn, study_id)
    st = data.stats
    study["episodes"] = [
        {"kind": e.kind, "at_s": e.start / st.fs, "duration_s": e.duration_s(st.fs)}
        for e in st.episodes
    ]
    study["events"] = [
        {"trigger": e.trigger, "at_s": e.time_utc - data.t0, "rhythm": e.rhythm}
        for e in data.events
    ]
    study["t0"] = data.t0
    return study


@routes.get("/api/studies/{study_id}")
async def api_study(request: web.Request) -> web.Response:
    require(request)
    try:
        out = await run_db(_detail, request.app[CENTER], request.match_info["study_id"])
    except read.NotFound:
        return _json({"error": "no such study"}, 404)
    return _json(out)


@routes.post("/api/studies/{study_id}")
async def api_study_edit(request: web.Request) -> web.Response:
    """A supervisor sets the patient pseudonym, or corrects the start or the end."""
    session = require(request, "supervisor")
    body = await request.json()
    changes: dict[str, Any] = {}
    if "patient" in body:
        patient = body["patient"]
        if patient is not None and (not isinstance(patient, str) or len(patient) > 64):
            return _json({"error": "patient is a pseudonym of at most 64 characters"}, 400)
        changes["patient"] = patient or None
    for key in ("started_at", "ended_at"):
        if key in body:
            try:
                changes[key] = None if body[key] in (None, "") else parse_iso(str(body[key]))
            except ValueError:
                return _json({"error": f"{key} is not an ISO-8601 time"}, 400)
    center, study_id = request.app[CENTER], request.match_info["study_id"]

    def edit() -> None:
        with writer(center.engine) as conn:
            read.update_study(conn, study_id, changes, session.user, time.time())
            q.add_audit(conn, time.time(), "study_edit", actor=session.user, msg_id=study_id,
                        ip=client_ip(request))  # fmt: skip

    try:
        await run_db(edit)
    except read.NotFound:
        return _json({"error": "no such study"}, 404)
    return _json({"ok": True})


def _window(center: Any, study_id: str, at: float, seconds: float) -> dict[str, Any]:
    with center.engine.connect() as conn:
        row, study = read.get_study(conn, study_id)
        t0 = study["started_at"] + at
        fs, x = read.study_signal(conn, row.id, t0, t0 + seconds)
        an = read.study_analysis(conn, row.id)
    lo, hi = (t0 - an.t0) * an.fs, (t0 - an.t0 + seconds) * an.fs
    beats = an.beats[(an.beats >= lo) & (an.beats < hi)]
    return {"fs": fs, "start": t0, "at_s": at, "lead": study["leads"][:1],
            "data": [None if v != v else int(v) for v in x.tolist()],
            "beats": ((beats - lo) / an.fs).round(3).tolist()}  # fmt: skip


@routes.get("/api/studies/{study_id}/ecg")
async def api_study_ecg(request: web.Request) -> web.Response:
    require(request)
    try:
        at = max(0.0, float(request.query.get("at", "0")))
        seconds = min(MAX_SECONDS, max(1.0, float(request.query.get("seconds", "60"))))
    except ValueError:
        return _json({"error": "at and seconds are numbers"}, 400)
    try:
        out = await run_db(_window, request.app[CENTER], request.match_info["study_id"], at,
                           seconds)  # fmt: skip
    except read.NotFound:
        return _json({"error": "no such study"}, 404)
    return _json(out)


def _overview(center: Any, study_id: str, hour: int) -> dict[str, Any]:
    with center.engine.connect() as conn:
        row, study = read.get_study(conn, study_id)
        t0 = study["started_at"] + 3600 * hour
        fs, x = read.study_signal(conn, row.id, t0, t0 + 3600)
    step = max(1, int(round(fs / OVERVIEW_HZ)))
    n = len(x) // step
    blocks = x[: n * step].reshape(n, step)
    ok = np.isfinite(blocks).any(axis=1)
    filled = np.where(ok[:, None], blocks, 0.0)
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(filled, axis=1), np.nanmax(filled, axis=1)

    def column(v: np.ndarray) -> list[int | None]:
        return [int(a) if k else None for a, k in zip(v.tolist(), ok.tolist(), strict=True)]

    return {"fs": fs / step, "start": t0, "hour": hour, "min": column(lo), "max": column(hi)}


@routes.get("/api/studies/{study_id}/overview")
async def api_study_overview(request: web.Request) -> web.Response:
    require(request)
    try:
        hour = max(0, int(request.query.get("hour", "0")))
    except ValueError:
        return _json({"error": "hour is an integer"}, 400)
    try:
        out = await run_db(_overview, request.app[CENTER], request.match_info["study_id"], hour)
    except read.NotFound:
        return _json({"error": "no such study"}, 404)
    return _json(out)


def _file(center: Any, study_id: str, kind: str) -> bytes:
    if kind == "pdf":
        from center.report import build_report

        with tempfile.TemporaryDirectory() as d:
            return build_report(center.engine, study_id, Path(d) / "r.pdf").read_bytes()
    from center.studies.export import export_edf, export_wfdb

    with center.engine.connect() as conn:
        if kind == "zip":
            buf = io.BytesIO()
            export_wfdb(conn, study_id, buf)
            return buf.getvalue()
        with tempfile.TemporaryDirectory() as d:
            export_edf(conn, study_id, Path(d) / "s.edf")
            return (Path(d) / "s.edf").read_bytes()


@routes.get(r"/api/studies/{study_id}/{what:report\.pdf|export\.edf|export\.zip}")
async def api_study_file(request: web.Request) -> web.StreamResponse:
    """The report (PDF) or an export, made now; audited."""
    require(request)
    study_id, what = request.match_info["study_id"], request.match_info["what"]
    kind = what.rpartition(".")[2]
    try:
        data = await run_db(_file, request.app[CENTER], study_id, kind)
    except read.NotFound:
        return _json({"error": "no such study"}, 404)
    await run_db(_audit, request, f"study_{'report' if kind == 'pdf' else 'export'}", study_id)
    types = {"pdf": "application/pdf", "edf": "application/octet-stream", "zip": "application/zip"}
    name = f"{study_id}-{what.replace('export.', '')}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    return web.Response(body=data, content_type=types[kind], headers=disposition)
