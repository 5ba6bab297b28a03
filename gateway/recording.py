"""The full recording of each device, kept on the gateway as WFDB records.

Long-term patch recording (CPT 93241-93248) ends with a scanning analysis of every
hour the patch was worn, and a stress test's tracing is the record of the test:
strips and events are excerpts. The gateway therefore writes every sample it
receives, as the device numbered it, into WFDB records (PhysioNet format 16: the
tools every ECG lab reads) under ``<state_dir>/recordings/<device>/``:

- one record per ``file_s`` of samples (an hour by default), aligned on the device's
  sample numbers: record ``k`` holds samples ``[k L, (k + 1) L)``, ``L = file_s x fs``,
  named ``<device>_<first sample number>`` (zero-padded);
- each block is written at its place in its record's signal file: samples backfilled
  hours later, out of order or twice, land where they belong; a write past the end of
  the file first fills the hole with WFDB's "no sample" value (-32768), so whatever
  never arrived reads as missing (NaN to WFDB readers) — a gap is visible in the file
  itself. The header gives the length written so far (updated at each sync), so a
  record can be read while it grows;
- a stream's records begin where the device's numbering puts them, so a device first heard
  mid-record (a cart or a Polar strap streams only while it is heard; it was streaming
  before) leaves "no sample" rows before the first sample received. Those were never sent
  to this gateway, and are not a loss while it listened (a patch's earlier samples come by
  backfill, and what it no longer held is in the gap ledger): the header of the record
  holding that sample says so (``# first sample received: N``), and
  :func:`summarize_records` counts them apart from the missing ones;
- values in µV (gain 1000 adu/mV, 16 bit: +/- 32.767 mV), leads named as the device
  names them; the header gives the UTC time of the record's first sample (from the
  device clock mapping when the record was created);
- written to the page cache at once and fsync'ed every ``sync_s`` and at close; a
  gateway restarted mid-hour reopens the hour's record and goes on;
- a disk quota: over ``max_mb`` the oldest records of the device are deleted (and
  logged), never the one being written. When the records are sent to the center
  (full disclosure, :mod:`gateway.upload`), ``deletable`` says which ones the center has
  confirmed: only those are deleted; unconfirmed records are kept over the quota and an
  alarm is raised instead (``quota_alarm``, logged as an error).

This module does file I/O on purpose (no network, no asyncio): it is the shell
around nothing but the disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.block import SampleBlock
from gateway.upload import choose_deletions

__all__ = [
    "RecordSummary",
    "RecordingStore",
    "fsync_all",
    "read_tail",
    "summarize_records",
]

log = logging.getLogger(__name__)

_NO_SAMPLE = -32768  # WFDB format 16 "invalid sample"
_GAIN = 1000.0  # adu per mV: 1 µV resolution
_HEARD = "# first sample received:"  # header line: where the stream began (see above)
_MAX_OPEN = 4  # signal files kept open (the current hour and a few being backfilled)


class RecordingStore:
    """Every sample of one device into fixed-length WFDB records.

    Parameters
    ----------
    root
        Directory of this device's records (created when needed).
    device_id
        Device id (record names start with it).
    file_s
        Seconds of samples per record.
    max_mb
        Disk quota of this device's records, MB.
    sync_s
        At most this long between fsyncs of written records, s.
    clock
        Monotonic clock, s (tests pass a fake one).
    """

    def __init__(
        self,
        root: Path,
        device_id: str,
        *,
        file_s: float = 3600.0,
        max_mb: float = 4000.0,
        sync_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = self.base = Path(root)
        self._origin = 0  # first sample number of the current stream's records
        self.device_id = device_id
        self.file_s = file_s
        self.max_bytes = int(max_mb * 1e6)
        self.sync_s = sync_s
        self._clock = clock
        self._fs: float | None = None
        self._leads: tuple[str, ...] = ()
        self._open: dict[int, int] = {}  # record index -> fd, least recently used first
        self._extent: dict[int, int] = {}  # record index -> samples in its signal file
        self._header_len: dict[int, int] = {}  # record index -> length its header states
        self._start: dict[int, float] = {}  # record index -> UTC of its first sample
        self._first_heard: int | None = None  # a new stream's first sample received
        self._heard_in: dict[int, int] = {}  # record index -> first sample received in it
        self._dirty: set[int] = set()
        self._last_sync = clock()
        self.samples_written = 0
        self.records_created = 0
        self.records_deleted = 0
        #: Relative record name -> may the quota delete it (None: any, oldest first).
        self.deletable: Callable[[str], bool] | None = None
        self.quota_alarms = 0
        self.quota_alarm: str | None = None  # the latest, for the status

    # --- writing ------------------------------------------------------------------
    def write(self, block: SampleBlock) -> None:
        """Write ``block`` at its sample numbers (any order, repeats overwrite)."""
        if block.n == 0:
            return
        if self._fs is None:
            self._adopt(block)
        elif block.fs != self._fs or block.leads != self._leads:
            self._new_stream(block)
        length, origin = self._record_len, self._origin
        values = _to_adu(block.samples)
        first = block.seq
        while first < block.end_seq:
            k = (first - origin) // length
            end = min(block.end_seq, origin + (k + 1) * length)
            fd = self._fd(k, block)
            frame = 2 * len(self._leads)
            at, extent = first - origin - k * length, self._extent[k]
            if at > extent:  # a hole before this block: "no sample" until it is filled
                hole = np.full((at - extent) * len(self._leads), _NO_SAMPLE, dtype="<i2")
                os.pwrite(fd, hole.tobytes(), extent * frame)
            part = values[first - block.seq : end - block.seq]
            os.pwrite(fd, part.tobytes(), at * frame)
            self._extent[k] = max(extent, end - origin - k * length)
            self._dirty.add(k)
            self.samples_written += end - first
            first = end

    def _new_stream(self, block: SampleBlock) -> None:
        """The device changed its rate or leads: this stream's records go in a folder of
        their own (``<rate>Hz_from_<seq>``), so no record ever mixes two layouts."""
        log.warning(
            "%s: the device now sends %g Hz %s (was %g Hz %s): new records under %s",
            self.device_id, block.fs, block.leads, self._fs, self._leads, self.root,
        )  # fmt: skip
        self.close()
        for table in (self._extent, self._header_len, self._start, self._heard_in):
            table.clear()
        self._dirty.clear()
        self._begin(block, self.base / f"{block.fs:g}Hz_from_{block.seq}", block.seq)

    def _begin(self, block: SampleBlock, root: Path, origin: int, new: bool = True) -> None:
        """Records go under ``root`` from ``origin`` on; ``new``: the stream begins with
        ``block`` (not one a restarted gateway goes on with)."""
        self.root, self._origin = root, origin
        self._fs, self._leads = block.fs, block.leads
        self._first_heard = block.seq if new else None

    def _adopt(self, block: SampleBlock) -> None:
        """The first block of this run: go on in the stream folder whose records have its
        rate and leads (a restarted gateway), or begin a new one."""
        newest = _newest_header(self.base)
        if newest is None:
            return self._begin(block, self.base, 0)
        hea, fs, leads = newest
        if fs == block.fs and leads == block.leads:
            folder = hea.parent
            origin = 0 if folder == self.base else int(folder.name.rpartition("_")[2])
            return self._begin(block, folder, origin, new=False)
        self._fs, self._leads = fs, leads  # the previous stream's: this block starts a new one
        return self._new_stream(block)

    def take_unsynced(self) -> list[int]:
        """Headers of the records written since the last call brought up to date, and a
        duplicate descriptor of each, for :func:`fsync_all` to flush off the event loop
        (the caller owns and closes them: the store may close its own meanwhile)."""
        fds = []
        for k in sorted(self._dirty):
            fd = self._open.get(k)
            if fd is not None:
                fds.append(os.dup(fd))
            self._update_header(k)
        self._dirty.clear()
        self._last_sync = self._clock()
        return fds

    def sync(self) -> None:
        """fsync every record written since the last sync, here and now (blocking)."""
        fsync_all(self.take_unsynced())

    def close(self) -> None:
        """Sync and close every open record."""
        self.sync()
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    # --- records ------------------------------------------------------------------
    @property
    def _record_len(self) -> int:
        assert self._fs is not None
        return max(int(round(self.file_s * self._fs)), 1)

    def record_name(self, k: int) -> str:
        """Name of record ``k`` (its first sample number, zero-padded)."""
        return f"{self.device_id}_{self._origin + k * self._record_len:012d}"

    def records(self) -> list[Path]:
        """This device's signal files (every stream's), oldest first."""
        return sorted(self.base.rglob(f"{self.device_id}_*.dat"), key=_first_sample)

    def relative_name(self, dat: Path) -> str:
        """A record's name relative to the device's folder (``<stream folder>/`` first
        for a device that changed its rate), without extension: its name at the center."""
        return str(dat.relative_to(self.base).with_suffix(""))

    def _fd(self, k: int, block: SampleBlock) -> int:
        fd = self._open.pop(k, None)
        if fd is None:
            fd = self._open_record(k, block)
            while len(self._open) >= _MAX_OPEN:
                self._close_record(next(iter(self._open)))
        self._open[k] = fd  # most recently used last
        return fd

    def _close_record(self, k: int) -> None:
        fd = self._open.pop(k)
        if k in self._dirty:
            os.fsync(fd)
            self._update_header(k)
            self._dirty.discard(k)
        os.close(fd)

    def _open_record(self, k: int, block: SampleBlock) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        name = self.record_name(k)
        dat = self.root / f"{name}.dat"
        frame = 2 * len(self._leads)
        first = self._origin + k * self._record_len
        if k not in self._start:
            self._start[k] = float(block.time_of(first))
        heard = self._first_heard
        if heard is not None and first <= heard < first + self._record_len:
            self._heard_in[k] = heard
        if dat.exists():  # a restarted gateway (or a record closed earlier) goes on
            if k not in self._heard_in and (said := _heard_said(dat.with_suffix(".hea"))):
                self._heard_in[k] = said  # written by a previous run: kept
            fd = os.open(dat, os.O_RDWR)
            self._extent[k] = min(os.fstat(fd).st_size // frame, self._record_len)
            self._header_len.setdefault(k, -1)
            self._update_header(k)  # repaired from the signal file's size after a crash
            return fd
        self._make_room(self._record_len * frame)
        fd = os.open(dat, os.O_RDWR | os.O_CREAT, 0o600)
        self._extent[k] = 0
        self._header_len[k] = -1
        self._update_header(k)  # readable from its first sample, whatever happens next
        self.records_created += 1
        return fd

    def _update_header(self, k: int) -> None:
        """Rewrite record ``k``'s header (atomically) when its length changed."""
        length = self._extent.get(k, 0)
        if self._header_len.get(k) == length or k not in self._start:
            return
        assert self._fs is not None
        name = self.record_name(k)
        t = datetime.fromtimestamp(self._start[k], UTC)
        lines = [
            f"{name} {len(self._leads)} {self._fs:g} {length} "
            f"{t:%H:%M:%S}.{t.microsecond // 1000:03d} {t:%d/%m/%Y}"
        ]
        for lead in self._leads:
            lines.append(f"{name}.dat 16 {_GAIN:g}(0)/mV 16 0 0 0 0 {lead}")
        lines.append(f"# ecg-gateway recording of device {self.device_id}; times UTC")
        lines.append("# samples never received are WFDB 'no sample' (-32768)")
        if k in self._heard_in:
            lines.append(f"{_HEARD} {self._heard_in[k]} (the rows before it were sent before "
                         "the gateway first heard the device)")  # fmt: skip
        tmp = self.root / f"{name}.hea.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.root / f"{name}.hea")
        self._header_len[k] = length

    def _make_room(self, size: int) -> None:
        """Delete this device's oldest records until ``size`` more bytes fit (a record
        still open for backfill is closed first; the one being created is not listed);
        with ``deletable`` set, only records it allows (the rest raise an alarm)."""
        files = self.records()
        allowed = self.deletable or (lambda _name: True)
        listed = [(f.stem, f.stat().st_size, allowed(self.relative_name(f))) for f in files]
        used = sum(n for _, n, _ in listed)
        if used + size <= self.max_bytes:
            return
        decision = choose_deletions(listed, used, size, self.max_bytes)
        open_by_name = {self.record_name(k): k for k in self._open}
        for dat in (f for f in files if f.stem in decision.delete):
            k = open_by_name.get(dat.stem)
            if k is not None:
                self._close_record(k)
            dat.unlink(missing_ok=True)
            dat.with_suffix(".hea").unlink(missing_ok=True)
            self.records_deleted += 1
            log.warning(
                "%s: recording quota reached, deleted the oldest record %s",
                self.device_id,
                dat.stem,
            )
        if decision.shortfall:
            self.quota_alarms += 1
            self.quota_alarm = (
                f"recording quota of {self.max_bytes / 1e6:g} MB exceeded by "
                f"{decision.shortfall / 1e6:.1f} MB: the older records are not yet confirmed "
                "by the center and are kept; free disk, raise recording.max_mb, or check "
                "the upload"
            )
            log.error("%s: %s", self.device_id, self.quota_alarm)


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """One record on disk: what it holds and how much of it is missing."""

    path: Path  # the record, without extension (as WFDB tools take it)
    device_id: str
    first_seq: int
    fs: float
    leads: tuple[str, ...]
    start_utc: str  # as the header gives it: "HH:MM:SS.mmm DD/MM/YYYY"
    samples: int
    missing: int  # samples where no lead was recorded, after the first sample received
    before_first: int = 0  # "no sample" rows before the stream's first sample received

    @property
    def duration_s(self) -> float:
        return self.samples / self.fs if self.fs else 0.0


