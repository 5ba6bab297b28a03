"""The gateway's Polar PMD driver against a device written from docs/protocols/polar-pmd.md.

Clean room: :mod:`tests.cleanroom.polar_device` was written from the document alone, and
every expectation here is the document's (the section it comes from is named). The driver
is a black box: ``ble_driver(PolarSettings(...), sink, backend=...)``, what it hands its
sink and its ``stats()`` counters.

The device streams in real time (130 Hz, frames of as many samples as the MTU allows, a
frame every 0.6 s at MTU 247), so each test runs a few seconds of wall time.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import pytest

from core.events import (
    BatteryLevel,
    ButtonPressed,
    Connected,
    DeviceInfo,
    Disconnected,
    DriverError,
    Gap,
    HeartRate,
    RecordingSink,
    RrGapSeen,
)
from core.tasks import cancel_and_wait
from drivers.ble_driver import ble_driver
from drivers.polar_session import PolarSettings
from sim.bumble_backend import SimBleWorld
from tests.cleanroom.polar_device import (
    EPOCH_2000_POSIX,
    FS,
    RR_1024,
    START_ECG,
    STOP_ECG,
    CleanPolarDevice,
    FrameLog,
    PressLog,
    ecg_frame,
)
from tests.support import wait_for

pytestmark = pytest.mark.timeout(30)

SOURCE = "polar-1"
JUMP = "pmd timestamp jump"
RESTART = "device restarted (pmd clock went back)"
STEPPED = "pmd clock stepped"
FAST = {"reconnect_delay_s": (0.05, 0.5)}
"""Quick reconnections (tests that do not time the documented backoff)."""


# --- the rig --------------------------------------------------------------------------------
class Rig:
    """One gateway driver reading one device, and what it delivered."""

    def __init__(self, dev: CleanPolarDevice, driver_kw: dict[str, Any], **settings: Any) -> None:
        self.dev = dev
        self.sink = RecordingSink()
        lower = settings.pop("address_lower", False)  # (the address is matched in any case)
        self.address = dev.address.lower() if lower else dev.address
        self.driver = ble_driver(
            PolarSettings(SOURCE, self.address, **settings),
            self.sink,
            backend=dev.world.backend(),
            **driver_kw,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.driver.run(), name="driver")

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            await cancel_and_wait(self.task)

    def stat(self, name: str) -> Any:
        return self.driver.stats()[name]

    def of(self, cls: type) -> list[Any]:
        return self.sink.of(cls)

    def errors(self, what: str) -> list[DriverError]:
        return [e for e in self.sink.of(DriverError) if e.what == what]

    def reasons(self) -> list[str]:
        return [e.reason for e in self.sink.of(Disconnected)]

    @property
    def end_seq(self) -> int:
        return max((b.end_seq for b in self.sink.blocks), default=0)

    @property
    def samples(self) -> int:
        return sum(b.n for b in self.sink.blocks)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    """``await make(device kw..., driver_kw=..., settings=...)`` -> (device, rig), both
    started (``dev=``: another driver for a device made before); all stopped at the end
    (the drivers first)."""
    world = SimBleWorld()
    devices: list[CleanPolarDevice] = []
    rigs: list[Rig] = []

    async def factory(
        driver_kw: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        dev: CleanPolarDevice | None = None,
        **dev_kw: Any,
    ) -> Any:
        if dev is None:
            dev = CleanPolarDevice(world, **dev_kw)
            devices.append(dev)
            await dev.start()
        rig = Rig(dev, FAST if driver_kw is None else driver_kw, **(settings or {}))
        rigs.append(rig)
        rig.start()
        return dev, rig

    yield factory
    for rig in rigs:
        await rig.stop()
    for dev in devices:
        await dev.stop()


# --- what the gateway should have delivered ----------------------------------------------------
def received(rig: Rig) -> dict[int, int]:
    """Every sample the gateway delivered, sample number -> µV; none twice."""
    out: dict[int, int] = {}
    for b in rig.sink.blocks:
        assert (b.fs, b.leads, b.source) == (FS, ("ECG",), SOURCE)
        for i, v in enumerate(b.samples[:, 0]):
            assert b.seq + i not in out, f"sample {b.seq + i} delivered twice"
            out[b.seq + i] = round(float(v) * 1000)
    return out


def expected(frames: list[FrameLog], seq_of: Callable[[FrameLog, int], int]) -> dict[int, int]:
    """Sample number -> µV of every sample of the delivered frames (``seq_of(frame, a)``)."""
    return {
        seq_of(f, a): v
        for f in frames
        if f.delivered
        for a, v in zip(range(f.first_a, f.end_a), f.values, strict=True)
    }


def continuous(dev: CleanPolarDevice) -> Callable[[FrameLog, int], int]:
    """ "Sample numbering and gaps": one clock never stepped -> sample number = device sample
    number minus that of the first sample of the first frame received."""
    first = next(f for f in dev.frames if f.delivered).first_a
    return lambda _f, a: a - first


def timestamp_gaps(
    frames: list[FrameLog], seq_of: Callable[[FrameLog, int], int]
) -> list[tuple[int, int, str]]:
    """The final gaps the document predicts between delivered frames of one clock: exactly
    the samples not delivered (every frame here has >= 3 samples), "pmd timestamp jump"."""
    delivered = [f for f in frames if f.delivered]
    return [
        (seq_of(a, a.end_a), seq_of(b, b.first_a), JUMP)
        for a, b in pairwise(delivered)
        if a.boot == b.boot and b.first_a > a.end_a
    ]


def gaps(rig: Rig) -> list[tuple[int, int, str]]:
    assert all(isinstance(g, Gap) and g.final and g.source == SOURCE for g in rig.sink.gaps)
    return [(g.first_seq, g.end_seq, g.reason) for g in rig.sink.gaps]


def check_tiling(rig: Rig) -> None:
    """Blocks and gaps cover 0 ... end without a hole or an overlap."""
    spans = sorted(
        [(b.seq, b.end_seq) for b in rig.sink.blocks]
        + [(g.first_seq, g.end_seq) for g in rig.sink.gaps]
    )
    pos = 0
    for first, end in spans:
        assert first == pos, f"hole or overlap at {pos}: next span {first}..{end}"
        pos = end


async def settle(rig: Rig, seq_of: Callable[[FrameLog, int], int]) -> int:
    """Wait until every frame delivered so far has been numbered; the end sample number."""
    last = [f for f in rig.dev.frames if f.delivered][-1]
    return await settle_to(rig, seq_of(last, last.end_a))


async def settle_to(rig: Rig, want: int) -> int:
    await wait_for(lambda: rig.end_seq >= want, f"samples up to {want}", 10)
    return want


def check_samples(rig: Rig, seq_of: Callable[[FrameLog, int], int], cutoff: int) -> None:
    check_expected(rig, expected(rig.dev.frames, seq_of), cutoff)


def check_expected(rig: Rig, want: dict[int, int], cutoff: int) -> None:
    """Every sample delivered carries the number and value predicted; every sample predicted
    before ``cutoff`` (what was settled before the driver stopped) arrived, exactly once."""
    got = received(rig)
    wrong = {s: (v, want.get(s)) for s, v in got.items() if want.get(s) != v}
    assert not wrong, (
        f"{len(wrong)} samples numbered or valued wrong, e.g. {list(wrong.items())[:5]}"
    )
    missing = sorted(s for s in want if s not in got and s < cutoff)
    assert not missing, f"{len(missing)} samples sent but never delivered: {missing[:10]}..."
    check_tiling(rig)


P_NS = 1e9 / FS


def predict(frames: list[FrameLog]) -> tuple[dict[int, int], list[tuple[int, int, str]], dict]:
    """The table of "Sample numbering and gaps", applied to the frames the gateway receives
    (``at``: their arrival): sample number -> µV, the gaps, and the counters
    ``frames_duplicate``, ``timestamps_rejected`` and ``clock_steps``."""
    samples: dict[int, int] = {}
    gaps: list[tuple[int, int, str]] = []
    count = {"frames_duplicate": 0, "timestamps_rejected": 0, "clock_steps": 0}
    r = now0 = None
    nxt = 0
    held: FrameLog | None = None
    held_before = 0.0  # arrival of the frame before the held one
    last_values: list[int] | None = None

    def place(f: FrameLog) -> None:
        nonlocal nxt
        samples.update(zip(range(nxt, nxt + f.n), f.values, strict=True))
        nxt += f.n

    def gap(n: int, reason: str) -> None:
        nonlocal nxt
        gaps.append((nxt, nxt + n, reason))
        nxt += n

    def by_host_clock(now: float, since: float, n: int, reason: str) -> None:
        """A clock step: the samples missed across it, by the gateway's clock."""
        count["clock_steps"] += 1
        missing = round((now - since) * FS) - n
        if missing > 32:
            gap(missing, reason)

    for f in frames:
        if not f.delivered:
            continue
        t, n, now = f.timestamp_ns, f.n, f.at
        values, last_values = list(f.values), last_values
        if r is None:  # the first frame ever: samples 0 ... n - 1
            place(f)
            r, now0, last_values = t, now, values
            continue
        dt = t - r
        repeat = dt <= 0 and values == last_values
        last_values = values
        if repeat:
            count["frames_duplicate"] += 1
        elif dt <= 0:  # the clock went back: a restart, or set back
            assert held is None
            by_host_clock(now, now0, n, RESTART if dt < -2e9 else STEPPED)
            place(f)
            r, now0 = t, now
        elif dt > (now - now0 + 5) * 1.02e9 + n * P_NS:  # implausible
            limit = (now - (now0 or 0) + 5) * 1.02e9 + n * P_NS
            if held is not None and 0 < t - held.timestamp_ns <= limit:  # a step forward
                by_host_clock(now0, held_before, held.n, STEPPED)
                place(held)
                r, held = held.timestamp_ns, None
                missing = round((t - r) / P_NS) - n
                if missing > 2:
                    gap(missing, JUMP)
                place(f)
                r, now0 = t, now
                continue
            assert held is None
            count["timestamps_rejected"] += 1
            held_before = now0
            r, now0, held = r + round(n * P_NS), now, f
        else:
            missing = round(dt / P_NS) - n
            if held is not None:  # nothing missing: in place; else it joins the gap
                if missing > 2:
                    gap(held.n + missing, JUMP)
                else:
                    place(held)
                held = None
            elif missing > 2:
                gap(missing, JUMP)
            place(f)
            r, now0 = t, now
    return samples, gaps, count


