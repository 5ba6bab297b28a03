"""Host and device health facts for the status (issue #14): pure parsers + thin readers.

What a fleet operator needs to act *before* something runs out, in the retained status
(``health`` for the host, a few keys per device):

- disk free under the state directory, MB and %, against the outbox and recording quotas;
- CPU temperature (°C, ``/sys/class/thermal/thermal_zone0/temp`` in millidegrees) and the
  Raspberry Pi firmware's throttling flags (``get_throttled`` bits: under-voltage, frequency
  capped, throttled, soft temperature limit; now and since boot) when the files exist;
- clock synchronisation (``timedatectl show -p NTPSynchronized``, else the kernel's
  ``adjtimex`` state: ``TIME_ERROR`` or ``STA_UNSYNC`` mean not synchronised);
- the client certificate's expiry (days left) and the software and configuration versions;
- per device: battery %, electrode contact, RSSI (dBm, when known), link up for how long.

Parsers take text and return values; readers do the I/O and never raise (a fact that cannot
be read is None). Nothing heavy is imported: the certificate's end date comes from the
``openssl`` command, once per change of the file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CPU_TEMP_PATH",
    "THROTTLED_PATHS",
    "HostHealth",
    "cert_days_left",
    "device_health",
    "parse_cpu_temp",
    "parse_ntp_synchronized",
    "parse_openssl_enddate",
    "parse_throttled",
]

CPU_TEMP_PATH = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED_PATHS = (Path("/sys/devices/platform/soc/soc:firmware/get_throttled"),)
_THROTTLE_BITS = {
    0: "under_voltage_now", 1: "freq_capped_now", 2: "throttled_now", 3: "soft_temp_limit_now",
    16: "under_voltage_since_boot", 17: "freq_capped_since_boot",
    18: "throttled_since_boot", 19: "soft_temp_limit_since_boot",
}
CLOCK_EVERY_S = 300.0
"""The clock state is asked at most this often (a subprocess), s."""


# --- pure parsers -----------------------------------------------------------------------------
def parse_cpu_temp(text: str) -> float | None:
    """Millidegrees Celsius (thermal zone file) to °C, one decimal; None if not a number."""
    try:
        return round(int(text.strip()) / 1000.0, 1)
    except ValueError:
        return None


def parse_throttled(text: str) -> dict[str, bool] | None:
    """The firmware's throttled word (hex, ``0x50005`` or ``throttled=0x50005``) to flags."""
    value = text.strip().rpartition("=")[2]
    try:
        word = int(value, 16)
    except ValueError:
        return None
    return {name: bool(word >> bit & 1) for bit, name in _THROTTLE_BITS.items()}


def parse_ntp_synchronized(text: str) -> bool | None:
    """``timedatectl show`` output (``NTPSynchronized=yes``, or just ``yes``) to a bool."""
    for line in text.splitlines():
        value = line.strip().rpartition("=")[2].strip().lower()
        named = line.strip().startswith("NTPSynchronized=") or "=" not in line
        if named and value in ("yes", "no"):
            return value == "yes"
    return None


def cert_days_left(not_after: float | None, now: float) -> float | None:
    """Days from ``now`` to ``not_after`` (POSIX s), one decimal; None when unknown."""
    return None if not_after is None else round((not_after - now) / 86400.0, 1)


def device_health(last_event: Mapping[str, Mapping[str, Any]], now: float) -> dict[str, Any]:
    """A device's health from the last event of each kind its channel saw (pure).

    ``battery_pct``; ``contact`` (False when the patch says lead off or the Heart Rate
    service says no skin contact); ``rssi_dbm`` when a driver reported one; ``link_up_s``:
    seconds since the link came up, None while it is down."""
    battery = last_event.get("battery") or {}
    hr = last_event.get("heart_rate") or {}
    contact = None
    if battery.get("lead_off") is not None:
        contact = not battery["lead_off"]
    elif hr.get("contact") is not None:
        contact = bool(hr["contact"])
    lead_off = last_event.get("lead_off")
    if lead_off is not None and lead_off.get("leads"):
        contact = False
    up, down = last_event.get("connected"), last_event.get("disconnected")
    link_up = None
    if up is not None and (down is None or down.get("time", 0) <= up.get("time", 0)):
        link_up = round(max(0.0, now - float(up.get("time", now))), 1)
    rssi = (last_event.get("rssi") or {}).get("dbm")
    return {"battery_pct": battery.get("percent"), "contact": contact, "rssi_dbm": rssi,
            "link_up_s": link_up}


