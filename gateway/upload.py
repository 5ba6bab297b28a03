"""Full disclosure to the center: which records to send, in which chunks, and when (pure).

The gateway's full recording (:mod:`gateway.recording`) is a WFDB record per hour and
device. Each record, once *closed*, is sent to the monitoring center in chunks through
the durable outbox (kind ``record``, lowest priority), and the center confirms a record
it received whole and verified. This module decides everything about that and does no
I/O: the shell (:mod:`gateway.upload_io`) lists the files, hashes and reads them, puts
chunks in the outbox, persists :class:`RecordState` and feeds the answers back.

- **Closed**: the record's span is over by ``settle_s`` (time for a patch to backfill a
  dropout) and its files have not changed for ``quiet_s``. Then it is hashed
  (:class:`Snapshot`: SHA-256 of the ``.hea`` bytes followed by the ``.dat`` bytes).
- **Chunks**: the ``.dat`` bytes cut in ``chunk_bytes`` pieces; every chunk carries the
  header, the record's SHA-256 and its own, so any chunk tells the center what it is part
  of. :meth:`UploadCore.next_chunks` gives the next pieces to hand to the outbox;
  :meth:`UploadCore.queued` moves the resume point (kept on disk by the shell), so a
  restarted gateway goes on at the chunk it stopped at.
- **Versions**: content that changes after its version began to be sent (late backfill
  into an hour already sent) becomes version 2, 3, ...; the center keeps every version.
- **Confirmation**: :meth:`UploadCore.confirmed` with the center's (name, version,
  SHA-256). A version fully handed over but not confirmed within ``resend_after_s`` is
  sent again from its first chunk (the center stores chunks once and confirms again).
- **Quota**: :func:`choose_deletions` deletes only records whose current content the
  center confirmed, oldest first; what it cannot free is reported for an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "RECORD_ACK_SCHEMA",
    "RECORD_SCHEMA",
    "ChunkPlan",
    "QuotaDecision",
    "RecordFile",
    "RecordState",
    "Snapshot",
    "UploadCore",
    "UploadSettings",
    "choose_deletions",
]

RECORD_SCHEMA = "ecg-gateway/record/v1"
RECORD_ACK_SCHEMA = "ecg-center/record-ack/v1"

Stamp = tuple[int, int, int]
"""(newest modification time of the two files in ns, .hea bytes, .dat bytes)."""


@dataclass(frozen=True, slots=True)
class UploadSettings:
    """How records are sent (see the module docstring); durations in seconds."""

    chunk_bytes: int = 65536
    settle_s: float = 600.0
    quiet_s: float = 60.0
    resend_after_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class RecordFile:
    """What a directory listing tells of one record, without reading its content.

    ``end_utc`` is when the record's span ends (its first sample's UTC time plus the
    recording's ``file_s``), POSIX s; ``recorded_s`` the seconds of samples its signal
    file holds (holes included); ``mtime_s`` the newest modification time, POSIX s;
    ``settled`` False while its header does not yet describe its signal file (samples
    written since the recording's last sync): such a record is being written, it is kept
    track of but not hashed.
    """

    device: str
    name: str
    stamp: Stamp
    end_utc: float
    recorded_s: float = 0.0
    settled: bool = True

    @property
    def key(self) -> str:
        return f"{self.device}/{self.name}"

    @property
    def mtime_s(self) -> float:
        return self.stamp[0] / 1e9


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A record's content hashed at one moment (the stamp it had then)."""

    key: str
    sha256: str
    stamp: Stamp

    @property
    def dat_size(self) -> int:
        return self.stamp[2]


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Send bytes ``[offset, offset + length)`` of the record's ``.dat`` as chunk
    ``index`` of ``chunks`` of ``version``."""

    device: str
    name: str
    version: int
    index: int
    chunks: int
    offset: int
    length: int
    sha256: str
    stamp: Stamp

    @property
    def key(self) -> str:
        return f"{self.device}/{self.name}"


@dataclass(slots=True)
class RecordState:
    """What the gateway knows of sending one record (persisted by the shell as JSON).

    ``version`` 0: nothing hashed yet. ``next_chunk``: chunks of ``version`` handed to
    the outbox (the resume point); ``begun``: the newest version any chunk of which was
    handed over (new content after that is a new version). ``stamp`` None: the files
    changed since they were hashed (sending pauses until they settle and are hashed again).
    """

    device: str
    name: str
    version: int = 0
    sha256: str | None = None
    stamp: Stamp | None = None
    chunks: int = 0
    next_chunk: int = 0
    queued_all_at: float | None = None
    confirmed_version: int = 0
    confirmed_sha256: str | None = None
    begun: int = 0
    resends: int = 0
    recorded_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.device}/{self.name}"

    @property
    def confirmed(self) -> bool:
        """The center confirmed the content the record has now."""
        return self.sha256 is not None and self.confirmed_sha256 == self.sha256

    @property
    def sent(self) -> bool:
        """Every chunk of the current version was handed to the outbox."""
        return self.version > 0 and self.next_chunk >= self.chunks

    @property
    def dat_size(self) -> int:
        return self.stamp[2] if self.stamp else 0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["stamp"] = list(self.stamp) if self.stamp else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecordState:
        d = dict(d)
        stamp = d.pop("stamp", None)
        names = set(cls.__dataclass_fields__)
        st = cls(**{k: v for k, v in d.items() if k in names})
        st.stamp = tuple(stamp) if stamp else None  # type: ignore[assignment]
        return st


class UploadCore:
    """The upload decisions for every record of one gateway (see the module docstring).

    Fed with listings (:meth:`listed`), hashes (:meth:`hashed`), what was put in the
    outbox (:meth:`queued`), files seen changed (:meth:`changed`) and confirmations
    (:meth:`confirmed`); asked what to hash (:meth:`due`) and send (:meth:`next_chunks`).
    Times are POSIX seconds passed in by the caller.
    """

    def __init__(self, settings: UploadSettings, states: Iterable[RecordState] = ()) -> None:
        self.settings = settings
        self.records: dict[str, RecordState] = {s.key: s for s in states}  # by key
        for st in self.records.values():
            # States from disk (a restart): the outbox's commit of chunks and the state's
            # are two transactions, so chunks of a hashed version may be on their way
            # though the state does not say so. Count the version as begun: new content
            # gets the next number (one may be skipped, none is reused for other content).
            st.begun = max(st.begun, st.version)
        self._files: dict[str, RecordFile] = {}
        self.dirty: set[str] = set()  # states changed since the shell last saved them

    # --- what is on disk ------------------------------------------------------------
    def listed(self, files: Iterable[RecordFile]) -> None:
        """The records on disk now (every device); records gone from disk are forgotten.
        A record being written (not ``settled``) is listed too: its state is kept."""
        self._files = {f.key: f for f in files}
        for key in [k for k in self.records if k not in self._files]:
            del self.records[key]
            self.dirty.add(key)
        for f in self._files.values():
            st = self.records.get(f.key)
            if st is None:
                st = self.records[f.key] = RecordState(f.device, f.name)
                self.dirty.add(f.key)
            st.recorded_s = f.recorded_s
            if st.stamp is not None and st.stamp != f.stamp:
                self.changed(f.key)

    def due(self, now: float) -> list[str]:
        """Keys of closed records whose content was not hashed as it is now, oldest first."""
        s = self.settings
        out = []
        for f in sorted(self._files.values(), key=lambda f: (f.end_utc, f.key)):
            st = self.records[f.key]
            closed = f.end_utc + s.settle_s <= now and f.mtime_s + s.quiet_s <= now
            if closed and f.settled and st.stamp != f.stamp:
                out.append(f.key)
        return out

    def hashed(self, snap: Snapshot, now: float) -> None:
        """The record's content as it is now (same content: nothing to send again)."""
        st = self.records.get(snap.key)
        if st is None:
            return
        self.dirty.add(snap.key)
        if snap.sha256 == st.sha256:
            st.stamp = snap.stamp
            return
        if st.version == 0 or st.begun >= st.version:  # that version's chunks went out
            st.version += 1
        st.sha256, st.stamp = snap.sha256, snap.stamp
        st.chunks = max(1, math.ceil(snap.dat_size / self.settings.chunk_bytes))
        st.next_chunk, st.queued_all_at = 0, None

    def changed(self, key: str) -> None:
        """The record's files differ from what was hashed: pause it until hashed again."""
        st = self.records.get(key)
        if st is not None and st.stamp is not None:
            st.stamp = None
            self.dirty.add(key)

    # --- sending ----------------------------------------------------------------------
    def next_chunks(self, budget: int, now: float) -> list[ChunkPlan]:
        """Up to ``budget`` chunks to hand to the outbox now, oldest record first."""
        out: list[ChunkPlan] = []
        for st in self._sendable(now):
            c = self.settings.chunk_bytes
            for index in range(st.next_chunk, st.chunks):
                if len(out) >= budget:
                    return out
                offset = index * c
                length = max(0, min(c, st.dat_size - offset))
                assert st.sha256 is not None and st.stamp is not None
                out.append(ChunkPlan(st.device, st.name, st.version, index, st.chunks,
                                     offset, length, st.sha256, st.stamp))  # fmt: skip
        return out

    def _sendable(self, now: float) -> list[RecordState]:
        out = []
        for key in sorted(self.records, key=self._order):
            st = self.records[key]
            if st.version == 0 or st.stamp is None or st.confirmed:
                continue
            if st.sent and st.queued_all_at is not None:
                if now - st.queued_all_at < self.settings.resend_after_s:
                    continue
                st.next_chunk, st.queued_all_at = 0, None  # no confirmation: send again
                st.resends += 1
                self.dirty.add(key)
            out.append(st)
        return out

    def _order(self, key: str) -> tuple[float, str]:
        f = self._files.get(key)
        return (f.end_utc if f else 0.0, key)

    def queued(self, plan: ChunkPlan, now: float) -> None:
        """Chunk ``plan`` is committed to the outbox: the resume point moves past it."""
        key = f"{plan.device}/{plan.name}"
        st = self.records.get(key)
        if st is None or st.version != plan.version or st.sha256 != plan.sha256:
            return
        st.next_chunk = max(st.next_chunk, plan.index + 1)
        st.begun = max(st.begun, plan.version)
        if st.next_chunk >= st.chunks:
            st.queued_all_at = now
        self.dirty.add(key)

    def confirmed(self, device: str, name: str, version: int, sha256: str) -> bool:
        """The center confirmed ``version`` with ``sha256``; whether it is the record's
        current content (older versions' confirmations change nothing)."""
        key = f"{device}/{name}"
        st = self.records.get(key)
        if st is None or st.sha256 != sha256 or st.version != version:
            return False
        if not st.confirmed:
            st.confirmed_version, st.confirmed_sha256 = version, sha256
            self.dirty.add(key)
        return True

    # --- facts --------------------------------------------------------------------------
    def deletable(self, device: str, name: str) -> bool:
        """May the quota delete this record: the center confirmed it as it is now."""
        st = self.records.get(f"{device}/{name}")
        return st is not None and st.confirmed and st.stamp is not None

    def facts(self, device: str) -> dict[str, Any]:
        """Progress of one device for the status (``study`` block, docs/mqtt.md)."""
        mine = [s for s in self.records.values() if s.device == device]
        pending = 0
        for s in mine:
            if s.version == 0 or s.stamp is None:
                pending += self._files[s.key].stamp[2] if s.key in self._files else 0
            elif not s.confirmed:
                done = min(s.next_chunk * self.settings.chunk_bytes, s.dat_size)
                pending += s.dat_size - done
        return {
            "records": len(mine),
            "hours_in_records": round(sum(s.recorded_s for s in mine) / 3600.0, 3),
            "records_sent": sum(1 for s in mine if s.sent),
            "records_confirmed": sum(1 for s in mine if s.confirmed),
            "bytes_pending": pending,
            "resends": sum(s.resends for s in mine),
        }


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """Records to delete (oldest first) and the bytes still missing after them (> 0:
    the quota cannot be kept without deleting records the center has not confirmed)."""

    delete: tuple[str, ...]
    shortfall: int


def choose_deletions(
    records: Sequence[tuple[str, int, bool]], used: int, need: int, max_bytes: int
) -> QuotaDecision:
    """What to delete so that ``need`` more bytes fit under ``max_bytes``.

    ``records``: (name, bytes, deletable) oldest first, the record being written left out.
    Only deletable (confirmed) records are chosen; unconfirmed ones are kept whatever the
    quota, and the bytes that could not be freed are the shortfall (for an alarm).
    """
    delete = []
    for name, size, ok in records:
        if used + need <= max_bytes:
            break
        if ok:
            delete.append(name)
            used -= size
    return QuotaDecision(tuple(delete), max(0, used + need - max_bytes))
