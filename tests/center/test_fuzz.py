"""Whatever a gateway (or an attacker with a gateway's credentials) sends, decoding either
gives a record or raises Reject — never another exception that could stop the ingest."""

from __future__ import annotations

import json
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from center.messages import Reject, decode
from center.store.db import open_engine, upgrade, writer
from center.store.ingest_writer import write_batch
from tests.center.conftest import load

P = "ecg/v1"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
BASES = {
    "patch-event": f"{P}/demo-gw/patch-1/event",
    "patch-study": f"{P}/demo-gw/patch-1/study",
    "status-online": f"{P}/demo-gw/status",
}


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "observation":
                out += _paths(v, (*prefix, k))
    return out


_engine = None


def _db():  # type: ignore[no-untyped-def]
    global _engine
    if _engine is None:
        _engine = open_engine(f"sqlite:///{tempfile.mkdtemp(prefix='center-fuzz-')}/f.db")
        upgrade(_engine)
    return _engine


@settings(max_examples=1500, deadline=None)
@given(base=st.sampled_from(sorted(BASES)), pick=st.integers(min_value=0), value=json_values)
def test_any_mutation_decodes_or_rejects(base: str, pick: int, value: object) -> None:
    """... and what decodes, the batch writer stores (or the whole batch would stall)."""
    body = load(base)
    paths = _paths(body)[1:]
    path = paths[pick % len(paths)]
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        item = decode(BASES[base], json.dumps(body).encode(), {}, P)
    except Reject:
        return
    with writer(_db()) as conn:
        write_batch(conn, [item], 1000.0)
