"""Preflight: every check ``ecg-gateway run`` makes before it touches a device.

``ecg-gateway config check FILE`` parses the file and runs :func:`preflight`; it exits 78
(EX_CONFIG) listing every problem, and 0 only when the service will start.
``ecg-gateway run`` calls :func:`check_before_run`, which runs the same checks, fixes
what it safely can (creates the state directory 0700, takes group and world access off
a state directory it owns) and refuses to start (exit 78) on anything else.

Checks, each on the configuration and the file system as *this process* sees them
(the only write is a probe file in the state directory, removed at once):

- **MQTT credentials**: every file named in ``[mqtt]`` exists and is readable by this
  user; the password and key files are readable by their owner only (the same rule
  :mod:`gateway.mqtt.credentials` enforces); then
  :func:`~gateway.mqtt.credentials.check_credentials` loads them as the publisher will
  (PEM contents, key matching certificate).
- **State directory**: exists or can be created by this user, is a directory, is
  writable (a real probe: read-only mounts, a full disk and systemd's sandbox all show),
  is not group/world accessible (fixed or refused), and what is in it (outbox database,
  recordings, study records) is writable by this user (a gateway once started as root
  leaves root-owned files that the service user cannot write).
- **Serial ports** (warnings only: the cart may be unplugged): the port's directory and
  the port exist, and this user may read and write it.
- **Bluetooth** (warning): BLE devices need the ``bluetooth`` group (BlueZ's D-Bus policy).
- **Cart frames**: this build's decoder accepts the largest 12-lead ECG frame the protocol
  allows (:func:`max_ecg_samples`; ``docs/protocols/cart-serial.md``), a self-check of the
  installed gateway against its protocol.

:func:`check_as_user` runs the whole check as another user (the service user under
sudo); see its docstring for why it drops privileges instead of computing permissions.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.cart_protocol import MAX_BODY, CartDecoder, EcgMsg, encode_ecg
from gateway.config import (
    CartSerialDevice,
    ConfigError,
    DeviceConfig,
    GatewayConfig,
    MqttConfig,
    PatchDevice,
    PolarPmdDevice,
    load_config,
)
from gateway.mqtt.credentials import check_credentials
from gateway.mqtt.errors import PublisherError

__all__ = [
    "SERVICE_USER",
    "Problem",
    "Report",
    "check_as_user",
    "check_before_run",
    "check_config_file",
    "max_ecg_samples",
    "preflight",
]

SERVICE_USER = "ecg-gateway"
"""The user the systemd unit runs the gateway as (``User=`` in systemd/ecg-gateway.service)."""

_SECRETS = ("password_file", "key_file")  # readable by their owner only
_TLS_ONLY = ("ca_file", "cert_file", "key_file")
_STATE_ENTRIES = ("recordings", "study", "continuity")  # their entries are written too
_ECG_OVERHEAD = 11  # body bytes of an ECG frame besides samples: header 4, first 4, n 1, CRC 2
_INT24 = 0x010101  # a sample without zero bytes (worst case for COBS)


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about ``where`` (a key path or a file); ``fatal`` ones stop the gateway."""

    where: str
    text: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{'error' if self.fatal else 'warning'}: {self.where}: {self.text}"


@dataclass(frozen=True, slots=True)
class Report:
    """What ``config check`` found: as whom, the problems, and what the file configures
    (``summary``; None when it does not parse)."""

    checked_as: str
    problems: tuple[Problem, ...]
    summary: str | None = None

    @property
    def fatal(self) -> bool:
        """Whether the gateway would refuse to start (exit 78)."""
        return any(p.fatal for p in self.problems)

    def to_json(self) -> bytes:
        problems = [[p.where, p.text, p.fatal] for p in self.problems]
        return json.dumps([self.checked_as, problems, self.summary]).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Report:
        checked_as, problems, summary = json.loads(data)
        return cls(checked_as, tuple(Problem(*p) for p in problems), summary)