def t0_of(rig: Rig) -> float:
    b = rig.sink.blocks[0]
    return b.start - b.seq / FS


# --- tests ------------------------------------------------------------------------------------
async def test_connection_sequence_stream_and_standard_characteristics(make) -> None:
    """ "Connection sequence", "ECG data frames", "Frame size and MTU", "Sample numbering",
    Battery, Device Information, Heart Rate, "STOP"."""
    info = {
        0x2A29: "Polar Electro Oy",
        0x2A24: "H10",
        0x2A25: b"CR0001\x00\x00",
        0x2A26: b"5.0\xff",
    }
    dev, rig = await make(device_info=info)
    await wait_for(lambda: rig.samples >= 4 * 78 and len(rig.of(HeartRate)) >= 3, "stream")
    await dev.set_battery(55)
    await wait_for(lambda: any(e.percent == 55 for e in rig.of(BatteryLevel)), "battery 55")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    # the GATT operations, in the documented order, one START, then STOP at shutdown
    assert dev.ops[:13] == [
        ("connect", "1"),
        ("subscribe", "pmd_cp:indicate"),
        ("subscribe", "pmd_data:notify"),
        ("subscribe", "heart_rate:notify"),
        ("subscribe", "button:notify"),
        ("read", "battery"),
        ("subscribe", "battery:notify"),
        ("read", "0x2a29"),
        ("read", "0x2a24"),
        ("read", "0x2a25"),
        ("read", "0x2a26"),
        ("write", START_ECG.hex(" ")),
        ("write", STOP_ECG.hex(" ")),
    ]
    assert dev.commands == [START_ECG, STOP_ECG]
    await wait_for(lambda: not dev.streaming and dev.connection is None, "device stopped")

    # MTU 247 (the simulated link): frames of 78 samples, reported in the connected event
    assert [e.mtu for e in rig.of(Connected)] == [247]
    assert {f.n for f in dev.frames} == {78}

    # every sample once, numbered from 0, with its value; no gap
    check_samples(rig, seq_of, cutoff)
    assert rig.sink.blocks[0].seq == 0 and gaps(rig) == []
    assert rig.stat("samples") == rig.samples and rig.stat("gaps") == 0

    # times: the first frame's last sample dated by its arrival; sample s at t0 + s/130
    first = next(f for f in dev.frames if f.delivered)
    assert t0_of(rig) + (first.n - 1) / FS == pytest.approx(first.at, abs=0.1)
    for b in rig.sink.blocks:
        assert b.start == pytest.approx(t0_of(rig) + b.seq / FS, abs=1e-6)

    # Battery (read, then notified), Device Information, Heart Rate with RR and contact
    assert [e.percent for e in rig.of(BatteryLevel)] == [87, 55]
    (di,) = rig.of(DeviceInfo)
    assert (di.manufacturer, di.model, di.serial, di.firmware) == (
        "Polar Electro Oy",
        "H10",
        "CR0001",  # trailing NUL bytes removed
        "5.0\ufffd",  # an invalid byte replaced
    )
    hr = rig.of(HeartRate)
    assert all(e.bpm == 80 and e.contact is True for e in hr)
    rr_got = [r for e in hr for r in e.rr_s]
    rr_sent = [r / 1024 for _c, rrs in dev.hr_sent for r in rrs]
    assert rr_got == rr_sent[: len(rr_got)] and len(rr_got) >= len(rr_sent) - 2
    ends = {b.end_seq - 1 for b in rig.sink.blocks}
    for e in hr:  # tagged with the newest sample numbered (none before the first frame)
        assert e.seq is None or e.seq in ends, e
    assert rig.stat("values_malformed") == 0 and rig.stat("frames_malformed") == 0


