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