# --- the checks ----------------------------------------------------------------------------
def preflight(cfg: GatewayConfig, *, fix: bool = False) -> list[Problem]:
    """Every check ``run`` makes before it touches a device (see the module docstring).

    ``fix``: create a missing state directory (0700) and take group/world access off one
    this user owns, instead of reporting it (what ``run`` does; ``config check`` does not).
    """
    return [
        *_credentials(cfg.mqtt),
        *_state_dir(cfg.gateway.state_dir, fix=fix),
        *_serial_ports(cfg.devices),
        *_bluetooth_group(cfg.devices),
        *_cart_frames(cfg.devices),
    ]


def check_before_run(cfg: GatewayConfig) -> list[Problem]:
    """``ecg-gateway run``'s preflight: :func:`preflight` with fixes, plus a warning when
    started as root (files it creates are then root's, and the service user cannot use
    them). Start only if no problem is ``fatal``."""
    problems = preflight(cfg, fix=True)
    if os.geteuid() == 0:
        problems.append(
            Problem(
                "ecg-gateway run",
                f"running as root: what it writes in {cfg.gateway.state_dir} will be root's; "
                f"run the service (User={SERVICE_USER}) instead",
                fatal=False,
            )
        )
    return problems


def check_config_file(path: Path) -> Report:
    """``config check`` as this process: parse ``path``, then :func:`preflight`."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return Report(_who(), tuple(Problem(str(path), p) for p in exc.problems))
    summary = f"gateway {cfg.gateway.id}, {len(cfg.devices)} device(s), broker {cfg.mqtt.url}"
    return Report(_who(), tuple(preflight(cfg)), summary)


def max_ecg_samples(n_leads: int, max_body: int = MAX_BODY) -> int:
    """Most samples an ECG frame of ``n_leads`` leads may carry with its body within
    ``max_body`` bytes: ``(max_body - 11) // (3 * n_leads)``, at most 255 (a u8).
    12 leads, 4096 bytes: 113 samples (a 4079-byte body)."""
    return min(255, (max_body - _ECG_OVERHEAD) // (3 * n_leads))


def _who() -> str:
    """This user for messages: ``user NAME (uid N)``."""
    return f"user {_user()} (uid {os.geteuid()})"


def _user() -> str:
    """This user's name for the commands in hints (its uid when it has no name)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _credentials(mqtt: MqttConfig) -> list[Problem]:
    names = ("password_file", "ca_file", "cert_file", "key_file")
    files = [(n, getattr(mqtt, n)) for n in names if getattr(mqtt, n) is not None]
    out: list[Problem] = []
    if not mqtt.tls:
        unused = [n for n, _ in files if n in _TLS_ONLY]
        out += [Problem(f"mqtt.{n}", "not used over plaintext mqtt://", False) for n in unused]
        files = [(n, p) for n, p in files if n not in _TLS_ONLY]
    for name, path in files:
        out += _readable_file(f"mqtt.{name}", path, private=name in _SECRETS)
    if not any(p.fatal for p in out):  # the files are there: load them as the publisher will
        try:
            check_credentials(mqtt)
        except PublisherError as exc:
            out.append(Problem("mqtt", str(exc)))
    return out


def _readable_file(where: str, path: Path, *, private: bool) -> list[Problem]:
    try:
        st = path.stat()
    except OSError as exc:
        return [Problem(where, f"{path}: {exc.strerror}")]
    if not stat.S_ISREG(st.st_mode):
        return [Problem(where, f"{path} is not a regular file")]
    out = []
    if private and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        out.append(
            Problem(
                where,
                f"{path} is mode {stat.S_IMODE(st.st_mode):04o}: other users can read it; "
                f"it must be readable by its owner only (chmod 600 {path})",
            )
        )
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        out.append(
            Problem(
                where,
                f"{path} is not readable by {_who()} ({exc.strerror}); it belongs to uid "
                f"{st.st_uid}: sudo chown {_user()}: {path}",
            )
        )
    return out


