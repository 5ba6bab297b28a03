"""Files provisioning writes: the configuration (TOML, validated, atomic) and the udev rule.

Pure builders (:func:`config_dict`, :func:`udev_rule_text`) and thin writers. The config is
validated with the gateway's own pydantic schema before anything is written, then written
with :func:`gateway.enroll.write_atomic` (temp file, fsync, rename): a power cut leaves the
old file or the new one, never half of one.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.provision_scan import CART_USB_IDS

__all__ = ["UDEV_RULE_NAME", "chown_service", "config_dict", "udev_rule_text",
           "write_config", "write_udev_rule"]

UDEV_RULE_NAME = "99-ecg-cart.rules"


def config_dict(*, gateway_id: str, state_dir: Path, broker_url: str, tls_dir: Path,
                patches: list[dict[str, Any]], carts: list[dict[str, Any]]) -> dict[str, Any]:
    """The configuration provisioning writes (everything else keeps its default)."""
    return {
        "gateway": {"id": gateway_id, "state_dir": str(state_dir)},
        "mqtt": {"url": broker_url, "ca_file": str(tls_dir / "ca.pem"),
                 "cert_file": str(tls_dir / "client.pem"),
                 "key_file": str(tls_dir / "client.key")},
        "devices": [*patches, *carts],
    }


def write_config(path: Path, data: dict[str, Any], *, mode: int = 0o640) -> GatewayConfig:
    """Validate ``data`` (ConfigError if not), write it as TOML atomically; the config."""
    import tomli_w

    from gateway.enroll import write_atomic

    cfg = parse_config(data, str(path))
    header = ("# written by 'ecg-gateway provision'; every key: config/example.toml\n"
              "# check after editing: ecg-gateway config check FILE\n\n")
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    write_atomic(path, (header + tomli_w.dumps(data)).encode(), mode)
    return cfg


def udev_rule_text() -> str:
    """Stable names for the carts' USB-serial bridges: ``/dev/ecg-cart-<serial>`` (group
    dialout, 0660), so a cart keeps its name whatever USB port or order it comes in."""
    lines = ["# ecg-gateway: stable names for stress-test carts (written by ecg-gateway provision)",
             "# /dev/ecg-cart-<USB serial number> -> the cart's ttyUSB*/ttyACM*"]
    for vid, pid in sorted(CART_USB_IDS):
        lines.append(f'SUBSYSTEM=="tty", ATTRS{{idVendor}}=="{vid:04x}", '
                     f'ATTRS{{idProduct}}=="{pid:04x}", ATTRS{{serial}}=="?*", '
                     'SYMLINK+="ecg-cart-$attr{serial}", GROUP="dialout", MODE="0660"')
    return "\n".join(lines) + "\n"


def write_udev_rule(directory: Path) -> Path:
    """Install the rule (0644) in ``directory``; its path. udev applies it at the next plug
    (or ``udevadm control --reload && udevadm trigger``)."""
    from gateway.enroll import write_atomic

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UDEV_RULE_NAME
    write_atomic(path, udev_rule_text().encode(), 0o644)
    return path


def chown_service(paths: list[Path], user: str, *, group_only: bool = False) -> bool:
    """Give ``paths`` to the service user and group (``group_only``: root keeps them, the
    group reads) when the user exists and we are root; False when skipped (tests, a desktop)."""
    if os.geteuid() != 0:
        return False
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(user).gr_gid
    except KeyError:
        return False
    for p in paths:
        os.chown(p, 0 if group_only else pw.pw_uid, gid)
    return True
