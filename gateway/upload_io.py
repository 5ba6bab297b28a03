"""The uploader's shell: files, hashes, outbox and confirmations around :mod:`gateway.upload`.

Every ``scan_s`` the records under ``<state_dir>/recordings/<device>/`` are listed (stat
only); closed ones are hashed in a worker thread (their stamp is checked before and
after: a record written meanwhile is hashed again later); while something is to send,
every ``poll_s`` the next chunks are read and committed to the outbox — at most
``queued_chunks`` record chunks wait there at once, so bulk never fills it. Each upload
state change is kept in ``<state_dir>/upload.sqlite3`` (one row per record), so a
restarted gateway resumes at the chunk it stopped at.

Chunk message (topic ``{prefix}/{gateway}/{device}/record``, ``docs/mqtt.md``)::

    {"schema": "ecg-gateway/record/v1", "gateway_id", "device_id", "record", "version",
     "sha256", "size", "header", "chunk", "chunks", "offset", "chunk_sha256", "data"}

The center's confirmation arrives on ``{prefix}/{gateway}/{device}/record-ack``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.mqtt.codec import Publish
from gateway.outbox import Outbox
from gateway.upload import (
    RECORD_ACK_SCHEMA,
    RECORD_SCHEMA,
    ChunkPlan,
    RecordFile,
    RecordState,
    Snapshot,
    Stamp,
    UploadCore,
    UploadSettings,
)

__all__ = ["Uploader", "list_records", "read_stamp"]

log = logging.getLogger(__name__)


def read_stamp(dat: Path) -> Stamp | None:
    """(newest mtime ns, .hea bytes, .dat bytes) of a record; None when a file is gone."""
    try:
        h, d = dat.with_suffix(".hea").stat(), dat.stat()
    except OSError:
        return None
    return (max(h.st_mtime_ns, d.st_mtime_ns), h.st_size, d.st_size)


def _header_facts(hea: Path) -> tuple[int, float, int, float] | None:
    """(signals, Hz, samples, UTC of the first sample) from a gateway record header."""
    try:
        line = next(ln for ln in hea.read_text().splitlines() if ln and not ln.startswith("#"))
        _, nsig, fs, length, clock, day = line.split()[:6]
        start = datetime.strptime(f"{day} {clock}", "%d/%m/%Y %H:%M:%S.%f").replace(tzinfo=UTC)
        return int(nsig), float(fs), int(length), start.timestamp()
    except (OSError, StopIteration, ValueError):
        return None


def list_records(root: Path, file_s: float) -> list[RecordFile]:
    """Every record under ``root/<device>/``; one whose header does not yet agree with its
    signal file (not brought up to date by the recording's sync) is listed as not
    ``settled`` (a record skipped here would be taken for deleted and its upload history
    forgotten, so that its next version would reuse a number the center holds)."""
    out = []
    for dev_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        for dat in dev_dir.rglob("*.dat"):
            stamp = read_stamp(dat)
            facts = _header_facts(dat.with_suffix(".hea")) if stamp else None
            if stamp is None or facts is None:
                continue
            nsig, fs, length, start = facts
            settled = length * 2 * nsig == stamp[2]  # else written since the header update
            name = str(dat.relative_to(dev_dir).with_suffix(""))
            recorded = stamp[2] / (2 * nsig * fs)
            out.append(RecordFile(dev_dir.name, name, stamp, start + file_s, recorded, settled))
    return out


def _hash(dat: Path, stamp: Stamp) -> str | None:
    """SHA-256 of the header bytes then the signal bytes, if the record still has
    ``stamp`` before and after reading (blocking: run it in a thread)."""
    if read_stamp(dat) != stamp:
        return None
    digest = hashlib.sha256(dat.with_suffix(".hea").read_bytes())
    with dat.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() if read_stamp(dat) == stamp else None


class _StateFile:
    """Upload states, one JSON row per record, in SQLite (WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, state TEXT)")

    def load(self) -> list[RecordState]:
        rows = self._db.execute("SELECT state FROM records").fetchall()
        return [RecordState.from_json(json.loads(r[0])) for r in rows]

    def save(self, core: UploadCore) -> None:
        if not core.dirty:
            return
        keys, core.dirty = core.dirty, set()
        self._db.execute("BEGIN")
        for key in keys:
            st = core.records.get(key)
            if st is None:
                self._db.execute("DELETE FROM records WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO records (key, state) VALUES (?, ?)",
                    (key, json.dumps(st.to_json())),
                )
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class Uploader:
    """Sends every closed record to the center (see the module docstring).

    Parameters
    ----------
    root
        The recordings directory (``<state_dir>/recordings``).
    state_path
        The upload state database.
    outbox
        Where chunks wait for the broker (kind ``record``).
    gateway_id, topic_prefix
        For the topics.
    settings
        Chunk size, settle and quiet times, resend delay.
    file_s
        Seconds per record (the recording's ``file_s``): a record's span ends then.
    queued_chunks
        At most this many record chunks wait in the outbox at once.
    scan_s, poll_s
        Seconds between listings of the records, and between rounds while sending.
    wake
        Called after chunks were committed (the publisher's ``wake``).
    clock
        UTC POSIX seconds now.
    """

    def __init__(
        self,
        root: Path,
        state_path: Path,
        outbox: Outbox,
        *,
        gateway_id: str,
        topic_prefix: str,
        settings: UploadSettings,
        file_s: float,
        queued_chunks: int = 4,
        scan_s: float = 10.0,
        poll_s: float = 0.5,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.outbox = outbox
        self.gateway_id = gateway_id
        self.prefix = topic_prefix
        self.file_s = file_s
        self.queued_chunks = queued_chunks
        self.scan_s, self.poll_s = scan_s, poll_s
        self.wake = wake
        self._clock = clock
        self._state = _StateFile(state_path)
        self.core = UploadCore(settings, self._state.load())
        self._listed_at = -float("inf")
        self.chunks_queued = 0
        self.confirmations = 0
        self.last_error: str | None = None

    @property
    def ack_filter(self) -> str:
        """The topic filter of the center's confirmations to this gateway."""
        return f"{self.prefix}/{self.gateway_id}/+/record-ack"

    # --- one round --------------------------------------------------------------------
    async def step(self) -> int:
        """List (every ``scan_s``), hash what closed, queue chunks; chunks queued."""
        now = self._clock()
        if now - self._listed_at >= self.scan_s:
            files = await asyncio.to_thread(list_records, self.root, self.file_s)
            self.core.listed(files)
            self._listed_at = now
        for key in self.core.due(now)[:8]:
            await self._hash(key, now)
        queued = self._queue_chunks(now)
        self._state.save(self.core)
        return queued

    async def _hash(self, key: str, now: float) -> None:
        device, _, name = key.partition("/")
        dat = self.root / device / f"{name}.dat"
        stamp = read_stamp(dat)
        if stamp is None:
            return
        sha = await asyncio.to_thread(_hash, dat, stamp)
        if sha is not None:
            self.core.hashed(Snapshot(key, sha, stamp), now)

    def _queue_chunks(self, now: float) -> int:
        waiting = self.outbox.pending_by_kind().get("record", 0)
        plans = self.core.next_chunks(max(0, self.queued_chunks - waiting), now)
        items, done = [], []
        for plan in plans:
            body = self._chunk_body(plan)
            if body is None:
                self.core.changed(f"{plan.device}/{plan.name}")
                continue
            topic = f"{self.prefix}/{self.gateway_id}/{plan.device}/record"
            items.append(("record", plan.device, topic, body))
            done.append(plan)
        if items:
            self.outbox.put_many(items)
            for plan in done:
                self.core.queued(plan, now)
            self.chunks_queued += len(items)
            if self.wake is not None:
                self.wake()
        return len(items)

    def _chunk_body(self, plan: ChunkPlan) -> dict[str, Any] | None:
        """The chunk's message, or None when the record changed since it was hashed."""
        dat = self.root / plan.device / f"{plan.name}.dat"
        try:
            if read_stamp(dat) != plan.stamp:
                return None
            header = dat.with_suffix(".hea").read_bytes()
            with dat.open("rb") as f:
                f.seek(plan.offset)
                data = f.read(plan.length)
        except OSError:
            return None
        if len(data) != plan.length or read_stamp(dat) != plan.stamp:
            return None
        return {
            "schema": RECORD_SCHEMA,
            "gateway_id": self.gateway_id,
            "device_id": plan.device,
            "record": plan.name,
            "version": plan.version,
            "sha256": plan.sha256,
            "size": plan.stamp[2],
            "header": header.decode(),
            "chunk": plan.index,
            "chunks": plan.chunks,
            "offset": plan.offset,
            "chunk_sha256": hashlib.sha256(data).hexdigest(),
            "data": base64.b64encode(data).decode(),
        }

    # --- the center's answer ----------------------------------------------------------------
    def on_message(self, message: Publish) -> None:
        """The publisher's handler for :attr:`ack_filter` (see :meth:`on_confirmation`)."""
        self.on_confirmation(message.topic, message.payload)

    def on_confirmation(self, topic: str, payload: bytes) -> None:
        """A ``record-ack`` from the center: kept on disk before it is acknowledged."""
        try:
            body = json.loads(payload)
            if body.get("schema") != RECORD_ACK_SCHEMA:
                raise ValueError(f"schema {body.get('schema')!r}")
            device = topic.split("/")[-2]
            version, sha = int(body["version"]), str(body["sha256"])
            name = str(body["record"])
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignored a record confirmation on %s: %s", topic, exc)
            return
        if self.core.confirmed(device, name, version, sha):
            self.confirmations += 1
            log.info("%s: the center confirmed record %s version %d", device, name, version)
        self._state.save(self.core)

    # --- facts and lifetime -----------------------------------------------------------------
    def deletable(self, device: str, name: str) -> bool:
        """For the recording quota: the center confirmed this record as it is now."""
        return self.core.deletable(device, name)

    def facts(self, device: str) -> dict[str, Any]:
        """The ``study`` block of a device in the status."""
        return {**self.core.facts(device), "last_error": self.last_error}

    async def run(self) -> None:
        """Rounds until cancelled: every ``poll_s`` while sending, else every ``scan_s``."""
        try:
            while True:
                try:
                    queued = await self.step()
                    self.last_error = None
                except Exception as exc:  # a full disk must not stop the gateway
                    queued = 0
                    self.last_error = f"upload round failed: {exc!r}"
                    log.exception("upload round failed; retrying")
                busy = queued or self.outbox.pending_by_kind().get("record", 0)
                await asyncio.sleep(self.poll_s if busy else min(self.scan_s, 5 * self.poll_s))
        finally:
            self._state.save(self.core)

    def close(self) -> None:
        self._state.close()