def _state_dir(path: Path, *, fix: bool) -> list[Problem]:
    where = "gateway.state_dir"
    try:
        st = path.stat()
    except FileNotFoundError:
        if not fix:
            return _creatable(where, path)
        try:
            path.mkdir(mode=0o700, parents=True)
            st = path.stat()
        except OSError as exc:
            return [Problem(where, f"{_who()} cannot create {path}: {exc.strerror}")]
    except OSError as exc:  # a parent not searchable, or a file where a directory should be
        return [Problem(where, f"{path}: {exc.strerror} (as {_who()})")]
    if not stat.S_ISDIR(st.st_mode):
        return [Problem(where, f"{path} exists and is not a directory")]
    out = _private_dir(where, path, st, fix=fix)
    writable = _writable_dir(where, path)
    return out + (writable or _writable_entries(where, path))


def _creatable(where: str, path: Path) -> list[Problem]:
    """Whether this user could create the missing ``path`` (its nearest existing parent
    is a directory it may write and search)."""
    for parent in path.absolute().parents:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return [Problem(where, f"{path}: {_who()} cannot reach {parent}: {exc.strerror}")]
        if stat.S_ISDIR(st.st_mode) and os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
            return []  # ``run`` creates it (0700)
        break
    return [
        Problem(
            where,
            f"{path} does not exist and {_who()} cannot create it in {parent}: "
            f"sudo install -d -o {_user()} -g {_user()} -m 0700 {path}",
        )
    ]


def _private_dir(where: str, path: Path, st: os.stat_result, *, fix: bool) -> list[Problem]:
    mode = stat.S_IMODE(st.st_mode)
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return []
    if st.st_uid != os.geteuid():
        return [
            Problem(
                where,
                f"{path} is mode {mode:04o} (patient data open to other users) and belongs "
                f"to uid {st.st_uid}, not {_who()}: sudo chmod 700 {path}",
            )
        ]
    if not fix:
        return [Problem(where, f"{path} is mode {mode:04o}; run sets it to 0700", False)]
    try:
        path.chmod(0o700)
    except OSError as exc:
        return [Problem(where, f"{path} is mode {mode:04o}; chmod 700 failed: {exc.strerror}")]
    return [Problem(where, f"{path} was mode {mode:04o}; set to 0700", False)]


def _writable_dir(where: str, path: Path) -> list[Problem]:
    try:
        fd, probe = tempfile.mkstemp(prefix=".preflight-", dir=path)
    except OSError as exc:
        return [Problem(where, f"{path} is not writable by {_who()}: {exc.strerror}")]
    os.close(fd)
    os.unlink(probe)
    return []


def _writable_entries(where: str, path: Path) -> list[Problem]:
    """Entries of the (writable) state directory and of its recordings/ and study/ that
    this user cannot write: one problem naming the first few."""
    entries = list(path.iterdir())
    for sub in _STATE_ENTRIES:
        if _is_dir(path / sub) and os.access(path / sub, os.R_OK | os.X_OK):
            entries += (path / sub).iterdir()
    stuck = [e for e in entries if not os.access(e, os.W_OK | (os.X_OK if _is_dir(e) else 0))]
    if not stuck:
        return []
    names = ", ".join(str(e) for e in stuck[:3]) + (" ..." if len(stuck) > 3 else "")
    return [
        Problem(
            where,
            f"{len(stuck)} entr{'y' if len(stuck) == 1 else 'ies'} not writable by {_who()} "
            f"(a gateway started as another user?): {names}; sudo chown -R {_user()}: {path}",
        )
    ]


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False


def _exists(path: Path) -> bool:
    try:
        path.stat()
    except OSError:
        return False
    return True


def _serial_ports(devices: Sequence[DeviceConfig]) -> list[Problem]:
    out = []
    for i, dev in enumerate(devices):
        if not isinstance(dev, CartSerialDevice) or "://" in dev.port:  # pyserial URLs
            continue
        where, port = f"devices.{i}.port", Path(dev.port)
        if not _is_dir(port.parent):
            text = f"{port.parent} does not exist (cart unplugged?); the gateway keeps trying"
        elif not _exists(port):
            text = f"{port} does not exist now (cart unplugged?); the gateway keeps trying"
        elif not os.access(port, os.R_OK | os.W_OK, effective_ids=True):
            text = (
                f"{port} is not readable and writable by {_who()}: the service gets the "
                f"dialout group from the unit (SupplementaryGroups=); for a manual run: "
                f"sudo usermod -a -G dialout {_user()}"
            )
        else:
            continue
        out.append(Problem(where, text, fatal=False))
    return out