async def test_frames_lost_in_the_air_give_exact_gaps(make) -> None:
    """ "Sample numbering and gaps": a timestamp jump of more than 2 samples is a final gap of
    exactly that many; frame sizes change from frame to frame; MTU 185 -> 57 samples."""
    sizes = [57, 3, 40, 57, 5, 57]
    dev, rig = await make(max_mtu=185, frame_sizes=lambda i: sizes[i % len(sizes)])
    dev.drop_frames(1, after=1)  # frame 1: 3 samples
    dev.drop_frames(1, after=4)  # frame 4: 5 samples
    dev.drop_frames(2, after=8)  # frames 8, 9: 40 + 57 samples
    # frame 2 (40 samples): the ends of the int24 range, passed on unclipped as µV / 1000
    dev.frame_values[2] = [0, 1, -1, 8388607, -8388608, -1000, 1000, *range(33)]
    await wait_for(lambda: len(dev.frames) >= 13, "13 frames", 15)
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    assert [e.mtu for e in rig.of(Connected)] == [185]
    assert max(f.n for f in dev.frames) == 57
    assert [f.kind for f in dev.frames[:10]] == ["sent"] + ["dropped"] + ["sent"] * 2 + [
        "dropped"
    ] + ["sent"] * 3 + ["dropped"] * 2
    want_gaps = timestamp_gaps(dev.frames, seq_of)
    assert [g[1] - g[0] for g in want_gaps] == [3, 5, 97]
    assert dev.frames[2].n == 40 and dev.frames[2].delivered
    assert gaps(rig) == want_gaps
    check_samples(rig, seq_of, cutoff)
    assert rig.stat("gaps") == 3 and rig.stat("samples_missed") == 105
    # the same from the document's table, frame by frame
    assert predict(dev.frames)[:2] == (expected(dev.frames, seq_of), want_gaps)


