"""`ecg-gateway analyze` on a WFDB record written from the MIT-BIH 119 excerpt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main

wfdb = pytest.importorskip("wfdb")
DATA = Path(__file__).parent.parent / "data"


def test_analyze_writes_qrs_and_rhythm_annotations(tmp_path: Path, capsys) -> None:
    z = np.load(DATA / "mitdb119_excerpt.npz")
    mv = (z["adu"].astype(np.float64) - float(z["baseline"])) / float(z["gain"])
    wfdb.wrsamp(
        "ex119",
        fs=360,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=mv[:, None],
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "ex119"), "--out", str(out)]) == 0
    qrs = wfdb.rdann(str(out / "ex119"), "qrs")
    ref = z["beats"]
    hits = sum(np.abs(qrs.sample - r).min() <= 54 for r in ref)
    assert hits >= len(ref) - 1 and len(qrs.sample) <= len(ref) + 1
    rhy = wfdb.rdann(str(out / "ex119"), "rhy")
    assert rhy.symbol[0] == "+" and rhy.aux_note[0].startswith("(N")
    assert "beats:" in capsys.readouterr().out


def test_analyze_missing_channel_is_a_clear_error(tmp_path: Path) -> None:
    wfdb.wrsamp(
        "z",
        fs=250,
        units=["mV"],
        sig_name=["I"],
        p_signal=np.zeros((500, 1)),
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    with pytest.raises(SystemExit, match="no channel 3"):
        main(["analyze", str(tmp_path / "z"), "--channel", "3", "--out", str(tmp_path)])


def test_analyze_reads_edf(tmp_path: Path) -> None:
    from wfdb.io.convert.edf import wfdb_to_edf

    z = np.load(DATA / "mitdb119_excerpt.npz")
    mv = (z["adu"].astype(np.float64) - float(z["baseline"])) / float(z["gain"])
    wfdb.wrsamp(
        "ex",
        fs=360,
        units=["mV"],
        sig_name=["MLII"],
        p_signal=mv[:, None],
        fmt=["16"],
        write_dir=str(tmp_path),
    )
    edf = tmp_path / "ex.edf"
    wfdb_to_edf(str(tmp_path / "ex"), output_filename=str(edf))
    out = tmp_path / "out"
    assert main(["analyze", str(edf), "--out", str(out)]) == 0
    qrs = wfdb.rdann(str(out / "ex"), "qrs")
    assert abs(len(qrs.sample) - len(z["beats"])) <= 1


def test_analyze_a_gateway_recording_with_a_hole(tmp_path: Path, capsys) -> None:
    """A record the gateway wrote (WFDB, "no sample" where nothing arrived): the hole is a
    gap, not a flat line — no pause invented across it, beats on both sides found."""
    from core.block import SampleBlock
    from gateway.analyze import analyze_signal
    from gateway.recording import RecordingStore
    from sim.synth import EcgSynth

    fs = 250.0
    synth = EcgSynth(fs, ("ECG",), hr_bpm=70, seed=3)
    x = synth.generate(int(60 * fs)).astype(np.float64)
    store = RecordingStore(tmp_path / "rec", "p1")
    for a in range(0, x.shape[0], 250):
        if not 20 * fs <= a < 30 * fs:  # 10 s never received
            store.write(SampleBlock(x[a : a + 250], fs, 1.79e9 + a / fs, a, ("ECG",), "p1"))
    store.close()
    record = store.records()[0].with_suffix("")
    out = tmp_path / "out"
    assert main(["analyze", str(record), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "missing: 10.0 s in 1 gap(s)" in printed
    qrs = wfdb.rdann(str(out / record.name), "qrs").sample
    truth = synth.beats_seq
    outside = truth[(truth < 20 * fs - 50) | (truth >= 30 * fs + 3 * fs)]
    found = sum(np.abs(qrs - t).min() <= 0.15 * fs for t in outside)
    assert found >= len(outside) - 2  # beats either side of the hole
    assert not ((qrs >= 20 * fs) & (qrs < 30 * fs)).any()  # none inside it
    res = analyze_signal(wfdb.rdrecord(str(record)).p_signal[:, 0], fs)
    assert not [e for e in res.episodes if e.kind == "pause"]  # the hole is not a pause
    assert res.gaps == [(int(20 * fs), int(30 * fs))]


def test_analyze_writes_beat_classes(tmp_path: Path) -> None:
    """119 has ventricular bigeminy: its V beats come out as V in .qrs."""
    z = np.load(DATA / "mitdb119_excerpt.npz")
    mv = (z["adu"].astype(np.float64) - float(z["baseline"])) / float(z["gain"])
    wfdb.wrsamp(
        "ex119", fs=360, units=["mV"], sig_name=["MLII"], p_signal=mv[:, None], fmt=["16"],
        write_dir=str(tmp_path),
    )  # fmt: skip
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "ex119"), "--out", str(out)]) == 0
    qrs = wfdb.rdann(str(out / "ex119"), "qrs")
    assert set(qrs.symbol) <= set("NSVQ")
    ref_v = z["beats"][z["symbols"] == "V"]
    ours_v = qrs.sample[np.array(qrs.symbol) == "V"]
    assert sum(np.abs(ours_v - r).min() <= 54 for r in ref_v) >= len(ref_v) - 1
    assert len(ours_v) <= len(ref_v) + 1


def test_analyze_classifies_beats_on_two_leads_when_the_record_has_them(
    tmp_path: Path, capsys
) -> None:
    """A two-channel record: beats are detected on --channel and classified on both
    (the two-lead forest) unless --second-channel none asks for one lead, as a patch."""
    z = np.load(DATA / "mitdb119_excerpt.npz")
    mv = (z["adu"].astype(np.float64) - float(z["baseline"])) / float(z["gain"])
    two = np.column_stack([mv, 0.6 * mv])  # a second lead of the same heart
    wfdb.wrsamp(
        "ex2", fs=360, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=two,
        fmt=["16", "16"], write_dir=str(tmp_path),
    )  # fmt: skip
    ref_v = z["beats"][z["symbols"] == "V"]
    one_lead = ["--second-channel", "none"]
    for option, said in (([], "beat classes also on channel 1"), (one_lead, "")):
        out = tmp_path / f"out{len(option)}"
        assert main(["analyze", str(tmp_path / "ex2"), "--out", str(out), *option]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert (said in first) if said else "also on" not in first
        qrs = wfdb.rdann(str(out / "ex2"), "qrs")
        ours_v = qrs.sample[np.array(qrs.symbol) == "V"]
        assert sum(np.abs(ours_v - r).min() <= 54 for r in ref_v) >= len(ref_v) - 1
    with pytest.raises(SystemExit, match="no channel 5"):
        main(["analyze", str(tmp_path / "ex2"), "--second-channel", "5", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="auto or none"):
        main(["analyze", str(tmp_path / "ex2"), "--second-channel", "x", "--out", str(tmp_path)])


LTAFDB = Path(__file__).resolve().parents[3] / "shared" / "data" / "ltafdb"


def test_analyze_beats_of_an_annotation_file_ltafdb(tmp_path: Path, capsys) -> None:
    """--beats atr on the first 47 min of LTAFDB record 110 (annotations only, no signal):
    the AF the annotators marked (30.8-43.1 and 43.1-47.0 min) is found in .rhy."""
    if not (LTAFDB / "110.atr").exists():
        pytest.skip("shared LTAFDB data not here")
    import shutil

    ann = wfdb.rdann(str(LTAFDB / "110"), "atr")
    fs = 128.0
    keep = ann.sample < int(47.0 * 60 * fs)
    shutil.copy(LTAFDB / "110.hea", tmp_path / "110.hea")
    wfdb.wrann(
        "110", "atr", ann.sample[keep], symbol=list(np.array(ann.symbol)[keep]),
        aux_note=list(np.array(ann.aux_note)[keep]), fs=fs, write_dir=str(tmp_path),
    )  # fmt: skip
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "110"), "--beats", "atr", "--out", str(out)]) == 0
    assert not (out / "110.qrs").exists()
    rhy = wfdb.rdann(str(out / "110"), "rhy")
    n = int(47.0 * 60 * fs)
    got = np.zeros(n, bool)
    ref = np.zeros(n, bool)
    ref[int(30.78 * 60 * fs) :] = True
    notes = zip(rhy.sample, rhy.symbol, rhy.aux_note, strict=True)
    marks = [(s, a) for s, y, a in notes if y == "+"]
    for (s, a), (e, _) in zip(marks, [*marks[1:], (n, "")], strict=True):
        if a == "(AFIB":
            got[s:e] = True
    assert (got & ref).sum() >= 0.9 * ref.sum() and (got & ref).sum() >= 0.9 * got.sum()
    assert "beats of 'atr'" in capsys.readouterr().out


def _analyze_in_a_process(args: list[str], tmp_path: Path, *, without_wfdb: bool = False):
    """``ecg-gateway analyze ARGS`` in a fresh interpreter (optionally one where
    ``import wfdb`` fails, as without the records extra: a shim package first on the path)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    path = [str(root)]
    if without_wfdb:
        shim = tmp_path / "shim" / "wfdb"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "__init__.py").write_text("raise ImportError(\"No module named 'wfdb'\")\n")
        path.insert(0, str(shim.parent))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "analyze", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_analyze_without_the_records_extra_names_it(tmp_path: Path) -> None:
    wfdb.wrsamp("z", fs=250, units=["mV"], sig_name=["I"], p_signal=np.zeros((500, 1)),
                fmt=["16"], write_dir=str(tmp_path))  # fmt: skip
    for record in ("z", "z.edf"):
        r = _analyze_in_a_process([record], tmp_path, without_wfdb=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "pip install 'ecg-gateway[records]'" in r.stderr


def test_analyze_a_missing_record_names_the_path(tmp_path: Path) -> None:
    for record, missing in (("gone/rec", "gone/rec.hea"), ("gone/rec.hea", "gone/rec.hea"),
                            ("gone.edf", "gone.edf")):  # fmt: skip
        r = _analyze_in_a_process([record], tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"{record}: no such record ({missing} not found)" in r.stderr
    (tmp_path / "half.hea").write_text("half 1 250 500\nhalf.dat 16 1000 16 0 0 0 0 I\n")
    r = _analyze_in_a_process(["half"], tmp_path)  # a header whose signal file is missing
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "half: cannot read the record" in r.stderr


def test_a_ventricular_run_inside_af_is_marked_then_af_again() -> None:
    """As the MIT-BIH annotators mark 203: (AFIB, (VT for the run, (AFIB again."""
    from dsp.rhythm import RhythmEpisode
    from gateway.analyze import AnalysisResult

    episodes = [
        RhythmEpisode("af", 1000, 9000, 0.9, {}),
        RhythmEpisode("vt", 4000, 4500, 1.0, {}),
    ]
    res = AnalysisResult(np.zeros(0, np.int64), episodes, 10_000, 250.0)
    assert res.rhythm_changes() == [
        (0, "(N"), (1000, "(AFIB"), (4000, "(VT"), (4500, "(AFIB"), (9000, "(N"),
    ]


def test_a_pause_note_says_when_part_of_it_had_no_signal() -> None:
    """A pause over seconds with no signal at all (flat, saturated) says so in .rhy: the
    reader knows beats may have come unseen."""
    from dsp.rhythm import RhythmEpisode
    from gateway.analyze import pause_note

    quiet = RhythmEpisode("pause", 100, 1600, details={"duration_s": 6.0})
    lost = RhythmEpisode("pause", 100, 1600, details={"duration_s": 5.82, "signal_lost_s": 1.2})
    assert pause_note(quiet) == "PAUSE 6.0 s"
    assert pause_note(lost) == "PAUSE 5.8 s (no signal 1.2 s)"
