"""Shared DSP test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="session")
def mitdb119() -> dict:
    """30 s of MIT-BIH record 119, channel 0, in mV, with reference beats (see tests/data)."""
    z = np.load(DATA / "mitdb119_excerpt.npz")
    mv = (z["adu"].astype(np.float64) - float(z["baseline"])) / float(z["gain"])
    return {"mv": mv, "fs": float(z["fs"]), "beats": z["beats"], "symbols": z["symbols"]}