async def test_reconnections_give_exact_gaps_and_an_rr_gap(make) -> None:
    """ "Reconnection", "After a reconnection" (gap exact from the timestamps), "RR intervals
    and the beats never heard" (reported when the new connection ends)."""
    dev, rig = await make()
    await wait_for(lambda: rig.samples >= 3 * 78 and len(dev.hr_sent) >= 2, "connection 1")
    await dev.disconnect(away_s=2.0)
    await wait_for(lambda: len(rig.of(Disconnected)) == 1, "disconnected")
    n1 = rig.samples
    await wait_for(
        lambda: (
            dev.connections == 2
            and rig.samples >= n1 + 3 * 78
            and sum(c == 2 for c, _ in dev.hr_sent) >= 2
        ),
        "connection 2",
    )
    assert rig.of(RrGapSeen) == [], "15 notifications not reached yet: the RR gap waits"
    await dev.disconnect(away_s=0.3)
    await wait_for(lambda: len(rig.of(RrGapSeen)) >= 1, "rr gap after connection 2 ended")
    n2 = rig.samples
    await wait_for(lambda: dev.connections == 3 and rig.samples >= n2 + 2 * 78, "connection 3")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    want_gaps = timestamp_gaps(dev.frames, seq_of)
    assert len(want_gaps) == 2
    assert gaps(rig) == want_gaps
    check_samples(rig, seq_of, cutoff)
    assert rig.stat("gaps") == 2
    assert rig.stat("samples_missed") == sum(e - f for f, e, _ in want_gaps)
    # START written on every connection, STOP only at the end
    assert dev.commands == [START_ECG] * 3 + [STOP_ECG]
    assert rig.stat("reconnects") == 2
    # Battery and Device Information read on every connection
    assert [e.percent for e in rig.of(BatteryLevel)] == [87] * 3
    assert len(rig.of(DeviceInfo)) == 3

    # RR: beats between the last one notified on connection 1 and the one where connection
    # 2's first interval begins were never heard
    last1 = max(b for c, b in dev.hr_beats if c == 1)
    first2 = min(b for c, b in dev.hr_beats if c == 2)
    gap = rig.of(RrGapSeen)[0]
    assert gap.beats_missing == first2 - 1 - last1
    assert gap.duration_s == pytest.approx((first2 - 1 - last1) * RR_1024 / 1024, abs=0.1)
    assert rig.stat("rr_gaps") >= 1


async def test_device_restart_gap_is_measured_by_the_gateway_clock(make) -> None:
    """ "Sample numbering and gaps", case dt < -2 s: a device restart; the gap is
    max(0, round((now - now0) x 130) - n), numbering goes on after it."""
    dev, rig = await make()
    await wait_for(lambda: rig.samples >= 6 * 78, "boot 1 streaming (clock > 2 s on)")
    await settle(rig, continuous(dev))
    await dev.restart(off_s=1.0)
    await wait_for(lambda: sum(f.boot == 2 and f.delivered for f in dev.frames) >= 3, "boot 2")
    before = [f for f in dev.frames if f.boot == 1 and f.delivered][-1]
    after = next(f for f in dev.frames if f.boot == 2 and f.delivered)
    assert after.timestamp_ns < before.timestamp_ns - 2 * 10**9  # the clock went back > 2 s
    first1 = next(f for f in dev.frames if f.delivered).first_a
    await wait_for(lambda: any(g.reason == RESTART for g in rig.sink.gaps), "restart gap")
    (gap,) = rig.sink.gaps

    def seq_of(f: FrameLog, a: int) -> int:
        return a - first1 if f.boot == 1 else gap.end_seq + a - after.first_a

    cutoff = await settle(rig, seq_of)
    await rig.stop()

    assert gap.first_seq == before.end_a - first1
    measured = max(0, round((after.at - before.at) * FS) - after.n)
    assert gap.end_seq - gap.first_seq == pytest.approx(measured, abs=3)
    assert gaps(rig) == [(gap.first_seq, gap.end_seq, RESTART)]
    check_samples(rig, seq_of, cutoff)


