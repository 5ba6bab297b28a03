"""The layers of docs/architecture.md, checked: who imports whom, and what the runtime loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core", "dsp", "drivers", "gateway", "sim", "center"}
ALLOWED = {
    "core": set(),
    "dsp": {"core"},
    "drivers": {"core"},
    "gateway": {"core", "dsp", "drivers"},
    "center": {"dsp", "core"},
}
EXCEPTIONS = {"gateway/cli.py": {"sim"}}  # `ecg-gateway demo` imports the demo when it runs


def _imports(path: Path) -> set[str]:
    """Top-level packages of ours that ``path`` imports (at any depth in the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        bad = _imports(path) - ALLOWED[package] - {package} - EXCEPTIONS.get(rel, set())
        if bad:
            wrong.append(f"{rel} imports {sorted(bad)}")
    assert not wrong, "\n".join(wrong)


def test_the_runtime_loads_no_simulator_broker_or_scipy() -> None:
    code = (
        "import sys, gateway.app, gateway.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bumble', 'sim', 'scipy')"
        " or 'broker' in m or 'sim' in m.rsplit('.', 1)[-1])\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