def summarize_records(root: Path) -> list[RecordSummary]:
    """Every gateway record under ``root`` (any depth), in device then time order.

    Reads the headers and counts "no sample" values in the signal files (memory-mapped;
    an hour of a patch is 1.8 MB). Files that are not gateway records are skipped.
    """
    out = []
    for hea in sorted(Path(root).rglob("*.hea")):
        try:
            lines = [ln for ln in hea.read_text().splitlines() if ln and not ln.startswith("#")]
            name, nsig, fs, length, *when = lines[0].split()
            leads = tuple(ln.split(maxsplit=8)[-1] for ln in lines[1 : 1 + int(nsig)])
            device, _, first = name.rpartition("_")
            dat = hea.with_suffix(".dat")
            n_leads, samples = int(nsig), int(length)
            missing = before = 0
            if samples and dat.exists():
                data = np.memmap(dat, dtype="<i2", mode="r")[: samples * n_leads]
                hole = (data.reshape(-1, n_leads) == _NO_SAMPLE).all(axis=1)
                heard = _heard_said(hea)
                if heard is not None:  # rows before it that never came: not a loss
                    lead = int(np.argmin(hole)) if not hole.all() else hole.size
                    before = min(lead, max(heard - int(first), 0))
                missing = int(hole.sum()) - before
            out.append(
                RecordSummary(
                    hea.with_suffix(""),
                    device,
                    int(first),
                    float(fs),
                    leads,
                    " ".join(when),
                    samples,
                    missing,
                    before,
                )
            )
        except (OSError, ValueError, IndexError):
            continue  # not one of ours
    return sorted(out, key=lambda r: (r.device_id, r.first_seq))


