"""Anything a device sends, from the wire to the pipeline (hypothesis; issue #10).

(a) A cart: arbitrary frames (sample numbers absolute or relative, any size the protocol
allows, any wall time between them), HELLOs at any rate, stages, blood pressures and
lead-offs at any sample, junk between frames — encoded by the real encoder, decoded by
the real decoder, through :class:`~drivers.cart_stream.CartStream` into a
:class:`~gateway.pipeline.DevicePipeline`.

(b) A patch: live and backfill frames at any sample number and size, EXTENT and
RANGE_DONE answers of any kind, symptom and status notifications, junk, ticks, dropped
and new links — through :class:`~drivers.patch_session.PatchSession` (its gap ledger) into
a pipeline.

Always: nothing raises; work per block does not grow with the length of a gap (the
windows queued in one step are bounded by the samples the step really analysed over the
strip period, plus two per final gap reported and one per event; those made for late
samples, by the samples of its blocks over the strip period: asserted on structure, not
on time); what the
gateway delivered plus the gaps it reported (plus, for the patch, what it still asks the
patch for) tile the stream exactly, with each delivered sample the device's own value.
The time of each pipeline step is measured (``ONBLOCK_S``, for ``benchmarks/onblock.py``)
but never asserted.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.block import SampleBlock
from core.events import DeviceEvent, DeviceRestarted, Gap
from drivers import uuids
from drivers.cart_protocol import (
    CartDecoder,
    Phase,
    encode_blood_pressure,
    encode_ecg,
    encode_hello,
    encode_lead_off,
    encode_stage,
)
from drivers.cart_stream import CartStream
from drivers.gatt_session import Disconnect, Read, Subscribe, Write
from drivers.patch_gatt import (
    EPOCH_2000,
    DeviceTime,
    RacpOp,
    RacpResponse,
    RacpStatus,
    SymptomPress,
    encode_device_time,
    encode_ecg_frame,
    encode_racp_response,
    encode_symptom,
)
from drivers.patch_session import PatchSession, PatchSettings
from gateway.pipeline import DevicePipeline, PipelineSettings
from tests.support import PATCH_CHARACTERISTICS

T0 = 1_800_000_000.0
ONBLOCK_S: list[float] = []
"""Seconds each pipeline step took, every example (read by benchmarks/onblock.py)."""

SETTINGS = PipelineSettings(
    strip_period_s=2.0,
    strip_duration_s=1.0,
    event_pre_s=1.0,
    event_post_s=1.0,
    live_block_s=0.5,
    auto_pre_s=2.0,
    auto_post_s=2.0,
)
FUZZ = settings(  # both tests together: about 20 s on 2 cores (no time is asserted)
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the pipeline, watched ----------------------------------------------------------------


class Watched:
    """A pipeline fed step by step; checks that each step's work is bounded by the stream
    it really advanced (final gaps skipped in one step), and times it."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.pipeline = DevicePipeline("dev", settings)
        self.period = settings.strip_period_s
        self.duration = settings.strip_duration_s

    def step(self, outputs: list[Any]) -> None:
        p = self.pipeline
        s = p._s
        created0 = s.windows.created if s is not None else 0
        late0 = s.windows.created_late if s is not None else 0
        end0 = s.analysis.end_seq if s is not None else None
        autos0 = p.counters["auto_events"]
        lost: list[tuple[int, int]] = []  # final gaps of the step
        events = 0
        t = time.perf_counter()
        for o in outputs:
            if isinstance(o, SampleBlock):
                p.on_block(o)
            elif isinstance(o, Gap):
                p.on_gap(o)
                if o.final:
                    lost.append((o.first_seq, o.end_seq))
            elif isinstance(o, DeviceEvent):
                p.on_event(o)
                events += 1
        ONBLOCK_S.append(time.perf_counter() - t)
        s1 = p._s
        if s1 is None or s1 is not s or end0 is None or s1.analysis.end_seq is None:
            return  # a new stream: its own count starts
        end1 = s1.analysis.end_seq
        skipped = sum(max(0, min(b, end1) - max(a, end0)) for a, b in lost)
        advanced = max(0, end1 - end0 - skipped)  # samples really analysed this step
        created = s1.windows.created - created0
        autos = p.counters["auto_events"] - autos0
        per_window = int(self.period * s1.fs)
        # a strip per period of data, one more at each end of a lost range, one per event
        bound = advanced // per_window + 3 + 2 * len(lost) + events + autos
        assert created <= bound, (created, advanced, len(lost))
        # late samples make the strips they fall in, never more, however long the hole
        dur = int(self.duration * s1.fs)
        blocks = [o.n for o in outputs if isinstance(o, SampleBlock)]
        late_bound = sum((n + dur - 1) // per_window + 1 for n in blocks)
        assert s1.windows.created_late - late0 <= late_bound, (blocks, late_bound)


def _tiles(spans: list[tuple[int, int]]) -> None:
    """Spans cover one interval exactly: no overlap, no hole."""
    spans = sorted(s for s in spans if s[1] > s[0])
    for (_, b0), (a1, _) in itertools.pairwise(spans):
        assert b0 == a1, spans


# --- (a) the cart -------------------------------------------------------------------------
def _cart_uv(k0: int, n: int) -> np.ndarray:
    """What a cart sends for samples k0..k0+n (12 leads, µV): any values, deterministic."""
    k = np.arange(k0, k0 + n, dtype=np.int64)[:, None] * 37 + np.arange(12) * 101
    return (k % 4001 - 2000).astype(np.int64)


SAMPLE = st.one_of(st.integers(0, 2**32 - 1), st.integers(-300, 300))
WALL = st.one_of(st.floats(0.0, 0.1), st.floats(0.0, 30.0), st.sampled_from([3600.0, 3 * 86400.0]))
NEXT_ECG = st.tuples(
    st.just("ecg"), st.just(0), st.integers(1, 113), st.floats(0, 0.2), st.just(True)
)
CART_STEP = st.one_of(
    NEXT_ECG,  # the cart as it should be, most of the time
    NEXT_ECG,
    NEXT_ECG,
    st.tuples(st.just("ecg"), SAMPLE, st.integers(1, 113), WALL, st.booleans()),
    st.tuples(st.just("ecg"), st.just(0), st.integers(1, 113), WALL, st.just(True)),
    st.tuples(st.just("hello"), st.sampled_from([250, 500, 1000, 99, 2001]), WALL),
    st.tuples(st.sampled_from(["stage", "bp", "lead_off"]), SAMPLE, WALL, st.booleans()),
    st.tuples(st.just("junk"), st.binary(max_size=40)),
)


@FUZZ
@given(steps=st.lists(CART_STEP, min_size=30, max_size=150))
def test_any_cart_input_is_survived_and_accounted_for(steps: list[tuple]) -> None:
    """(a): every ECG sample sent is delivered with its value or counted as a repeat; per
    sample rate, blocks and gaps tile the stream; the pipeline never raises and its work
    per step is bounded by the stream advanced."""
    dec, stream, watched = CartDecoder(), CartStream("dev"), Watched(SETTINGS)
    wall, dev, sent, delivered = 0.0, 0, 0, 0
    spans: list[list[tuple[int, int]]] = [[]]  # per stream (a new rate: a new numbering)
    for seq, step in enumerate(steps):
        kind, x = step[0], None
        if kind == "junk":
            data = step[1].replace(b"\x00", b"\x01") + b"\x00"  # garbage, then a delimiter
        elif kind == "ecg":
            _, value, n, dt, relative = step
            wall += dt
            dev = max(0, min(dev + value if relative else value, 2**32 - 1 - n))
            x = _cart_uv(dev, n)
            data = encode_ecg(seq, dev, x)
            sent += n
            dev += n
        elif kind == "hello":
            wall += step[2]
            data = encode_hello(seq, step[1], "SN", "1")
        else:
            _, value, dt, relative = step
            wall += dt
            at = max(0, min(dev + value if relative else value, 2**32 - 1))
            if kind == "stage":
                data = encode_stage(seq, at, 2, Phase.EXERCISE, 4.0, 12.0, "Bruce 2")
            elif kind == "bp":
                data = encode_blood_pressure(seq, at, 150, 80)
            else:
                data = encode_lead_off(seq, at, 0b101)
        outputs = []
        for msg in dec.feed(data):
            outputs += stream.handle(msg, T0 + wall, wall)
        for o in outputs:
            if isinstance(o, SampleBlock):
                assert x is not None
                np.testing.assert_array_equal(np.rint(o.samples * 1000), x[x.shape[0] - o.n :])
                spans[-1].append((o.seq, o.end_seq))
                delivered += o.n
            elif isinstance(o, Gap):
                spans[-1].append((o.first_seq, o.end_seq))
            elif isinstance(o, DeviceRestarted) and o.reason.startswith("sample rate"):
                spans.append([])
        watched.step(outputs)
    assert delivered + stream.counters["duplicate_samples"] == sent
    for per_stream in spans:
        _tiles(per_stream)


# --- (b) the patch ------------------------------------------------------------------------
PATCH_SETTINGS = dataclasses.replace(SETTINGS, backfill_wait_s=3.0)


def _patch_uv(first: int, n: int) -> np.ndarray:
    """The patch's recording: sample k's value (µV, even) is a function of k, whatever
    frame carries it."""
    k = np.arange(first, first + n, dtype=np.int64)
    return ((k * 7919) % 4001 - 2000) * 2


PATCH_SAMPLE = st.one_of(
    st.integers(-600, 600),  # relative to the patch's own counter
    st.integers(0, 2**32 - 1),  # anything
)
PATCH_WALL = st.one_of(st.floats(0.0, 0.5), st.floats(0.0, 20.0), st.sampled_from([3600.0]))
NEXT_LIVE = st.tuples(st.just("live"), st.just(0), st.integers(1, 60), st.floats(0.0, 0.3))
PATCH_STEP = st.one_of(
    NEXT_LIVE,  # the patch as it should be, most of the time
    NEXT_LIVE,
    NEXT_LIVE,
    st.tuples(st.just("live"), st.just(0), st.integers(1, 60), PATCH_WALL),
    st.tuples(st.sampled_from(["live", "backfill"]), PATCH_SAMPLE, st.integers(1, 255), PATCH_WALL),
    st.tuples(st.just("extent"), PATCH_SAMPLE, PATCH_SAMPLE, PATCH_WALL),
    st.tuples(st.just("done"), st.integers(0, 4), PATCH_SAMPLE, PATCH_SAMPLE, PATCH_WALL),
    st.tuples(st.just("symptom"), st.integers(0, 5), PATCH_SAMPLE, st.floats(-1e4, 1e4)),
    st.tuples(st.just("tick"), PATCH_WALL),
    st.tuples(st.sampled_from(["drop", "junk_time", "reboot"])),
    st.tuples(
        st.just("junk"), st.sampled_from(sorted(PATCH_CHARACTERISTICS)), st.binary(max_size=20)
    ),
)


class PatchLink:
    """Performs a PatchSession like the BLE shell does, collecting what it delivers."""

    def __init__(self) -> None:
        self.s = self._session()
        self.watched = Watched(PATCH_SETTINGS)
        self.mono = 0.0  # s since the test began
        self.boot = 0.0  # ... when the gateway's monotonic clock began
        self.dev = 0  # the patch's own counter (samples recorded so far)
        self.time_bytes: bytes | None = None
        self.blocks: list[SampleBlock] = []
        self.gaps: list[Gap] = []

    @staticmethod
    def _session() -> PatchSession:
        settings = PatchSettings("dev", "E0:00:00:00:00:01")
        return PatchSession(settings, racp_timeout_s=2.0, racp_retry_s=1.0)

    @property
    def now(self) -> float:
        return T0 + self.mono

    @property
    def clock(self) -> float:
        """The gateway's monotonic clock (it starts again when the gateway's machine does)."""
        return self.mono - self.boot

    def take(self, outputs: list[Any]) -> None:
        deliver, commands = [], []
        for o in outputs:
            if isinstance(o, Read | Write | Subscribe | Disconnect):
                commands.append(o)
                continue
            deliver.append(o)
            if isinstance(o, SampleBlock):
                dev_seq = o.seq - self.s._offset  # (blocks of this step: the offset now)
                np.testing.assert_array_equal(
                    np.rint(o.samples[:, 0] * 1000), _patch_uv(dev_seq, o.n)
                )
                self.blocks.append(o)
            elif isinstance(o, Gap):
                self.gaps.append(o)
        self.watched.step(deliver)
        for c in commands:
            if isinstance(c, Read):
                data = self.time_bytes or encode_device_time(
                    DeviceTime(int((self.now - EPOCH_2000) * 1e6), self.dev)
                )
                self.take(self.s.read_done(c.uuid, data, self.now, self.clock))
            elif isinstance(c, Write):
                self.take(self.s.write_done(c.uuid, self.now, self.clock))
            elif isinstance(c, Disconnect):
                self.reconnect(c.reason)

    def reconnect(self, reason: str = "link lost") -> None:
        self.take(self.s.link_lost(reason, self.now, self.clock))
        self.take(self.s.connected(PATCH_CHARACTERISTICS, 247, self.now, self.clock))

    def reboot(self) -> None:
        """The gateway's machine restarts (a power cut): a new session goes on from the
        position the old one saved, its monotonic clock from 0, and the patch reconnects."""
        self.take(self.s.link_lost("gateway stops", self.now, self.clock))
        pos = self.s.position()
        self.s = self._session()
        if pos is not None:
            self.s.resume(pos)
        self.boot = self.mono
        self.take(self.s.connected(PATCH_CHARACTERISTICS, 247, self.now, self.clock))

    def wait(self, dt: float) -> None:
        self.mono += dt
        self.dev += int(dt * 250)

    def notify(self, uuid: str, data: bytes) -> None:
        self.take(self.s.notified(uuid, data, self.now, self.clock))


@FUZZ
@given(steps=st.lists(PATCH_STEP, min_size=30, max_size=150))
def test_any_patch_input_is_survived_and_accounted_for(steps: list[tuple]) -> None:
    """(b): delivered samples carry the patch's own values, each stream sample at most once;
    delivered + final gaps + what the gateway still asks for tile the stream; the pipeline
    never raises and its work per step is bounded by the stream advanced."""
    link = PatchLink()
    link.reconnect("start")
    for step in steps:
        kind = step[0]
        if kind in ("live", "backfill"):
            _, value, n, dt = step
            link.wait(dt)
            first = max(0, min(link.dev - n + value if abs(value) <= 600 else value, 2**32 - 1))
            frame = encode_ecg_frame(first, _patch_uv(first, n), backfill=kind == "backfill")
            link.notify(uuids.PATCH_BACKFILL if kind == "backfill" else uuids.PATCH_ECG, frame)
        elif kind == "extent":
            _, a, b, dt = step
            link.wait(dt)
            oldest, nxt = (max(0, min(link.dev + v if abs(v) <= 600 else v, 2**32 - 1))
                           for v in (a, b))  # fmt: skip
            r = RacpResponse(RacpOp.EXTENT, RacpStatus.SUCCESS, oldest, nxt)
            link.notify(uuids.PATCH_RACP, encode_racp_response(r))
        elif kind == "done":
            _, status, a, b, dt = step
            link.wait(dt)
            first, end = (max(0, min(link.dev + v if abs(v) <= 600 else v, 2**32 - 1))
                          for v in (a, b))  # fmt: skip
            r = RacpResponse(RacpOp.RANGE_DONE, RacpStatus(status), first, end)
            link.notify(uuids.PATCH_RACP, encode_racp_response(r))
        elif kind == "symptom":
            _, press_id, value, dt_s = step
            seq = max(0, min(link.dev + value if abs(value) <= 600 else value, 2**32 - 1))
            us = max(0, int((link.now + dt_s - EPOCH_2000) * 1e6))
            link.notify(uuids.PATCH_SYMPTOM, encode_symptom(SymptomPress(press_id, seq, us)))
        elif kind == "tick":
            link.wait(step[1])
            link.take(link.s.tick(link.now, link.clock))
        elif kind == "drop":
            link.reconnect()
        elif kind == "reboot":
            link.reboot()
        elif kind == "junk_time":
            link.time_bytes = b"\xff" * 5
            link.reconnect()
        else:
            link.notify(step[1], step[2])
    link.take(link.s.link_lost("end", link.now, link.clock))  # (releases what was held)
    ledger, off = link.s.stream.ledger, link.s._offset
    owed = [(e.first + off, e.end + off) for e in ledger.entries]
    delivered = [(b.seq, b.end_seq) for b in link.blocks]
    _tiles(delivered + [(g.first_seq, g.end_seq) for g in link.gaps] + owed)