# --- thin readers -------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def read_clock_synchronized() -> bool | None:
    """timedatectl's NTPSynchronized, else the kernel's adjtimex state; None if neither."""
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized"],
                             capture_output=True, text=True, timeout=3)
        if out.returncode == 0:
            found = parse_ntp_synchronized(out.stdout)
            if found is not None:
                return found
    except (OSError, subprocess.SubprocessError):
        pass
    return _adjtimex_synchronized()


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_long * 40)]


def _adjtimex_synchronized() -> bool | None:
    """``adjtimex`` with no change: TIME_ERROR (5) or STA_UNSYNC (0x40) mean unsynchronised."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        tx = _Timex()
        state = ctypes.CDLL(name, use_errno=True).adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != 5 and not tx.status & 0x40


def parse_openssl_enddate(text: str) -> float | None:
    """``notAfter=Dec  1 17:59:08 2036 GMT`` (``openssl x509 -enddate``) to POSIX s."""
    value = text.strip().partition("=")[2]
    try:
        return float(ssl.cert_time_to_seconds(value))
    except ValueError:
        return None


def read_cert_not_after(path: Path) -> float | None:
    """The certificate's notAfter (POSIX s), None when it cannot be read. Asks the
    ``openssl`` command (once per file change, see :class:`HostHealth`) rather than importing
    ``cryptography``, which would add about 7 MB to the running gateway."""
    try:
        out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", str(path)],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_openssl_enddate(out.stdout) if out.returncode == 0 else None


@dataclass
class HostHealth:
    """The host part of the status; slow facts cached (see the module docstring).

    Parameters
    ----------
    state_dir
        Where disk space is measured.
    quota_mb
        What the outbox and the recordings may take there, MB.
    cert_file
        The MQTT client certificate (None: no certificate).
    version
        Software version; ``config_version`` is called for the configuration's.
    """

    state_dir: Path
    quota_mb: float
    cert_file: Path | None
    version: str
    config_version: Callable[[], dict[str, Any]] = dict
    clock: Callable[[], float] = time.time
    read_clock: Callable[[], bool | None] = read_clock_synchronized
    _clock_at: float = -1e18
    _clock_synced: bool | None = None
    _cert_key: tuple[int, int] | None = None
    _cert_not_after: float | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_config(cls, cfg: Any, *, config_version: Callable[[], dict[str, Any]] = dict,
                   clock: Callable[[], float] = time.time) -> HostHealth:
        """The host facts of a gateway configuration (quotas: outbox + recordings)."""
        from gateway import __version__

        quota = cfg.gateway.outbox_max_mb + (
            cfg.recording.max_mb * len(cfg.devices) if cfg.recording.enabled else 0.0)
        return cls(cfg.gateway.state_dir, quota, cfg.mqtt.cert_file, __version__,
                   config_version=config_version, clock=clock)

    def _disk(self) -> dict[str, Any] | None:
        try:
            use = shutil.disk_usage(self.state_dir)
        except OSError:
            return None
        free_mb = use.free / 1e6
        return {"free_mb": round(free_mb, 1), "total_mb": round(use.total / 1e6, 1),
                "free_pct": round(100.0 * use.free / use.total, 1) if use.total else None,
                "quota_mb": round(self.quota_mb, 1)}

    def _cert(self, now: float) -> dict[str, Any] | None:
        if self.cert_file is None:
            return None
        try:
            st = self.cert_file.stat()
        except OSError:
            return {"file": str(self.cert_file), "not_after": None, "days_left": None}
        key = (st.st_mtime_ns, st.st_size)
        if key != self._cert_key:
            self._cert_key, self._cert_not_after = key, read_cert_not_after(self.cert_file)
        return {"file": str(self.cert_file), "not_after": self._cert_not_after,
                "days_left": cert_days_left(self._cert_not_after, now)}

    def facts(self) -> dict[str, Any]:
        """The ``health`` object of the status (JSON-ready)."""
        now = self.clock()
        if now - self._clock_at >= CLOCK_EVERY_S:
            self._clock_at, self._clock_synced = now, self.read_clock()
        throttled = next((parse_throttled(t) for p in THROTTLED_PATHS
                          if (t := _read(p)) is not None), None)
        temp = _read(CPU_TEMP_PATH)
        return {
            "disk": self._disk(),
            "cpu": {"temp_c": None if temp is None else parse_cpu_temp(temp),
                    "throttled": throttled},
            "clock": {"synchronized": self._clock_synced},
            "certificate": self._cert(now),
            "software_version": self.version,
            **self.config_version(),
        }