def read_tail(root: Path, since: int | None = None) -> tuple[int, np.ndarray, float, float] | None:
    """The end of a device's recording on disk: ``(first, missing, fs, utc_first)`` for
    the samples of its newest record from ``since`` (or the record's start) to the end
    of its signal file; ``missing`` marks samples no lead was recorded for. None when
    there is no record. Used at start to learn what the last run wrote before it stopped.
    """
    heads = sorted(Path(root).rglob("*.hea"), key=_first_sample)
    for hea in reversed(heads):
        try:
            lines = [ln for ln in hea.read_text().splitlines() if ln and not ln.startswith("#")]
            _, nsig, fs_text, _, clock, day = lines[0].split()[:6]
            first_of_record = int(hea.stem.rpartition("_")[2])
            n_leads, fs = int(nsig), float(fs_text)
            start = datetime.strptime(f"{day} {clock}", "%d/%m/%Y %H:%M:%S.%f")
            utc0 = start.replace(tzinfo=UTC).timestamp()
            data = np.fromfile(hea.with_suffix(".dat"), dtype="<i2")
        except (OSError, ValueError, IndexError):
            continue  # not one of ours, or unreadable: look at the one before
        rows = data[: data.size - data.size % n_leads].reshape(-1, n_leads)
        begin = 0 if since is None else max(0, since - first_of_record)
        if begin >= len(rows):
            return None
        missing = (rows[begin:] == _NO_SAMPLE).all(axis=1)
        first = first_of_record + begin
        return first, missing, fs, utc0 + begin / fs
    return None


