"""The README's Raspberry Pi install steps leave a configuration the service can use.

What runs here, as root, with a real throwaway system user (``useradd --system``, deleted at
teardown): the README's ``install`` lines, read from README.md, that create the
configuration directory, the configuration, the TLS files and the state directory, with
``/etc/ecg-gateway`` and ``/var/lib/ecg-gateway`` moved under a temporary directory (no
real /etc or /var/lib is touched) and ``ecg-gateway`` replaced by the throwaway user; the
"edit it" step; then ``ecg-gateway config check`` as that user, which must pass: by
dropping root in a child (``--as-user``, what ``sudo ecg-gateway config check`` does) and,
where that user may run this Python, through ``runuser``. The steps the README had before
fail that check (a root-only configuration), and ``sudo`` checks as the service user.

What does not run here: Raspberry Pi OS itself (no debootstrap), apt and pip, the
``useradd`` line as written (no bluetooth group here), systemd starting the unit (no
systemd as PID 1; tests/test_systemd.py verifies the unit), BlueZ, real serial ports, and
the unit's sandbox (ProtectSystem=strict, StateDirectory=).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.preflight import SERVICE_USER

ROOT = Path(__file__).resolve().parents[1]
DIRS = ("/etc/ecg-gateway", "/var/lib/ecg-gateway")
OLD_STEPS = [  # the README's steps before issue #10
    "sudo install -d -m 0750 /etc/ecg-gateway",
    "sudo install -m 0640 config/example.toml /etc/ecg-gateway/gateway.toml   # then edit it",
]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("userdel")),
    reason="creating a throwaway system user needs root, useradd and userdel",
)


def readme_steps() -> list[str]:
    """The shell lines of the README's install block (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Installing on a Raspberry Pi") :]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start : section.index("```", start)].replace("\\\n", " ")
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def localised(step: str, root: Path, user: str) -> list[str] | None:
    """A step as run here: ``sudo`` dropped, the two directories moved under ``root``, the
    service user replaced by ``user``; None for a step that is not an ``install`` into them."""
    argv = shlex.split(step, comments=True)
    argv = argv[1:] if argv[:1] == ["sudo"] else argv
    if argv[:1] != ["install"] or not any(a.startswith(DIRS) for a in argv):
        return None
    out = []
    for a in argv:
        a = f"{root}{a}" if a.startswith(DIRS) else a
        out.append(user if a == SERVICE_USER else a)
    return out


def run_steps(steps: list[str], root: Path, user: str, cwd: Path) -> list[list[str]]:
    done = []
    for step in steps:
        argv = localised(step, root, user)
        if argv is not None:
            subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
            done.append(argv)
    return done


def edit_config(path: Path, root: Path) -> None:
    """The "edit it" step: the example's paths moved under ``root`` (owner and mode kept)."""
    text = path.read_text()
    for d in DIRS:
        text = text.replace(f'"{d}', f'"{root}{d}')
    path.write_text(text)


