"""Polar PMD ECG frames → sequence-numbered sample blocks and final gaps (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.block import SampleBlock
from core.events import Gap, StreamPosition
from core.units import uv_to_mv
from drivers.polar_pmd import PmdEcgFrame, decode_ecg_frame

__all__ = ["PmdEcgStream"]


class PmdEcgStream:
    """Turns ECG frames into sequence-numbered blocks and gaps.

    Sequence numbers count samples at ``fs``. Between frames the device timestamps (ns of
    each frame's last sample, the device's own clock) say how many samples were missed:
    ``round(dt / period) - n`` for a frame of ``n`` samples; more than ``jitter_samples``
    is a final gap (PMD has no backfill), fewer is timing jitter. Frames have variable
    sizes (the H10 sends 5 to 73 samples when the link is busy), so the tolerance is fixed
    in samples, not a share of the frame: a lost notification of 5 samples is found, and
    later samples keep their true numbers.

    Every timestamp is judged against the host clock before it is believed: a device
    clock cannot advance more than the host's elapsed time (plus ``slack_s`` and 2 %).
    An out-of-line timestamp is not trusted (counted in :attr:`timestamps_rejected`): the
    reference moves on by the frame's own samples, so one bad value never shifts the rest
    of the recording, and the frame is held until the next one says where it lies. If
    nothing is missing before that next frame, the held frame was contiguous and is
    delivered in place; if samples are missing, the loss is next to a frame whose own time
    is unknown (before it or after it, nobody can tell), so the held frame's samples go
    into the gap with the lost ones rather than under numbers that may be wrong. Two
    out-of-line frames in a row whose timestamps agree with each other are a device clock
    that stepped forward: the held frame is believed after all, the clock is followed
    from it, and the samples missed at the step are measured by the host clock.

    A timestamp that goes back is a device clock set back, or a device restart (by more
    than ``reset_after_s``): the clock is followed from it, and the samples missed are
    measured by the host clock (under ``host_jitter_s`` of them is arrival jitter, not a
    loss). Every such step is counted in :attr:`clock_steps`. A frame that does not
    advance the clock and holds the same samples as the frame before (a repeat) is
    dropped, and counted in :attr:`duplicates`.

    UTC times: at the first frame the host time ``now`` is taken as the time of that
    frame's last sample; every later sample ``s`` is at ``start + s / fs``, so block
    starts are monotonic and the wall clock can step without moving the data.
    """

    def __init__(
        self,
        source: str,
        fs: float = 130.0,
        lead: str = "ECG",
        reset_after_s: float = 2.0,
        slack_s: float = 5.0,
        jitter_samples: int = 2,
        time_scale: float = 1.0,
        host_jitter_s: float = 0.25,
    ) -> None:
        self.source = source
        self.fs = float(fs)
        self.lead = lead
        self.reset_after_s = reset_after_s
        self.slack_s = slack_s
        self.jitter_samples = jitter_samples
        self.time_scale = time_scale  # device clock speed vs real time (simulations only)
        self.host_jitter_s = host_jitter_s
        self.duplicates = 0
        self.timestamps_rejected = 0
        self.clock_steps = 0
        self._period_ns = 1e9 / self.fs
        self._start_utc: float | None = None  # UTC of seq 0
        self._next_seq = 0
        self._last_ts: int | None = None
        self._last_now = 0.0
        self._resume: StreamPosition | None = None
        self._gap_reason = "pmd timestamp jump"
        self._untrusted = False  # the frame just judged had a timestamp not believed
        self._held: PmdEcgFrame | None = None  # such a frame, until the next one places it
        self._before_held = 0.0  # arrival of the frame before it (host s): measures a step
        self._step_missing: int | None = None  # a step just confirmed: missed before it
        self._last_uv: np.ndarray | None = None  # the last frame's samples: tells a repeat

    @property
    def has_clock(self) -> bool:
        """A frame has related the device's clock to sample numbers (device times, e.g.
        of button presses, can be placed)."""
        return self._last_ts is not None

    @property
    def next_seq(self) -> int:
        """Sequence number the next sample will get."""
        return self._next_seq

    def utc_of(self, seq: int) -> float:
        """UTC POSIX seconds of sample ``seq`` (after the first frame)."""
        if self._start_utc is None:
            raise RuntimeError("no frame seen yet")
        return self._start_utc + seq / self.fs

    def position(self) -> StreamPosition | None:
        """Where the stream stands (to number on after a gateway restart)."""
        if self._start_utc is None:
            return self._resume
        return StreamPosition(self._next_seq, self.utc_of(self._next_seq), 0, self.fs)

    def resume(self, pos: StreamPosition) -> None:
        """Number on from a previous gateway run: the first frame is placed by the host
        clock after ``pos`` and the samples between become a gap "gateway not running"."""
        self._resume = pos

    def seq_of_device_time(self, device_ns: int) -> int | None:
        """Sequence number nearest to a device time (ns since 2000), if known."""
        if self._last_ts is None:
            return None
        held = self._held.n if self._held is not None else 0
        return self._next_seq + held - 1 + round((device_ns - self._last_ts) / self._period_ns)

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> list[SampleBlock | Gap]:
        """Decode one data notification and advance; raises :class:`PmdDecodeError`."""
        return self.feed_frames([decode_ecg_frame(data)], now)

    def feed_frames(self, frames: Iterable[PmdEcgFrame], now: float) -> list[SampleBlock | Gap]:
        """Advance over decoded frames received at host time ``now``.

        Contiguous frames are merged into one block; the result is in order.
        """
        out: list[SampleBlock | Gap] = []
        run: list[np.ndarray] = []
        run_seq = self._next_seq

        def take(samples: np.ndarray) -> None:
            """Samples that follow on: numbered next, into the current block."""
            nonlocal run_seq
            if not run:
                run_seq = self._next_seq
            run.append(samples)
            self._next_seq += samples.shape[0]

        def lose(n: int) -> None:
            """``n`` samples missed: the block so far, then the gap."""
            if run:
                out.append(self._block(run, run_seq))
                run.clear()
            out.append(self._gap(n))

        for frame in frames:
            missing = self._missing_before(frame, now)
            if missing is None:
                continue
            held, self._held = self._held, None
            step, self._step_missing = self._step_missing, None
            if held is not None:  # the frame before had an untrusted time: place it now
                if step is not None:  # its time was right: the device clock stepped
                    if step > 0:
                        lose(step)
                    take(held.samples_uv)
                elif missing > 0:
                    missing += held.n  # lost next to it: its samples go into the gap
                else:
                    take(held.samples_uv)
            if self._untrusted:  # (its own ``missing`` is 0: it cannot be judged)
                self._held = frame
                self._last_now = now
                continue
            if missing > 0:
                lose(missing)
            take(frame.samples_uv)
            self._last_now = now
        if run:
            out.append(self._block(run, run_seq))
        return out

    def _gap(self, missing: int) -> Gap:
        first = self._next_seq
        self._next_seq += missing
        start, end = self.utc_of(first), self.utc_of(self._next_seq)
        reason, self._gap_reason = self._gap_reason, "pmd timestamp jump"
        return Gap(self.source, first, self._next_seq, start, end, reason=reason, final=True)

    def _missing_before(self, frame: PmdEcgFrame, now: float) -> int | None:
        """Samples missed before ``frame`` (0 if contiguous), None to drop it."""
        self._untrusted = False
        if self._last_ts is None:
            self._last_ts, self._last_uv = frame.timestamp_ns, frame.samples_uv
            return self._first(frame, now)
        dt_ns = frame.timestamp_ns - self._last_ts
        last, self._last_uv = self._last_uv, frame.samples_uv
        if dt_ns <= 0 and last is not None and np.array_equal(frame.samples_uv, last):
            self.duplicates += 1  # the same frame again
            return None
        if dt_ns <= 0:  # the device clock went back: set back, or the device restarted
            return self._clock_step(frame, now, self._last_now, dt_ns < -self.reset_after_s * 1e9)
        allowed = self._host_allows(now, self._last_now, frame.n)
        if dt_ns > allowed:
            held = self._held  # a frame held for its time (``_last_now``: its arrival)
            if held is not None and 0 < frame.timestamp_ns - held.timestamp_ns <= allowed:
                # the two agree: the device clock stepped forward at the held frame
                before = self._before_held
                self._step_missing = self._clock_step(held, self._last_now, before, False)
                return self._missing_before(frame, now)
            self.timestamps_rejected += 1
            self._untrusted = True
            self._before_held = self._last_now
            self._last_ts += round(frame.n * self._period_ns)
            return 0
        self._last_ts = frame.timestamp_ns
        missing = round(dt_ns / self._period_ns) - frame.n
        return missing if missing > self.jitter_samples else 0

    def _host_allows(self, now: float, since: float, n: int) -> float:
        """Most ns the device clock can have advanced from a frame received at ``since``
        to the end of a frame of ``n`` samples received at ``now``."""
        host_ns = (now - since + self.slack_s) * 1e9 * 1.02 * self.time_scale
        return host_ns + n * self._period_ns

    def _clock_step(self, frame: PmdEcgFrame, now: float, since: float, restart: bool) -> int:
        """The device clock stepped at ``frame`` (received at ``now``; the frame before at
        ``since``): it is followed from there, and the samples missed are measured by the
        host clock (0 within ``host_jitter_s``)."""
        self.clock_steps += 1
        self._last_ts = frame.timestamp_ns
        missing = round((now - since) * self.fs * self.time_scale) - frame.n
        if missing <= self.host_jitter_s * self.fs:
            return 0
        self._gap_reason = (
            "device restarted (pmd clock went back)" if restart else "pmd clock stepped"
        )
        return missing

    def _first(self, frame: PmdEcgFrame, now: float) -> int:
        """Place the first frame: at 0, or after a previous run's samples by the clock."""
        first_sample_utc = now - (frame.n - 1) / self.fs
        pos, self._resume = self._resume, None
        if pos is None:
            self._start_utc = first_sample_utc
            return 0
        self._next_seq = pos.next_seq
        self._start_utc = pos.utc - pos.next_seq / self.fs
        missing = max(0, round((first_sample_utc - pos.utc) * self.fs))
        if missing:
            self._gap_reason = "gateway not running"
        return missing

    def _block(self, run: list[np.ndarray], seq: int) -> SampleBlock:
        uv = np.concatenate(run) if len(run) > 1 else run[0]
        return SampleBlock(uv_to_mv(uv), self.fs, self.utc_of(seq), seq, (self.lead,), self.source)
