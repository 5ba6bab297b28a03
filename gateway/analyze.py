"""``ecg-gateway analyze RECORD``: the streaming DSP run offline over a recording.

Reads a WFDB record (``RECORD`` is the path without extension, as PhysioNet
tools take it) or an EDF/EDF+ file (``.edf``), runs exactly the code the
gateway runs live — the QRS detector fed 1-second blocks, the beat classifier,
the signal-quality tracker and the episode tracker — and writes WFDB annotation
files next to each other in ``--out``:

- ``<name>.qrs``: one annotation per detected beat, at its R peak, with its class:
  ``N`` (normal and other supraventricular), ``S`` (premature supraventricular),
  ``V`` (ventricular ectopic), ``Q`` (unclassifiable). Beats are detected on
  ``--channel``; classes are judged on it and, when the record has another channel, on
  that one too (``--second-channel``, default the first other channel: the two-lead
  forest, trained on MIT-BIH's second channel beside MLII, as a 12-lead cart's stream is
  classified on II and V1); ``--second-channel none`` judges one lead, as a patch does;
- ``<name>.rhy``: rhythm changes as ``+`` with aux notes ``(VT``, ``(AFIB``,
  ``(SVTA`` (a supraventricular run), ``(B`` (bigeminy), ``(T`` (trigeminy),
  ``(SBR`` (rate below the bradycardia limit), ``(TACHY`` (rate above the
  tachycardia limit, rhythm not otherwise labelled; not a PhysioNet code), ``(N``
  (none of these), by that priority (a ventricular run inside AF is marked ``(VT``,
  then ``(AFIB`` again, as the MIT-BIH annotators do); and pauses as ``"`` notes
  ``PAUSE 3.4 s`` (``PAUSE 5.8 s (no signal 1.2 s)`` when seconds of it had no signal
  at all: beats may have come unseen).

``--beats ANNOTATOR`` (e.g. ``--beats atr``) skips detection: the rhythm analysis
runs on the beats of that annotation file of the record, with the classes of its
own labels (N, S, V, Q by the AAMI grouping), and only ``<name>.rhy`` is written.
That needs only the header and the annotation file, not the signal (the Long-Term
AF Database as distributed here, for instance).

Missing samples (WFDB "no sample", as in the gateway's own recordings under
``<state_dir>/recordings``) are gaps: the recorded stretches are analysed apart, as the
live gateway does, and the summary gives how much was missing.

Score them with PhysioNet's tools, e.g. ``bxb -r 100 -a atr qrs``. Needs the
``records`` extra (wfdb).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from core.block import SampleBlock
from core.ranges import runs_of
from dsp.beat_class import BeatClassifier, ClassifiedBeats
from dsp.episodes import EpisodeTracker, RhythmLimits
from dsp.qrs import QrsDetector
from dsp.quality import QualityTracker
from dsp.rhythm import RhythmEpisode, RhythmTracker

__all__ = [
    "AnalysisResult",
    "add_parser",
    "analyze_annotations",
    "analyze_signal",
    "run_analyze",
]

_AUX = {
    "vt": "(VT",
    "af": "(AFIB",
    "svt": "(SVTA",
    "bigeminy": "(B",
    "trigeminy": "(T",
    "tachy": "(TACHY",
    "brady": "(SBR",
}
_PRIORITY = tuple(_AUX)  # the first open kind names the rhythm
_MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}


class AnalysisResult:
    """Beats (sample indices) with their classes, and rhythm episodes, of one channel."""

    def __init__(
        self,
        beats: np.ndarray,
        episodes: list[RhythmEpisode],
        n: int,
        fs: float,
        recorded: list[tuple[int, int]] | None = None,
        labels: tuple[str, ...] | None = None,
    ):
        self.beats = beats
        #: Class of each beat: N, S, V or Q.
        self.labels = labels if labels is not None else ("N",) * len(beats)
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
    limits: RhythmLimits | None = None,
) -> AnalysisResult:
    """Run the streaming detector, beat classifier, quality and episode trackers over one
    channel (mV), in 1 s blocks; ``x_mv`` of shape (n, 2) adds a second lead to the beat
    classifier (its two-lead forest), the beats being detected on the first.

    Missing samples (NaN, e.g. WFDB "no sample" in a gateway recording) are a gap, as in
    the live gateway: the recorded runs either side are analysed as separate stretches
    (no beat, interval or pause is made up across a gap; open episodes end where it begins).
    """
    x = np.asarray(x_mv, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    leads = ("ECG", "second")[: x.shape[1]]
    second = 1 if x.shape[1] > 1 else None
    det, quality = QrsDetector(fs), QualityTracker(fs, len(leads))
    cls = BeatClassifier(fs, len(leads), 0, second_lead=second)
    rt = RhythmTracker(EpisodeTracker(fs, limits or RhythmLimits(), quality=True))
    step = max(int(round(fs)), 1)
    parts: list[ClassifiedBeats] = []
    runs = list(runs_of(np.isfinite(x).all(axis=1), 0))  # the recorded stretches
    for k, (a, b) in enumerate(runs):
        for i in range(a, b, step):
            block = SampleBlock(x[i : min(i + step, b)], fs, i / fs, i, leads)
            classes = cls.process(block, det.process(block))
            rt.process(classes, quality.process(block))
            parts.append(classes)
        end = SampleBlock(x[b:b], fs, b / fs, b, leads)
        # the stretch ends: its last beats are final, the last one labelled
        for classes in (cls.process(end, det.finish()), cls.finish()):
            rt.process(classes)
            parts.append(classes)
        if k < len(runs) - 1:
            rt.finish(b)  # episodes end where the gap begins
    rt.finish(x.shape[0])
    found = ClassifiedBeats.concat(parts, fs)
    return AnalysisResult(found.seq, rt.episodes, x.shape[0], fs, runs, found.labels)


def analyze_annotations(
    samples: np.ndarray,
    symbols: list[str],
    n: int,
    fs: float,
    limits: RhythmLimits | None = None,
) -> AnalysisResult:
    """The episode tracker over the beats of an annotation file (no signal needed): beat
    classes from the labels (:data:`dsp.beat_class.ANNOTATION_CLASS`), non-beat
    annotations left out; ``n`` samples in the record."""
    beats = ClassifiedBeats.from_annotations(samples, symbols, fs)
    rt = RhythmTracker(EpisodeTracker(fs, limits or RhythmLimits()), max_episodes=1_000_000)
    step = 4096  # any cut gives the same episodes; bounded lists in flight
    for i in range(0, len(beats), step):
        sl = slice(i, i + step)
        rt.process(ClassifiedBeats(beats.seq[sl], beats.labels[sl], fs, beats.rr_s[sl]))
    rt.finish(n)
    return AnalysisResult(beats.seq, rt.episodes, n, fs, labels=beats.labels)


def _wfdb() -> Any:
    """The wfdb package, or the end of the command with a message naming the extra."""
    try:
        import wfdb
    except ImportError as exc:
        raise SystemExit(
            "ecg-gateway analyze needs the 'records' extra (the wfdb package), which is not "
            f"installed here ({exc}): pip install 'ecg-gateway[records]'"
        ) from None
    return wfdb


def _files_of(record: str) -> tuple[Path, Path]:
    """(what to read, the file that must exist) for a record path as given."""
    path = Path(record)
    if path.suffix.lower() == ".edf":
        return path, path
    base = path.with_suffix("") if path.suffix == ".hea" else path
    return base, base.with_name(base.name + ".hea")


def _read(record: str, channel: int, second: str) -> tuple[np.ndarray, float, str, list[int]]:
    """The record's detection ``channel`` and, per ``second`` (see ``--second-channel``),
    the beat classifier's second one: (n, 1 or 2) mV, its rate, its name, the channels."""
    wfdb = _wfdb()
    path = Path(record)
    base, needed = _files_of(record)
    if not needed.is_file():
        raise SystemExit(f"{record}: no such record ({needed} not found)")
    try:
        if path.suffix.lower() == ".edf":
            from wfdb.io.convert.edf import read_edf  # (not imported by `import wfdb`)

            rec = read_edf(str(base))
        else:
            rec = wfdb.rdrecord(str(base))
    except (OSError, ValueError) as exc:  # a signal file missing, a header that does not parse
        raise SystemExit(f"{record}: cannot read the record: {exc}") from None
    if rec.p_signal is None:
        raise SystemExit(f"{record}: no physical signal")
    n_sig = rec.p_signal.shape[1]
    channels = [channel, *_second(second, channel, n_sig)]
    for c in channels:
        if not 0 <= c < n_sig:
            raise SystemExit(f"{record}: no channel {c} (it has {n_sig})")
    x = rec.p_signal[:, channels].astype(np.float64)  # NaN where no sample was recorded
    units = rec.units or ["mV"] * rec.n_sig
    scale = np.array([_MV_PER_UNIT.get(units[c].lower(), 1.0) for c in channels])
    return x * scale, float(rec.fs), path.stem if path.suffix else path.name, channels


