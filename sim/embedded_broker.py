"""A throw-away MQTT broker on a free loopback port, for the demo.

mosquitto when it is installed (a temporary configuration: loopback only,
anonymous, no persistence), else the small pure-Python broker in
:mod:`sim.broker`, so the demo runs on any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

__all__ = ["EmbeddedBroker", "find_mosquitto"]

_START_LIMIT_S = 10.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """``async with EmbeddedBroker() as b: ... b.url`` — a broker for this process only.

    Parameters
    ----------
    prefer
        ``"auto"`` (mosquitto when installed, else Python), ``"mosquitto"`` or ``"python"``.
    """

    def __init__(self, prefer: Literal["auto", "mosquitto", "python"] | str = "auto") -> None:
        if prefer not in ("auto", "mosquitto", "python"):
            raise ValueError(f"prefer must be auto, mosquitto or python, not {prefer!r}")
        self.prefer = prefer
        self.kind = ""
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._mini: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        exe = find_mosquitto() if self.prefer in ("auto", "mosquitto") else None
        if self.prefer == "mosquitto" and exe is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        if exe is not None:
            await asyncio.to_thread(self._start_mosquitto, exe)
        else:
            from sim.broker import MiniBroker

            self._mini = MiniBroker(self.host, 0)
            self.port = await self._mini.start()
            self.kind = "python"

    def _start_mosquitto(self, exe: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ecg-broker-")
        d = Path(self._tmp.name)
        self.port = _free_port()
        log = d / "mosquitto.log"
        conf = d / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {log}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot read tmp
        conf.write_text("\n".join(lines) + "\n")
        # its own session: a Ctrl-C at the terminal stops the demo, which then stops the
        # broker last (not the broker first, under a gateway still sending)
        self._proc = subprocess.Popen(
            [exe, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_LIMIT_S
        while not _accepts(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                text = log.read_text(errors="replace") if log.exists() else ""
                self._stop_mosquitto()
                raise RuntimeError(f"mosquitto did not start: {err.strip()} {text.strip()}")
            time.sleep(0.02)
        self.kind = "mosquitto"

    def _stop_mosquitto(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    async def stop(self) -> None:
        if self._mini is not None:
            await self._mini.stop()
            self._mini = None
        await asyncio.to_thread(self._stop_mosquitto)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
