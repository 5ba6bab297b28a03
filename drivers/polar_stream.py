"""Polar PMD ECG frames → sequence-numbered sample blocks and final gaps (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.block import SampleBlock
from core.events import Gap
from core.units import uv_to_mv
from drivers.polar_pmd import PmdEcgFrame, decode_ecg_frame

__all__ = ["PmdEcgStream"]


class PmdEcgStream:
    """Turns ECG frames into sequence-numbered blocks and gaps.

    Sequence numbers count samples at ``fs`` since the first frame. Between
    frames the device timestamps say how many samples were missed: if the
    timestamp advanced by more than the frame's own samples plus
    ``gap_tolerance`` sample periods, a :class:`Gap` covers the missing ones
    (PMD has no backfill, so gaps are final). Smaller deviations are timing
    jitter or device clock drift and are absorbed.

    UTC times: at the first frame the host time ``now`` is taken as the time
    of that frame's last sample; every later sample ``s`` is then at
    ``start + s / fs``, so block starts are monotonic and the wall clock can
    step without moving the data. (The device clock's rate error, tens of ppm,
    accumulates as a few seconds per day.)

    A frame whose timestamp does not advance (duplicate) is dropped and
    counted in :attr:`duplicates`. If the device clock jumps backwards by more
    than ``reset_after_s`` (device restart), the missed time is estimated from
    the host clock instead.
    """

    def __init__(
        self,
        source: str,
        fs: float = 130.0,
        lead: str = "ECG",
        gap_tolerance: int | None = None,
        reset_after_s: float = 2.0,
    ) -> None:
        self.source = source
        self.fs = float(fs)
        self.lead = lead
        self.gap_tolerance = gap_tolerance
        self.reset_after_s = reset_after_s
        self.duplicates = 0
        self._period_ns = 1e9 / self.fs
        self._start_utc: float | None = None  # UTC of seq 0
        self._next_seq = 0
        self._last_ts: int | None = None
        self._last_now = 0.0

    @property
    def next_seq(self) -> int:
        """Sequence number the next sample will get."""
        return self._next_seq

    def utc_of(self, seq: int) -> float:
        """UTC POSIX seconds of sample ``seq`` (after the first frame)."""
        if self._start_utc is None:
            raise RuntimeError("no frame seen yet")
        return self._start_utc + seq / self.fs

    def seq_of_device_time(self, device_ns: int) -> int | None:
        """Sequence number nearest to a device time (ns since 2000), if known."""
        if self._last_ts is None:
            return None
        return self._next_seq - 1 + round((device_ns - self._last_ts) / self._period_ns)

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
        for frame in frames:
            missing = self._missing_before(frame, now)
            if missing is None:
                continue
            if missing > 0:
                if run:
                    out.append(self._block(run, run_seq))
                    run = []
                gap_first = self._next_seq
                self._next_seq += missing
                out.append(
                    Gap(
                        self.source,
                        gap_first,
                        self._next_seq,
                        self.utc_of(gap_first),
                        self.utc_of(self._next_seq),
                        reason="pmd timestamp jump",
                        final=True,
                    )
                )
            if not run:
                run_seq = self._next_seq
            run.append(frame.samples_uv)
            self._next_seq += frame.n
            self._last_ts = frame.timestamp_ns
            self._last_now = now
        if run:
            out.append(self._block(run, run_seq))
        return out

    def _missing_before(self, frame: PmdEcgFrame, now: float) -> int | None:
        """Samples missed before ``frame`` (0 if contiguous), None to drop it."""
        if self._last_ts is None:
            self._start_utc = now - (frame.n - 1) / self.fs
            return 0
        dt_ns = frame.timestamp_ns - self._last_ts
        tolerance = self.gap_tolerance
        if tolerance is None:
            tolerance = max(2, frame.n // 2)
        if dt_ns < -self.reset_after_s * 1e9:
            elapsed = round((now - self._last_now) * self.fs)
            missing = elapsed - frame.n
        elif dt_ns <= 0:
            self.duplicates += 1
            return None
        else:
            missing = round(dt_ns / self._period_ns) - frame.n
        return missing if missing > tolerance else 0

    def _block(self, run: list[np.ndarray], seq: int) -> SampleBlock:
        uv = np.concatenate(run) if len(run) > 1 else run[0]
        return SampleBlock(uv_to_mv(uv), self.fs, self.utc_of(seq), seq, (self.lead,), self.source)