def _second(second: str, channel: int, n_sig: int) -> list[int]:
    """The beat classifier's second channel: ``auto`` the record's first other channel (as
    the two-lead forest was trained: MIT-BIH's second channel beside MLII), ``none`` no
    second lead (one lead, as a patch records), or a channel number."""
    if second == "none":
        return []
    if second == "auto":
        return [c for c in range(n_sig) if c != channel][:1]
    try:
        return [int(second)]
    except ValueError:
        raise SystemExit(f"--second-channel {second!r}: a channel number, auto or none") from None


def run_analyze(args: argparse.Namespace) -> int:
    """``ecg-gateway analyze``; a missing extra or record ends it with a message (exit 1)."""
    wfdb = _wfdb()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.beats:
        res, fs, name = _from_annotations(args.record, args.beats)
        print(f"{args.record}: beats of '{args.beats}', {res.n / fs / 60:.1f} min at {fs:g} Hz")
    else:
        x, fs, name, channels = _read(args.record, args.channel, args.second_channel)
        res = analyze_signal(x, fs)
        beats = res.beats
        if beats.size:
            wfdb.wrann(name, "qrs", beats, symbol=list(res.labels), fs=fs, write_dir=str(out))
        also = f" (beat classes also on channel {channels[1]})" if channels[1:] else ""
        print(f"{args.record}: channel {channels[0]}{also}, {res.n / fs / 60:.1f} min at {fs:g} Hz")
    _write_rhythm(res, name, fs, out)
    _summary(res, fs, out, name, qrs=not args.beats)
    return 0


