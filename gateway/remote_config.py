"""Remote configuration from the monitoring center (issue #14): receive, validate, apply,
roll back, report.

The center publishes a gateway's configuration retained, QoS 1, on
``{prefix}/{gateway}/config`` (``ecg-center/config/v1``: ``version``, ``config``); the
broker's ACL lets only the center's identity write it. The gateway:

1. **validates** it with its own pydantic schema (:func:`gateway.config.parse_config`) after
   putting its own ``[gateway]`` and ``[mqtt]`` sections back (those never come from afar,
   so a remote change cannot cut the gateway off its broker); a document naming them, for
   another gateway, without a version, or invalid is **refused** with the reason;
2. **applies** it atomically: ``<state_dir>/remote-config.json`` (written whole, fsync'ed)
   marks a trial, then the devices are stopped, flushed and started from the new
   configuration in the running process (the MQTT session stays up);
3. **rolls back** when a configured device delivers no sample within ``up_timeout_s``: the
   previous configuration comes back the same way, and the version is reported as
   ``rolled_back`` with the devices that did not come up. A gateway that restarts during a
   trial starts on the previous configuration (the trial is rolled back);
4. **reports** ``config_version`` (applied; None = its own file only) and ``remote_config``
   (``applied_version``, ``last``: version, outcome applied/refused/rolled_back, reason, at)
   in the status's ``health``.

A version equal to the applied one (the retained message again at each connection), older,
or already refused or rolled back is ignored. :func:`decide` is the pure part; the
:class:`RemoteConfig` shell keeps the state and runs the trial.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.atomic_file import write_atomic
from core.units import iso_utc
from gateway.config import ConfigError, GatewayConfig, parse_config

__all__ = ["CONFIG_SCHEMA", "Apply", "Ignore", "Refuse", "RemoteConfig", "decide", "not_up"]

log = logging.getLogger(__name__)

CONFIG_SCHEMA = "ecg-center/config/v1"
LOCAL_ONLY = ("gateway", "mqtt")
STATE_FILE = "remote-config.json"


@dataclass(frozen=True)
class Apply:
    """Try this configuration (``remote``: the document's part) as ``version``."""

    version: int
    cfg: GatewayConfig
    remote: dict[str, Any]


@dataclass(frozen=True)
class Refuse:
    """Not applicable; reported in the status with ``reason``."""

    version: int | None
    reason: str


@dataclass(frozen=True)
class Ignore:
    """Nothing to do (already applied, older, already refused)."""

    reason: str


def not_up(channels: Mapping[str, Any]) -> list[str]:
    """Devices whose channel has delivered no sample since it was made (pure)."""
    return [d for d, ch in channels.items() if ch.stats()["samples"] == 0]


def local_sections(cfg: GatewayConfig) -> dict[str, Any]:
    """The sections that stay on the gateway, as a mapping ``parse_config`` takes back."""
    return {k: getattr(cfg, k).model_dump(mode="json") for k in LOCAL_ONLY}


def merged(base: GatewayConfig, remote: dict[str, Any], source: str) -> GatewayConfig:
    """The base's own sections plus the remote part, validated (ConfigError if not)."""
    return parse_config({**remote, **local_sections(base)}, source)


def decide(payload: bytes, base: GatewayConfig, state: dict[str, Any]) -> Apply | Refuse | Ignore:
    """What to do with one config message (pure; ``state`` as kept in the state file)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return Refuse(None, "not JSON")
    if not isinstance(body, dict) or body.get("schema") != CONFIG_SCHEMA:
        return Refuse(None, f"not a configuration document (schema {CONFIG_SCHEMA})")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return Refuse(None, "the document has no version (a positive integer)")
    if body.get("gateway_id") != base.gateway.id:
        return Refuse(version, f"the document is for gateway {body.get('gateway_id')!r}")
    applied = state.get("applied_version") or 0
    if version == applied:
        return Ignore(f"version {version} is applied")
    if version < applied:
        return Ignore(f"version {version} is older than the applied {applied}")
    last = state.get("last") or {}
    if last.get("version") == version and last.get("outcome") in ("refused", "rolled_back"):
        return Ignore(f"version {version} was {last['outcome']} already")
    config = body.get("config")
    if not isinstance(config, dict):
        return Refuse(version, "the document has no config object")
    local = [k for k in LOCAL_ONLY if k in config]
    if local:
        return Refuse(version, f"{', '.join(local)} may only be set in the gateway's own file")
    try:
        cfg = merged(base, config, f"remote configuration version {version}")
    except ConfigError as exc:
        return Refuse(version, "; ".join(exc.problems))
    return Apply(version, cfg, config)


class RemoteConfig:
    """The state file, the decisions and the trial (see the module docstring).

    Parameters
    ----------
    base
        The configuration from the gateway's own file.
    up_timeout_s
        How long every configured device has to deliver samples after a change, s.
    clock
        UTC POSIX seconds now.
    """

    def __init__(self, base: GatewayConfig, *, up_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.base = base
        self.up_timeout_s = up_timeout_s
        self.clock = clock
        self.path = Path(base.gateway.state_dir) / STATE_FILE
        self.topic = f"{base.mqtt.topic_prefix}/{base.gateway.id}/config"
        self.state: dict[str, Any] = self._load()
        self._pending: Apply | None = None
        self._wake = asyncio.Event()
        #: Called after each outcome (the app posts a status at once).
        self.notify: Callable[[], None] = lambda: None

    # --- state ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.state, indent=1).encode(), 0o600)

    def _outcome(self, version: int | None, outcome: str, reason: str = "") -> None:
        self.state["last"] = {"version": version, "outcome": outcome, "reason": reason or None,
                              "at": iso_utc(self.clock())}
        (log.info if outcome == "applied" else log.warning)(
            "remote configuration version %s %s%s", version, outcome,
            f": {reason}" if reason else "")

    def effective(self) -> GatewayConfig:
        """The configuration to start with: the applied remote one, else the base. A trial
        interrupted by a restart is rolled back."""
        trial = self.state.pop("trial", None)
        if trial is not None:
            self._outcome(trial.get("version"), "rolled_back",
                          "the gateway restarted before the devices came up")
            self._save()
        remote = self.state.get("config")
        if not isinstance(remote, dict):
            return self.base
        try:
            return merged(self.base, remote, "stored remote configuration")
        except ConfigError as exc:  # the gateway's own file changed under it
            self._outcome(self.state.get("applied_version"), "refused",
                          "; ".join(exc.problems))
            self.state.update(applied_version=None, config=None)
            self._save()
            return self.base

    def status(self) -> dict[str, Any]:
        """``config_version`` and ``remote_config`` for the status's health."""
        return {"config_version": self.state.get("applied_version"),
                "remote_config": {"applied_version": self.state.get("applied_version"),
                                  "last": self.state.get("last"),
                                  "trial": (self.state.get("trial") or {}).get("version")}}

    # --- messages (from the publisher's subscription, on the event loop) ------------------------
    def on_publish(self, packet: Any) -> None:
        """The publisher's subscription handler (a PUBLISH with ``topic`` and ``payload``)."""
        self.on_message(packet.topic, packet.payload)

    def on_message(self, topic: str, payload: bytes) -> Apply | Refuse | Ignore:
        """Decide; record a refusal; queue an application for :meth:`run`."""
        decision = decide(payload, self.base, self.state)
        if isinstance(decision, Refuse):
            self._outcome(decision.version, "refused", decision.reason)
            self._save()
            self.notify()
        elif isinstance(decision, Apply):
            self._pending = decision
            self._wake.set()
        else:
            log.debug("remote configuration: %s", decision.reason)
        return decision

    # --- the trial ---------------------------------------------------------------------------
    async def run(self, reconfigure: Callable[[GatewayConfig], Awaitable[None]],
                  not_up: Callable[[], list[str]]) -> None:
        """Apply what :meth:`on_message` queued, one at a time, until cancelled.
        ``not_up`` names the configured devices that have delivered no sample yet."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            todo, self._pending = self._pending, None
            if todo is not None:
                await self._trial(todo, reconfigure, not_up)

    async def _trial(self, todo: Apply, reconfigure: Callable[[GatewayConfig], Awaitable[None]],
                     not_up: Callable[[], list[str]]) -> None:
        self.state["trial"] = {"version": todo.version, "config": todo.remote}
        self._save()
        await reconfigure(todo.cfg)
        missing = await self._wait_up(not_up)
        self.state.pop("trial", None)
        if not missing:
            self.state.update(applied_version=todo.version, config=todo.remote)
            self._outcome(todo.version, "applied")
        else:
            await reconfigure(self.effective())
            self._outcome(todo.version, "rolled_back",
                          f"no samples from {', '.join(missing)} within {self.up_timeout_s:g} s")
        self._save()
        self.notify()

    async def _wait_up(self, not_up: Callable[[], list[str]]) -> list[str]:
        deadline = asyncio.get_running_loop().time() + self.up_timeout_s
        while (missing := not_up()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        return missing
