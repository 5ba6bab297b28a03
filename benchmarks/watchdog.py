"""How long a frozen gateway stays frozen before systemd decides to restart it.

Usage::

    python3 benchmarks/watchdog.py [--watchdog-s 30] [--trials 5] [--seed 1] [--markdown F]

A child process does what ``ecg-gateway run`` does for the watchdog: faulthandler on, and
:func:`gateway.systemd_notify.feed_watchdog` on its asyncio loop, with the environment
systemd gives a ``Type=notify`` service (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``). After
WatchdogSec plus a random part of a ping interval (so at a random phase), it freezes the
loop (``time.sleep`` in a callback, as a blocking call in the gateway would). The parent
plays systemd: it reads the notify socket and decides on a restart when no ``WATCHDOG=1``
came for ``--watchdog-s`` after the last one (systemd's watchdog timer), then sends
SIGABRT (systemd's default ``WatchdogSignal=``) and looks for the frozen callback in the
child's stderr (the stacks faulthandler prints). Reported per trial: how long after the
last ping the loop froze, and the time from the freeze to the restart decision; systemd
then starts the gateway again ``RestartSec=`` (5 s) later.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from gateway.systemd_notify import Notifier, WatchdogFeeder, feed_watchdog

_STARTUP_S = 30.0  # the child's first ping comes within this (interpreter start-up), s


# --- the child: a gateway-like loop that freezes -------------------------------------------
def _freeze(seconds: float) -> None:
    print(f"FROZEN {time.monotonic():.6f}", flush=True)
    time.sleep(seconds)  # the loop is stuck here: no task, no ping


async def _child(freeze_after_s: float, watchdog_s: float) -> None:
    feeder = WatchdogFeeder.from_environ()
    task = asyncio.create_task(feed_watchdog(Notifier.from_environ(), feeder))
    asyncio.get_running_loop().call_later(freeze_after_s, _freeze, 10 * watchdog_s)
    await asyncio.sleep(freeze_after_s + 1.0)
    task.cancel()


# --- the parent: systemd's side ----------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    pings: int  # WATCHDOG=1 received before the restart decision
    frozen_after_ping_s: float  # last ping -> freeze
    freeze_to_decision_s: float
    stack_shown: bool  # the child's stderr names the frozen callback


def _watch(sock: socket.socket, watchdog_s: float) -> tuple[int, float, float]:
    """Read pings until none came for ``watchdog_s``: (pings, last ping, decision time)."""
    pings, last = 0, time.monotonic()
    deadline = last + _STARTUP_S
    while True:
        sock.settimeout(max(0.0, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return pings, last, time.monotonic()
        if b"WATCHDOG=1" in data.split(b"\n"):
            pings, last = pings + 1, time.monotonic()
            deadline = last + watchdog_s


def run_trial(watchdog_s: float, freeze_after_s: float) -> Trial:
    with tempfile.TemporaryDirectory(prefix="wd-") as tmp:
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
        argv = [sys.executable, __file__, "--child", str(freeze_after_s), "--watchdog-s"]
        proc = subprocess.Popen(
            [*argv, str(watchdog_s)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            pings, last, decided = _watch(sock, watchdog_s)
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
            sock.close()
    frozen = float(out.decode().split()[1])
    return Trial(pings, frozen - last, decided - frozen, b"in _freeze" in err)


def _table(watchdog_s: float, trials: list[Trial]) -> list[str]:
    lines = [
        f"WatchdogSec = {watchdog_s:g} s, a ping every {watchdog_s / 2:g} s (WATCHDOG_USEC / 2):",
        "",
        "| trial | pings before the freeze | loop froze after the last ping (s) "
        "| freeze → restart decision (s) | SIGABRT stack names the frozen callback |",
        "| ---: | ---: | ---: | ---: | :---: |",
    ]
    for i, t in enumerate(trials, 1):
        lines.append(
            f"| {i} | {t.pings} | {t.frozen_after_ping_s:.2f} | {t.freeze_to_decision_s:.2f} "
            f"| {'yes' if t.stack_shown else 'no'} |"
        )
    d = [t.freeze_to_decision_s for t in trials]
    lines += [
        "",
        f"Freeze → restart decision: {min(d):.2f} to {max(d):.2f} s (expected "
        f"{watchdog_s / 2:g} to {watchdog_s:g} s: WatchdogSec minus the time since the "
        f"last ping); the gateway runs again RestartSec = 5 s after that.",
    ]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--watchdog-s", type=float, default=30.0, help="WatchdogSec (default 30)")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)  # freeze after, s
    args = ap.parse_args()
    if args.child is not None:
        faulthandler.enable()
        asyncio.run(_child(args.child, args.watchdog_s))
        return 0
    rng = random.Random(args.seed)
    trials = [
        run_trial(args.watchdog_s, args.watchdog_s + rng.uniform(0.0, args.watchdog_s / 2))
        for _ in range(args.trials)
    ]
    return report.publish([*report.header(), "", *_table(args.watchdog_s, trials)], args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