def _from_annotations(record: str, annotator: str) -> tuple[AnalysisResult, float, str]:
    wfdb = _wfdb()
    path = str(Path(record).with_suffix("")) if record.endswith(".hea") else record
    try:
        header = wfdb.rdheader(path)
        ann = wfdb.rdann(path, annotator)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{record}: {exc}") from None
    fs = float(header.fs)
    n = int(header.sig_len or (ann.sample[-1] + 1 if len(ann.sample) else 0))
    return analyze_annotations(ann.sample, ann.symbol, n, fs), fs, Path(path).name


def pause_note(e: RhythmEpisode) -> str:
    """A pause's ``.rhy`` note: its length, and the seconds of it with no signal at all
    (every lead flat or saturated: beats may have come unseen), e.g. ``PAUSE 5.8 s (no
    signal 1.2 s)``."""
    note = f"PAUSE {e.details['duration_s']:.1f} s"
    lost = e.details.get("signal_lost_s")
    return f"{note} (no signal {lost:.1f} s)" if lost else note


def _write_rhythm(res: AnalysisResult, name: str, fs: float, out: Path) -> None:
    wfdb = _wfdb()
    changes = res.rhythm_changes()
    pauses = [e for e in res.episodes if e.kind == "pause"]
    rhy = sorted(
        [(s, "+", aux) for s, aux in changes]
        + [(e.start_seq, '"', pause_note(e)) for e in pauses]
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


def _summary(res: AnalysisResult, fs: float, out: Path, name: str, *, qrs: bool) -> None:
    beats = res.beats
    recorded_s = (res.n - res.missing_samples) / fs
    hr = 60.0 * beats.size / recorded_s if recorded_s else float("nan")
    if res.gaps:
        missing = res.missing_samples / fs
        print(f"  missing: {missing:.1f} s in {len(res.gaps)} gap(s), not analysed")
    where = f" -> {out / (name + '.qrs')}" if qrs else ""
    print(f"  beats: {beats.size} (mean {hr:.0f} bpm){where}")
    classes = {c: res.labels.count(c) for c in "NSVQ"}
    print("  classes: " + ", ".join(f"{c} {k}" for c, k in classes.items()))
    for kind in ("af", "af_rvr", "vt", "svt", "bigeminy", "trigeminy", "tachy", "brady", "pause"):
        eps = [e for e in res.episodes if e.kind == kind]
        total = sum(((e.end_seq or res.n) - e.start_seq) for e in eps) / fs
        print(f"  {kind:<9} {len(eps):>5} episode(s), {total:9.1f} s")
    print(f"  rhythm changes: {len(res.rhythm_changes())} -> {out / (name + '.rhy')}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="run the streaming QRS and rhythm analysis over a WFDB or EDF record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("record", help="WFDB record path without extension, or an .edf file")
    p.add_argument("--channel", type=int, default=0, help="signal index (default 0)")
    p.add_argument(
        "--second-channel",
        default="auto",
        metavar="N|auto|none",
        help="second lead for the beat classes (default auto: the record's first other "
        "channel, if any; none: one lead, as a patch records)",
    )
    p.add_argument("--out", type=Path, default=Path("."), help="where to write .qrs and .rhy")
    p.add_argument(
        "--beats",
        metavar="ANNOTATOR",
        help="analyse the beats of this annotation file of the record (e.g. atr) instead "
        "of detecting them; writes .rhy only, needs no signal",
    )
    p.set_defaults(func=run_analyze)