def _newest_header(base: Path) -> tuple[Path, float, tuple[str, ...]] | None:
    """The newest record header under ``base``: its path, rate (Hz) and lead names."""
    for hea in sorted(base.rglob("*.hea"), key=_first_sample, reverse=True):
        try:
            lines = [ln for ln in hea.read_text().splitlines() if ln and not ln.startswith("#")]
            n = int(lines[0].split()[1])
            leads = tuple(ln.split(maxsplit=8)[-1] for ln in lines[1 : 1 + n])
            return hea, float(lines[0].split()[2]), leads
        except (OSError, ValueError, IndexError):
            continue
    return None


def _heard_said(hea: Path) -> int | None:
    """The first sample received that a record's header states, if it states one."""
    try:
        for line in hea.read_text().splitlines():
            if line.startswith(_HEARD):
                return int(line[len(_HEARD) :].split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _first_sample(path: Path) -> int:
    """The first sample number in a record's name (``<device>_<number>``), -1 if none."""
    tail = path.stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else -1


def fsync_all(fds: list[int]) -> None:
    """fsync and close descriptors from :meth:`RecordingStore.take_unsynced` (blocking:
    run it in a worker thread)."""
    for fd in fds:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _to_adu(samples_mv: np.ndarray) -> np.ndarray:
    """(n, leads) mV -> little-endian int16 µV, NaN -> "no sample", clipped to +/-32767."""
    x = np.asarray(samples_mv, dtype=np.float64) * _GAIN
    missing = ~np.isfinite(x)
    out = np.clip(np.rint(np.where(missing, 0.0, x)), -32767, 32767).astype("<i2")
    out[missing] = _NO_SAMPLE
    return np.ascontiguousarray(out)