async def test_refused_start_is_retried_with_backoff(make) -> None:
    """ "Control point answer": any status but 0 and 6 is a refusal ("START ECG refused:
    <name>", start_refused), a failed connection retried with backoff doubling from 0.5 s
    (x 0.5 ... 1); ALREADY_IN_STATE (6) is success. No STOP on these disconnections."""
    dev, rig = await make(driver_kw={})  # the documented reconnect delays
    # only an answer for the ECG measurement (type 0) answers START: a refusal for type 7
    # first is ignored, and the real answer that follows decides
    dev.cp_before_answer = [bytes.fromhex("f0 02 07 00 00")]
    dev.start_statuses = [5, 13, 200, 6]
    await wait_for(lambda: rig.samples >= 2 * 78, "streaming after 3 refusals", 15)
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    refused = [r for r in rig.reasons() if "refused" in r]
    assert refused == [
        "START ECG refused: INVALID_PARAMETER",
        "START ECG refused: DEVICE_IN_CHARGER",
        "START ECG refused: UNKNOWN_200",
    ]
    assert rig.stat("start_refused") == 3
    assert dev.commands == [START_ECG] * 4 + [STOP_ECG]
    assert dev.cp_answers[0] == bytes.fromhex("f0 02 07 00 00")
    assert [a[3] for a in dev.cp_answers if a[1] == 2][-3:] == [13, 200, 6]
    # backoff: after the k-th failure, 0.5 x 2^(k-1) s x a factor in [0.5, 1]
    connects = [t for (kind, _), t in zip(dev.ops, dev.op_at, strict=True) if kind == "connect"]
    drops = [t for (kind, _), t in zip(dev.ops, dev.op_at, strict=True) if kind == "disconnect"]
    delays = [c - d for d, c in zip(drops[:3], connects[1:4], strict=True)]
    for k, delay in enumerate(delays):
        base = 0.5 * 2**k
        assert base * 0.5 - 0.02 <= delay <= base + 0.25, (k, delays)
    check_samples(rig, seq_of, cutoff)
    assert rig.sink.blocks[0].seq == 0


async def test_unanswered_start_disconnects_after_5_s_even_with_frames(make) -> None:
    """ "Control point answer": no answer within 5 s of the Write Response -> "START ECG not
    answered", even if ECG frames are flowing; the frames that came are taken."""
    dev, rig = await make(driver_kw={})
    dev.answer_start = False
    await wait_for(lambda: any("not answered" in r for r in rig.reasons()), "no answer", 9)
    dev.answer_start = True
    await wait_for(lambda: dev.connections == 2, "connection 2")
    n1 = rig.samples
    await wait_for(lambda: rig.samples >= n1 + 2 * 78, "connection 2 streams")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    assert rig.reasons()[0] == "START ECG not answered"
    write = dev.op_at[dev.ops.index(("write", START_ECG.hex(" ")))]
    drop = dev.op_at[dev.ops.index(("disconnect", "1"))]
    assert 5.0 <= drop - write <= 5.6
    assert n1 >= 7 * 78, "the frames of the unanswered connection are taken"
    assert dev.commands == [START_ECG, START_ECG, STOP_ECG]
    assert rig.stat("start_refused") == 0
    assert gaps(rig) == timestamp_gaps(dev.frames, seq_of)
    check_samples(rig, seq_of, cutoff)


async def test_silence_watchdog_reconnects_and_restarts_the_stream(make) -> None:
    """ "Silence watchdog": no ECG for silence_timeout_s after START was answered -> error
    `silence`, watchdog_trips, disconnect ("silent stream"), reconnect within 0.5 s (the
    connection delivered), START again. Heart Rate does not keep it from tripping, nor do
    malformed frames."""
    dev, rig = await make(driver_kw={}, settings={"silence_timeout_s": 1.5})
    await wait_for(lambda: rig.samples >= 2 * 78, "streaming")
    dev.silent = True  # connection 1: nothing at all
    await wait_for(lambda: len(rig.of(Disconnected)) == 1, "watchdog trips", 6)
    dev.silent = False
    await wait_for(lambda: dev.connections == 2, "connection 2")
    n1 = rig.samples
    await wait_for(lambda: rig.samples >= n1 + 2 * 78, "connection 2 streams")
    dev.mangle_all = lambda raw: raw[:9] + b"\x80" + raw[10:]  # connection 2: compressed frames
    await wait_for(lambda: len(rig.of(Disconnected)) == 2, "watchdog trips again", 6)
    dev.mangle_all = None
    await wait_for(lambda: dev.connections == 3, "connection 3")
    n2 = rig.samples
    await wait_for(lambda: rig.samples >= n2 + 2 * 78, "connection 3 streams")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    assert rig.reasons()[:2] == ["silent stream"] * 2
    assert len(rig.errors("silence")) == 2 and rig.stat("watchdog_trips") == 2
    mangled = [f for f in dev.frames if f.kind == "mangled" and f.conn == 2]
    assert len(mangled) >= 2 and rig.stat("frames_malformed") == len(mangled)
    for conn in (1, 2):
        last_ecg = [f for f in dev.frames if f.conn == conn and f.delivered][-1].at
        drop = dev.op_at[dev.ops.index(("disconnect", str(conn)))]
        assert 1.5 <= drop - last_ecg <= 2.0, conn
        reconnect = dev.op_at[dev.ops.index(("connect", str(conn + 1)))]
        assert reconnect - drop <= 0.5 + 0.2, conn
        hr_while_silent = [e for e in rig.of(HeartRate) if last_ecg + 0.1 < e.time < drop]
        assert hr_while_silent, "Heart Rate kept coming while the ECG was silent"
    assert dev.commands == [START_ECG] * 3 + [STOP_ECG]
    want_gaps = timestamp_gaps(dev.frames, seq_of)
    assert len(want_gaps) == 2 and gaps(rig) == want_gaps
    check_samples(rig, seq_of, cutoff)