def _bluetooth_group(devices: Sequence[DeviceConfig]) -> list[Problem]:
    if not any(isinstance(d, PatchDevice | PolarPmdDevice) for d in devices):
        return []
    try:
        gid = grp.getgrnam("bluetooth").gr_gid
    except KeyError:  # no such group here: BlueZ's D-Bus policy does not use one
        return []
    if os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups():
        return []
    text = (
        f"BLE devices are configured but {_who()} is not in the bluetooth group (BlueZ's "
        f"D-Bus policy); the unit adds it (SupplementaryGroups=); for a manual run: "
        f"sudo usermod -a -G bluetooth {_user()}"
    )
    return [Problem("devices", text, fatal=False)]


def _cart_frames(devices: Sequence[DeviceConfig]) -> list[Problem]:
    if not any(isinstance(d, CartSerialDevice) for d in devices):
        return []
    n = max_ecg_samples(12)
    frame = encode_ecg(0x0101, 0x01010101, np.full((n, 12), _INT24))
    msgs = CartDecoder(n_leads=12).feed(b"\x00" + frame)
    if len(msgs) == 1 and isinstance(msgs[0], EcgMsg) and msgs[0].samples_uv.shape == (n, 12):
        return []
    body = _ECG_OVERHEAD + 36 * n
    text = (
        f"this gateway's cart decoder refuses 12-lead ECG frames of {n} samples ({body}-byte "
        f"body), which docs/protocols/cart-serial.md allows: reinstall the gateway"
    )
    return [Problem("devices", text)]


# --- as another user --------------------------------------------------------------------------
def user_to_check_as(as_user: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """Whom ``config check`` checks as: ``as_user`` when given; under sudo (euid 0 and
    ``SUDO_USER`` set) the service user, since root reads every file and would pass a
    configuration the service cannot read; otherwise this process (None)."""
    env = os.environ if environ is None else environ
    if as_user is not None:
        return as_user
    if os.geteuid() == 0 and env.get("SUDO_USER"):
        return SERVICE_USER
    return None


def check_as_user(path: Path, user: str) -> Report:
    """``config check`` of ``path`` with the files seen as ``user`` sees them.

    A child process drops root for good (``setgroups`` to the user's groups from
    ``/etc/group``, ``setgid``, ``setuid``) and runs :func:`check_config_file`; the parent
    reads its report from a pipe. Dropping privileges, rather than computing access from
    owners and mode bits, lets the kernel answer every question exactly as it will for the
    service: ACLs, the search permission of each parent directory, supplementary groups,
    read-only mounts; and the checks that load files (TLS material) really load them.
    (The unit's ``SupplementaryGroups=`` are not added: device access that only they grant
    is reported as a warning, never as a refusal.)

    Without root only one's own view can be checked: ``user`` must then be this user.
    """
    path = path.absolute()  # the child may not be allowed into the current directory
    if user == _user():
        return check_config_file(path)
    if os.geteuid() != 0:
        return Report(_who(), (Problem("--as-user", f"checking as {user} needs root (sudo)"),))
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        text = f"no user {user!r} on this system (README: Installing on a Raspberry Pi)"
        return Report(_who(), (Problem("--as-user", text),))
    groups = os.getgrouplist(user, pw.pw_gid)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child_check(path, pw, groups, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        return Report(f"user {user}", (Problem(str(path), "the check as this user failed"),))
    return Report.from_json(data)


def _child_check(path: Path, pw: pwd.struct_passwd, groups: list[int], fd: int) -> None:
    """Become ``pw`` for good, check ``path``, write the report to ``fd``, exit."""
    try:
        try:
            os.setgroups(groups)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            report = check_config_file(path)
        except Exception as exc:  # reported, never raised: the parent must hear back
            report = Report(f"user {pw.pw_name}", (Problem(str(path), f"check failed: {exc!r}"),))
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(report.to_json())
    finally:
        os._exit(0)
