"""``ecg-gateway analyze RECORD``: the streaming DSP run offline over a recording.

Reads a WFDB record (``RECORD`` is the path without extension, as PhysioNet
tools take it) or an EDF/EDF+ file (``.edf``), runs exactly the code the
gateway runs live — the QRS detector fed 1-second blocks, then the rhythm
tracker — and writes WFDB annotation files next to each other in ``--out``:

- ``<name>.qrs``: one ``N`` annotation per detected beat, at its R peak;
- ``<name>.rhy``: rhythm changes as ``+`` with aux notes ``(AFIB``, ``(SBR``
  (rate below the bradycardia limit), ``(SVTA`` (rate above the tachycardia
  limit; the rate criterion only, QRS width is not assessed), ``(N`` (none of
  these), and pauses as ``"`` notes ``PAUSE 3.4 s``.

Missing samples (WFDB "no sample", as in the gateway's own recordings under
``<state_dir>/recordings``) are gaps: the recorded stretches are analysed apart, as the
live gateway does, and the summary gives how much was missing.

Score them with PhysioNet's tools, e.g. ``bxb -r 100 -a atr qrs``. Needs the
``records`` extra (wfdb).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.ranges import runs_of
from dsp.qrs import Beats, QrsDetector
from dsp.rhythm import RhythmEpisode, RhythmTracker

__all__ = ["AnalysisResult", "add_parser", "analyze_signal", "run_analyze"]

_AUX = {"af": "(AFIB", "brady": "(SBR", "tachy": "(SVTA"}
_PRIORITY = ("af", "tachy", "brady")


class AnalysisResult:
    """Beats (sample indices) and rhythm episodes of one channel."""

    def __init__(
        self,
        beats: np.ndarray,
        episodes: list[RhythmEpisode],
        n: int,
        fs: float,
        recorded: list[tuple[int, int]] | None = None,
    ):
        self.beats = beats
        self.episodes = episodes
        self.n = n
        self.fs = fs
        #: Half-open sample ranges that were recorded (the rest is missing).
        self.recorded = recorded if recorded is not None else [(0, n)]

    @property
    def missing_samples(self) -> int:
        return self.n - sum(b - a for a, b in self.recorded)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Half-open sample ranges with no recorded sample."""
        out, at = [], 0
        for a, b in [*self.recorded, (self.n, self.n)]:
            if a > at:
                out.append((at, a))
            at = b
        return out

    def rhythm_changes(self) -> list[tuple[int, str]]:
        """(sample, aux) at each change of the dominant rhythm label, starting at 0."""
        marks: list[tuple[int, int, str]] = []  # (sample, +1/-1, kind)
        for ep in self.episodes:
            if ep.kind in _AUX:
                marks.append((ep.start_seq, 1, ep.kind))
                marks.append((ep.end_seq if ep.end_seq is not None else self.n, -1, ep.kind))
        marks.sort(key=lambda m: (m[0], m[1]))
        active: dict[str, int] = dict.fromkeys(_AUX, 0)
        out: list[tuple[int, str]] = [(0, "(N")]
        for sample, delta, kind in marks:
            active[kind] += delta
            label = next((_AUX[k] for k in _PRIORITY if active[k] > 0), "(N")
            if label != out[-1][1]:
                if out[-1][0] == sample:
                    out[-1] = (sample, label)
                else:
                    out.append((sample, label))
        return out