async def test_malformed_values_are_counted_and_the_stream_goes_on(make) -> None:
    """What the gateway does with malformed control point indications (during the START wait
    and after), ECG frames, a repeated frame, Heart Rate, Battery and button values."""
    dev, rig = await make()
    dev.cp_before_answer = [bytes.fromhex("f0 02"), bytes.fromhex("e0 02 00 05 00")]
    await wait_for(lambda: rig.samples >= 2 * 78, "streaming despite malformed indications")
    ts = dev.frames[-1].timestamp_ns

    # five malformed ECG notifications in between frames: no samples, no gap
    for raw in (
        bytes(5),  # shorter than 10 bytes
        b"\x01" + struct.pack("<Q", ts) + b"\x00" + bytes(9),  # measurement type 1
        ecg_frame(ts, [1, 2, 3], frame_type=0x80),  # compressed
        ecg_frame(ts, [1, 2, 3])[:-2],  # sample part not a multiple of 3
        ecg_frame(ts, []),  # no sample
    ):
        await dev.inject("pmd_data", raw)
    # one real frame sent compressed: its samples become a gap
    dev.mangle_next_frame(lambda raw: raw[:9] + b"\x80" + raw[10:])
    # a frame sent twice: the repeat is dropped, no gap
    n_frames = len(dev.frames)
    await wait_for(lambda: len(dev.frames) >= n_frames + 2, "a frame after the mangled one")
    last = dev.frames[-1]
    assert last.delivered
    await dev.inject("pmd_data", ecg_frame(last.timestamp_ns, last.values))
    for raw in ("16 48 55", "00", "00 3c 00", "01 3c", "08 3c 01"):  # Heart Rate
        await dev.inject("heart_rate", bytes.fromhex(raw))
    for raw in ("65", "57 00"):  # Battery: 101 %, 2 bytes
        await dev.inject("battery", bytes.fromhex(raw))
    good = PressLog(7, dev.abs_sample_now(), dev.timestamp_of(dev.abs_sample_now()))
    for raw in (
        dev.press_value(good)[:12],  # short
        dev.press_value(good, version=0),  # version 0
        dev.press_value(good) + b"\xaa",  # longer: accepted
    ):
        await dev.inject("button", raw)
    await dev.inject("pmd_cp", bytes.fromhex("f0 05 00 03 00"))  # another op, status 3
    await dev.inject("pmd_cp", bytes.fromhex("f0 05 00 00 00"))  # another op, status 0
    n_frames = len(dev.frames)
    await wait_for(lambda: len(dev.frames) >= n_frames + 3, "three more frames")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()

    assert len(rig.reasons()) == 1, f"disconnected before the stop: {rig.reasons()}"
    assert dev.connections == 1
    assert rig.stat("frames_malformed") == 6 and len(rig.errors("pmd_frame")) == 6
    assert rig.stat("frames_duplicate") == 1
    assert len(rig.errors("heart_rate")) == 5
    assert len(rig.errors("battery")) == 2
    assert len(rig.errors("button")) == 2
    assert len(rig.errors("pmd_control_point")) == 3
    assert rig.stat("values_malformed") == 2 + 5 + 2 + 2  # control point, HR, battery, button
    assert [e.percent for e in rig.of(BatteryLevel)] == [87]
    (press,) = rig.of(ButtonPressed)
    assert (
        press.press_id == 7
        and press.seq == good.a - next(f for f in dev.frames if f.delivered).first_a
    )
    mangled = [f for f in dev.frames if f.kind == "mangled"]
    assert len(mangled) == 1
    want_gaps = timestamp_gaps(dev.frames, seq_of)
    assert [g[1] - g[0] for g in want_gaps] == [mangled[0].n]
    assert gaps(rig) == want_gaps
    check_samples(rig, seq_of, cutoff)