def config_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "gateway", "config", "check", *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def make_user(name: str) -> pwd.struct_passwd:
    subprocess.run(
        [
            *("useradd", "--system", "--user-group", "--no-create-home"),
            *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name),
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def delete_user(name: str) -> None:
    subprocess.run(["userdel", name], check=False, capture_output=True)
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    subprocess.run(["groupdel", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def service_user() -> Iterator[str]:
    name = f"ecgt-{uuid.uuid4().hex[:10]}"
    make_user(name)
    try:
        yield name
    finally:
        delete_user(name)


@pytest.fixture
def install_root() -> Iterator[Path]:
    """A fake / that every user may enter, with etc/ and var/lib/ (root's, 0755)."""
    root = Path(tempfile.mkdtemp(prefix="ecg-pi-install-"))
    root.chmod(0o755)
    for d in ("etc", "var", "var/lib", "src", "src/config"):
        (root / d).mkdir()
        (root / d).chmod(0o755)  # whatever the umask
    shutil.copy(ROOT / "config" / "example.toml", root / "src" / "config" / "example.toml")
    try:
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture
def tls_sources(install_root: Path) -> Path:
    """ca.pem, gateway.crt, gateway.key where the installer stands (as the README names them)."""
    from tests.support import make_tls_files

    src = install_root / "src"
    tls = make_tls_files(install_root / "pki")
    for source, name in ((tls.ca_file, "ca.pem"), (tls.client_cert, "gateway.crt")):
        shutil.copy(source, src / name)
    shutil.copy(tls.client_key, src / "gateway.key")
    return src


def mode_owner(path: Path) -> tuple[int, str, str]:
    st = path.stat()
    owner, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    return stat.S_IMODE(st.st_mode), owner, group


@pytest.fixture
def installed(service_user: str, install_root: Path, tls_sources: Path) -> Path:
    """The README's install steps and the "edit it" step done; the configuration's path."""
    done = run_steps(readme_steps(), install_root, service_user, tls_sources)
    assert len(done) == 4, done  # config dir, config, TLS material, state dir
    config = install_root / "etc" / "ecg-gateway" / "gateway.toml"
    edit_config(config, install_root)
    return config


def test_readme_steps_set_owners_and_modes(service_user, installed, install_root):
    etc, user = installed.parent, service_user
    assert mode_owner(etc) == (0o750, "root", user)
    assert mode_owner(installed) == (0o640, "root", user)
    for name in ("ca.pem", "gateway.crt", "gateway.key"):
        assert mode_owner(etc / name) == (0o600, user, user)
    assert mode_owner(install_root / "var/lib/ecg-gateway") == (0o700, user, user)


def test_config_check_as_the_service_user_passes_after_the_readme_steps(service_user, installed):
    res = config_check("--as-user", service_user, str(installed))
    assert res.returncode == 0, res.stderr
    assert "OK — gateway gw-0001, 3 device(s)" in res.stdout
    assert f"checked as user {service_user}" in res.stdout
    assert "error" not in res.stdout  # warnings only (the cart's /dev/ttyUSB0 is not here)


def test_config_check_through_runuser_passes_after_the_readme_steps(service_user, installed):
    """The README's ``sudo -u ecg-gateway ecg-gateway config check``, with runuser."""
    if shutil.which("runuser") is None:
        pytest.skip("no runuser here")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    as_user = ["runuser", "-u", service_user, "--", sys.executable]
    probe = subprocess.run(
        [*as_user, "-c", "import gateway.preflight"], cwd=ROOT, env=env, capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"{service_user} cannot run {sys.executable} (a directory of it is root's)")
    argv = [*as_user, "-m", "gateway", "config", "check", str(installed)]
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"checked as user {service_user}" in res.stdout


def test_the_old_steps_fail_for_the_service_user(service_user, install_root, tls_sources):
    """Before issue #10: a root-only configuration that ``sudo ... config check`` passed
    (root reads everything) and the service could not read."""
    run_steps(OLD_STEPS, install_root, service_user, tls_sources)
    config = install_root / "etc" / "ecg-gateway" / "gateway.toml"
    edit_config(config, install_root)
    for name in ("ca.pem", "gateway.crt", "gateway.key"):  # installed as root knew how
        subprocess.run(["install", "-m", "0600", name, str(config.parent)], cwd=tls_sources)
    assert mode_owner(config) == (0o640, "root", "root")

    assert config_check(str(config)).returncode == 0  # what root saw
    res = config_check("--as-user", service_user, str(config))
    assert res.returncode == 78
    assert f"{config}: cannot read file: Permission denied" in res.stderr
    assert f"checked as user {service_user}" in res.stderr


@pytest.fixture
def ecg_gateway_user() -> Iterator[str]:
    """The service user by its real name, made for this test only (a real one is never
    touched: then the test is skipped)."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    else:
        pytest.skip(f"a user {SERVICE_USER} exists here; it is not touched")
    make_user(SERVICE_USER)
    try:
        yield SERVICE_USER
    finally:
        delete_user(SERVICE_USER)


def test_sudo_config_check_sees_what_the_service_user_sees(ecg_gateway_user, install_root):
    pw = pwd.getpwnam(ecg_gateway_user)
    etc, state = install_root / "etc" / "ecg-gateway", install_root / "var/lib/ecg-gateway"
    etc.mkdir()
    etc.chmod(0o750)
    state.mkdir()
    state.chmod(0o700)
    os.chown(state, pw.pw_uid, pw.pw_gid)
    config = etc / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-sudo"\nstate_dir = "{state}"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\ninsecure = true\n'
    )
    config.chmod(0o640)  # root:root
    sudo = {**os.environ, "SUDO_USER": "pi", "SUDO_UID": "1000"}
    res = config_check(str(config), env=sudo)
    assert res.returncode == 78, res.stdout
    assert f"checked as user {SERVICE_USER}" in res.stderr
    assert "cannot read file: Permission denied" in res.stderr
    for path in (etc, config):  # root:ecg-gateway, as the README installs them
        os.chown(path, 0, pw.pw_gid)
    res = config_check(str(config), env=sudo)
    assert res.returncode == 0, res.stderr
    assert f"checked as user {SERVICE_USER}" in res.stdout