def analyze_signal(
    x_mv: np.ndarray,
    fs: float,
    *,
    brady_bpm: float = 40.0,
    tachy_bpm: float = 150.0,
    pause_s: float = 3.0,
) -> AnalysisResult:
    """Run the streaming detector and rhythm tracker over one channel (mV), in 1 s blocks.

    Missing samples (NaN, e.g. WFDB "no sample" in a gateway recording) are a gap, as in
    the live gateway: the recorded runs either side are analysed as separate stretches
    (no beat, interval or pause is made up across a gap; open episodes end where it begins).
    """
    x = np.asarray(x_mv, dtype=np.float64)
    det = QrsDetector(fs)
    rt = RhythmTracker(fs, brady_bpm=brady_bpm, tachy_bpm=tachy_bpm, pause_s=pause_s)
    step = max(int(round(fs)), 1)
    parts: list[Beats] = []
    runs = list(runs_of(np.isfinite(x), 0))  # the recorded stretches
    for k, (a, b) in enumerate(runs):
        for i in range(a, b, step):
            beats = det.process_array(x[i : min(i + step, b)], i)
            rt.process(beats)
            parts.append(beats)
        tail = det.finish()  # the stretch ends: its last beats are final
        rt.process(tail)
        parts.append(tail)
        if k < len(runs) - 1:
            rt.finish(b)  # episodes end where the gap begins
    rt.finish(x.size)
    return AnalysisResult(Beats.concat(parts, fs).seq, rt.episodes, x.size, fs, runs)


def _read(record: str, channel: int) -> tuple[np.ndarray, float, str]:
    try:
        import wfdb
    except ImportError:  # pragma: no cover - depends on the installation
        raise SystemExit("analyze needs wfdb: pip install 'ecg-gateway[records]'") from None
    path = Path(record)
    if path.suffix.lower() == ".edf":
        rec = wfdb.io.convert.edf.read_edf(str(path))
    else:
        rec = wfdb.rdrecord(str(path.with_suffix("")) if path.suffix == ".hea" else record)
    if rec.p_signal is None:
        raise SystemExit(f"{record}: no physical signal")
    if not 0 <= channel < rec.p_signal.shape[1]:
        raise SystemExit(f"{record}: no channel {channel} (it has {rec.p_signal.shape[1]})")
    x = rec.p_signal[:, channel].astype(np.float64)  # NaN where no sample was recorded
    units = (rec.units or ["mV"] * rec.n_sig)[channel].lower()
    scale = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}.get(units, 1.0)
    return x * scale, float(rec.fs), path.stem if path.suffix else path.name


def run_analyze(args: argparse.Namespace) -> int:
    import wfdb

    x, fs, name = _read(args.record, args.channel)
    res = analyze_signal(x, fs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beats = res.beats
    if beats.size:
        wfdb.wrann(name, "qrs", beats, symbol=["N"] * beats.size, fs=fs, write_dir=str(out))
    changes = res.rhythm_changes()
    pauses = [e for e in res.episodes if e.kind == "pause"]
    rhy = sorted(
        [(s, "+", aux) for s, aux in changes]
        + [(e.start_seq, '"', f"PAUSE {e.details['duration_s']:.1f} s") for e in pauses]
    )
    wfdb.wrann(
        name,
        "rhy",
        np.array([r[0] for r in rhy], dtype=np.int64),
        symbol=[r[1] for r in rhy],
        aux_note=[r[2] for r in rhy],
        fs=fs,
        write_dir=str(out),
    )
    dur = res.n / fs
    recorded_s = (res.n - res.missing_samples) / fs
    hr = 60.0 * beats.size / recorded_s if recorded_s else float("nan")
    print(f"{args.record}: channel {args.channel}, {dur / 60:.1f} min at {fs:g} Hz")
    if res.gaps:
        missing = res.missing_samples / fs
        print(f"  missing: {missing:.1f} s in {len(res.gaps)} gap(s), not analysed")
    print(f"  beats: {beats.size} (mean {hr:.0f} bpm) -> {out / (name + '.qrs')}")
    for kind in ("af", "tachy", "brady", "pause"):
        eps = [e for e in res.episodes if e.kind == kind]
        total = sum(((e.end_seq or res.n) - e.start_seq) for e in eps) / fs
        print(f"  {kind:<6} {len(eps):>4} episode(s), {total:8.1f} s")
    print(f"  rhythm changes: {len(changes)} -> {out / (name + '.rhy')}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="run the streaming QRS and rhythm analysis over a WFDB or EDF record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("record", help="WFDB record path without extension, or an .edf file")
    p.add_argument("--channel", type=int, default=0, help="signal index (default 0)")
    p.add_argument("--out", type=Path, default=Path("."), help="where to write .qrs and .rhy")
    p.set_defaults(func=run_analyze)