async def test_button_presses(make) -> None:
    """ "Symptom button": a press before any ECG is held until the first frame, then placed
    by its device time; a press is placed at its sample; a repeat (same counter and time)
    is no second event; a press 5 s ahead is placed at its future sample, one 60 s ahead is
    not believed (no sample, timed by its arrival); a press before sample 0 has no sample
    and is dated by the device clock; a press made while disconnected and notified after
    the reconnection is placed exactly (the clock kept running). Battery without `notify`:
    read on every connection, not subscribed."""
    dev, rig = await make(battery_notify=False)
    dev.first_frame_delay_s = 1.2
    await wait_for(lambda: dev.cp_answers, "START answered")
    await asyncio.sleep(0.3)
    p1 = await dev.press()  # before any ECG frame: held
    await wait_for(lambda: rig.samples >= 2 * 78, "streaming")
    await wait_for(lambda: len(rig.of(ButtonPressed)) == 1, "press 1")
    first = next(f for f in dev.frames if f.delivered).first_a
    p2 = await dev.press()
    await wait_for(lambda: len(rig.of(ButtonPressed)) == 2, "press 2")
    await dev.inject("button", dev.press_value(p2))  # the same press notified twice
    p3 = await dev.press(at_a=dev.abs_sample_now() + 5 * FS)  # dated 5 s ahead
    p_far = await dev.press(at_a=dev.abs_sample_now() + 60 * FS)  # 60 s ahead
    sent_far = time.time()
    await wait_for(lambda: len(rig.of(ButtonPressed)) == 4, "presses 3 and far")
    p_early = await dev.press(at_a=first - 3 * FS)  # before sample 0
    await wait_for(lambda: len(rig.of(ButtonPressed)) == 5, "the early press")
    await dev.disconnect(away_s=1.0)
    await asyncio.sleep(0.4)
    p4 = await dev.press()  # while no gateway listens: kept, notified after reconnection
    await wait_for(lambda: len(rig.of(ButtonPressed)) == 6, "press 4", 10)
    await wait_for(lambda: rig.samples >= 6 * 78, "connection 2 streams")
    await rig.stop()

    e1, e2, e3, e_far, e_early, e4 = rig.of(ButtonPressed)
    assert rig.stat("presses_repeated") == 1
    for e, p in ((e2, p2), (e3, p3), (e4, p4)):
        assert e.press_id == p.press_id
        assert e.seq == p.a - first, (e, p)
        assert e.device_time == pytest.approx(p.device_time_ns / 1e9 + EPOCH_2000_POSIX, abs=1e-6)
        assert e.time == pytest.approx(t0_of(rig) + e.seq / FS, abs=1e-3)
    assert e1.press_id == 1
    if p1.a >= first:  # pressed during the first frame's samples: placed
        assert e1.seq == p1.a - first
    else:  # before the first sample: no sample, dated by the device clock
        assert e1.seq is None
        assert e1.time == pytest.approx(t0_of(rig) + (p1.a - first) / FS, abs=1e-2)
    assert e1.device_time == pytest.approx(p1.device_time_ns / 1e9 + EPOCH_2000_POSIX, abs=1e-6)
    assert e_far.press_id == p_far.press_id and e_far.seq is None
    assert e_far.time == pytest.approx(sent_far, abs=0.2)  # not believed: its arrival
    assert e_early.press_id == p_early.press_id and e_early.seq is None
    assert e_early.time == pytest.approx(t0_of(rig) - 3.0, abs=1e-2)  # by the device clock
    assert p4.notified_conn == 2 and e4.seq in range(*gaps(rig)[0][:2])
    assert rig.stat("values_malformed") == 0
    assert ("subscribe", "battery:notify") not in dev.ops
    assert dev.ops.count(("read", "battery")) == 2
    assert [e.percent for e in rig.of(BatteryLevel)] == [87, 87]


async def test_device_without_pmd_service_is_retried(make) -> None:
    """ "Services and characteristics": no PMD control point / data -> disconnected at once
    ("no Polar PMD service"), a failed connection, tried again with backoff."""
    dev, rig = await make(driver_kw={}, pmd=False)
    await wait_for(lambda: len(rig.of(Disconnected)) >= 2, "two attempts", 10)
    await rig.stop()
    assert all(r == "no Polar PMD service" for r in rig.reasons()[:2]), rig.reasons()
    assert dev.commands == []
    assert rig.sink.blocks == []


async def test_minimal_device_streams(make) -> None:
    """ "Minimal device": the PMD service alone is enough; only its two subscriptions and
    START are performed; a 4-byte answer indicated before the Write Response is taken; the
    configured address is matched in any case ("Finding the device")."""
    dev, rig = await make(
        heart_rate=False,
        battery=None,
        device_info={},
        button=False,
        settings={"address_lower": True},
    )
    dev.short_answers = True  # "At least 4 bytes"
    dev.answer_before_response = True  # "The indication MAY come before ... the Write Response"
    await wait_for(lambda: rig.samples >= 3 * 78, "streaming")
    seq_of = continuous(dev)
    cutoff = await settle(rig, seq_of)
    await rig.stop()
    assert dev.ops[:4] == [
        ("connect", "1"),
        ("subscribe", "pmd_cp:indicate"),
        ("subscribe", "pmd_data:notify"),
        ("write", START_ECG.hex(" ")),
    ]
    assert rig.address == dev.address.lower() != dev.address
    assert dev.cp_answers == [bytes.fromhex("f0 02 00 00"), bytes.fromhex("f0 03 00 00")]
    check_samples(rig, seq_of, cutoff)
    assert rig.of(HeartRate) == [] and rig.of(BatteryLevel) == []
    assert rig.stat("values_malformed") == 0


async def test_clock_steps_and_an_absurd_timestamp(make) -> None:
    """ "Sample numbering and gaps" with clock steps a device SHOULD NOT make, as the
    document says the gateway takes them: one absurd timestamp (an hour ahead) is not
    believed and the frame is placed once the next shows nothing missing; a clock step
    forward of 2 s is a (false) gap of 260 samples; a step back of 1 s is a clock step,
    followed, nothing missed by the gateway's clock; a step forward of 60 s is found from
    two frames that agree, followed, and nothing is lost."""
    dev, rig = await make(max_frame_samples=40)
    dev.timestamp_offsets[3] = 3600 * 10**9
    dev.clock_steps[6] = 2 * 10**9
    dev.clock_steps[9] = -(10**9)
    dev.clock_steps[12] = 60 * 10**9
    await wait_for(lambda: len(dev.frames) >= 18, "18 frames")
    want, want_gaps, counts = predict(dev.frames)
    # the document's rules, worked by hand for 40-sample frames
    assert want_gaps == [(6 * 40, 6 * 40 + 260, JUMP)]
    assert counts == {"frames_duplicate": 0, "timestamps_rejected": 2, "clock_steps": 2}
    assert len(want) == len(dev.frames) * 40
    cutoff = await settle_to(rig, max(want) + 1)
    await rig.stop()

    assert rig.stat("timestamps_rejected") == 2 and rig.stat("clock_steps") == 2
    assert rig.stat("frames_duplicate") == 0
    assert gaps(rig) == want_gaps
    check_expected(rig, want, cutoff)


