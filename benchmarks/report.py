"""What every benchmark reports: the exact command, the machine, then its tables (markdown).

BENCHMARKS.md quotes these reports as they are printed, so that each number can be traced
to the command and machine that produced it.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path


def header(machine_details: str = "") -> list[str]:
    """The ``Command:`` and ``Machine:`` lines for the running benchmark script;
    ``machine_details`` (e.g. ", 24 records, channel 0.") ends the machine line."""
    cmd = " ".join(["python3", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    return [
        f"Command: `{cmd}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}{machine_details}",
    ]


def publish(lines: list[str], markdown: Path | None = None) -> int:
    """Print the report and, when asked, write it to ``markdown``; the exit status (0)."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if markdown is not None:
        markdown.write_text(text)
    return 0