async def test_gateway_restart_resumes_the_numbering(make) -> None:
    """ "Gateway restart": the next driver goes on from where the numbering stood; the first
    frame after the restart is placed by its arrival, the samples between are a gap "gateway
    not running"; the device sees a STOP and then a new connection."""
    dev, rig1 = await make()
    await wait_for(lambda: rig1.samples >= 3 * 78, "driver 1 streams")
    seq_of = continuous(dev)
    cutoff1 = await settle(rig1, seq_of)
    await rig1.stop()
    position = rig1.driver.position()
    assert position.next_seq == rig1.end_seq
    await wait_for(lambda: not dev.streaming, "STOP")
    await asyncio.sleep(1.0)
    n_before = len(dev.frames)
    _, rig2 = await make(dev=dev, driver_kw={**FAST, "resume": position})
    await wait_for(lambda: rig2.samples >= 3 * 78, "driver 2 streams")
    first = next(f for f in dev.frames[n_before:] if f.delivered)
    # placed by its arrival: its last sample at the arrival time
    start = position.next_seq + round((first.at - (first.n - 1) / FS - position.utc) * FS)
    (gap,) = rig2.sink.gaps
    assert gap.reason == "gateway not running"
    assert gap.first_seq == position.next_seq
    assert gap.end_seq == pytest.approx(start, abs=3)

    def seq_of2(_f: FrameLog, a: int) -> int:
        return gap.end_seq + a - first.first_a

    cutoff2 = await settle(rig2, seq_of2)
    await rig2.stop()
    check_samples(rig1, seq_of, cutoff1)
    got2 = received(rig2)
    want2 = expected(dev.frames[n_before:], seq_of2)
    assert {s: want2.get(s) for s in got2} == got2
    assert all(s in got2 for s in want2 if s < cutoff2)
    assert dev.commands == [START_ECG, STOP_ECG, START_ECG, STOP_ECG]


FAILURES = {
    "battery_read": "Read 00002a19-0000-1000-8000-00805f9b34fb failed: ",
    "button_subscribe": "Subscribe c2360002-8ad6-4484-a212-d9b0c62eba76 failed: ",
    "start_write": "Write fb005c81-02e7-f387-1cad-8acd2d8df0c8 failed: ",
    "battery_read_timeout": "Read 00002a19-0000-1000-8000-00805f9b34fb failed: ",
}


async def fail_a_gatt_operation(make, failure: str) -> tuple[CleanPolarDevice, Rig]:
    """A device one of whose GATT operations fails (an ATT error, or no answer within
    connect_timeout_s = 1 s), read by a driver until it has tried twice."""
    att_error = 0x80  # an application error
    kw: dict[str, Any] = {"button_cccd_error": att_error} if failure == "button_subscribe" else {}
    dev, rig = await make(driver_kw={}, settings={"connect_timeout_s": 1.0}, **kw)
    dev.battery_read_error = att_error if failure == "battery_read" else None
    dev.cp_write_error = att_error if failure == "start_write" else None
    dev.battery_read_hangs = failure == "battery_read_timeout"
    await wait_for(lambda: len(rig.of(Disconnected)) >= 2, "two attempts", 10)
    await rig.stop()
    return dev, rig


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failing_gatt_operation_ends_the_connection(make, failure) -> None:
    """ "Present means working": a GATT operation answered with an ATT error, or not within
    connect_timeout_s, ends the connection, which is retried: the device never streams."""
    dev, rig = await fail_a_gatt_operation(make, failure)
    assert dev.frames == [] and rig.sink.blocks == []
    assert dev.connections >= 2
    if failure == "battery_read_timeout":  # the reason as documented
        assert all(r.startswith(FAILURES[failure]) for r in rig.reasons()[:2]), rig.reasons()
        drop = dev.op_at[dev.ops.index(("disconnect", "1"))]
        read = dev.op_at[dev.ops.index(("read", "battery"))]
        assert 1.0 <= drop - read <= 1.3


@pytest.mark.parametrize("failure", list(FAILURES)[:3])
async def test_a_failing_gatt_operation_is_reported_with_its_operation_and_uuid(
    make, failure
) -> None:
    """ "Declared means working": the reason is "<Subscribe|Read|Write> <uuid> failed: ..."
    also for an ATT error (the virtual radio raises it as bleak does over BlueZ)."""
    _dev, rig = await fail_a_gatt_operation(make, failure)
    assert all(r.startswith(FAILURES[failure]) for r in rig.reasons()[:2]), rig.reasons()
