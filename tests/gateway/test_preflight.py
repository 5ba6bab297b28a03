"""Preflight: what ``config check`` and ``run`` find before touching a device.

Real files, real modes, and a real unprivileged user: the tests that need one drop root in
a forked child to ``nobody`` (skipped when not root or without that user). Files shared
with that user live in a directory everybody may enter (pytest's tmp_path is root's only).
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from drivers import cart_protocol
from drivers.cart_protocol import CartDecoder, EcgMsg, encode_ecg
from gateway import preflight
from gateway.cli import EXIT_CONFIG, EXIT_OK, main
from gateway.config import parse_config
from gateway.preflight import (
    SERVICE_USER,
    Problem,
    check_as_user,
    check_before_run,
    check_config_file,
    max_ecg_samples,
    user_to_check_as,
)

ROOT = Path(__file__).resolve().parents[2]


def config(state_dir: Path, **mqtt: object) -> dict:
    mq = {"url": "mqtt://127.0.0.1:1883", "insecure": True, **mqtt}
    return {"gateway": {"id": "gw-pre", "state_dir": str(state_dir)}, "mqtt": mq}


def write_toml(path: Path, state_dir: Path, extra: str = "") -> Path:
    path.write_text(
        f'[gateway]\nid = "gw-pre"\nstate_dir = "{state_dir}"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\ninsecure = true\n{extra}'
    )
    return path


def secret(path: Path, mode: int, text: str = "pw\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def fatal(problems: list[Problem] | tuple[Problem, ...]) -> list[str]:
    return [f"{p.where}: {p.text}" for p in problems if p.fatal]


# --- as this user --------------------------------------------------------------------------------
def test_clean_configuration_passes_and_run_creates_a_private_state_dir(tmp_path):
    cfg = parse_config(config(tmp_path / "state" / "gw"))
    assert preflight.preflight(cfg) == []
    assert not (tmp_path / "state").exists()  # config check creates nothing
    assert fatal(check_before_run(cfg)) == []
    mode = stat.S_IMODE((tmp_path / "state" / "gw").stat().st_mode)
    assert mode == 0o700


def test_open_state_dir_is_reported_by_check_and_closed_by_run(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    cfg = parse_config(config(state))
    [p] = preflight.preflight(cfg)
    assert not p.fatal and "mode 0755; run sets it to 0700" in p.text
    assert stat.S_IMODE(state.stat().st_mode) == 0o755
    assert fatal(check_before_run(cfg)) == []
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


@pytest.mark.parametrize("kind", ["file", "under_a_file"])
def test_run_refuses_an_unusable_state_dir_with_exit_78(tmp_path, capsys, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    state = blocker if kind == "file" else blocker / "state"
    path = write_toml(tmp_path / "gw.toml", state)
    assert main(["run", "--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "refusing to start" in err and "gateway.state_dir" in err
    assert "Traceback" not in err


def test_files_the_gateway_creates_are_its_users_only_whatever_the_umask(tmp_path):
    """Started with umask 000: the outbox files come out 0600, the state dir 0700."""
    state = tmp_path / "state"
    path = write_toml(tmp_path / "gw.toml", state).as_posix()
    argv = [sys.executable, "-m", "gateway", "run", "--config", path]
    proc = subprocess.Popen(argv, cwd=ROOT, umask=0, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "outbox.sqlite3").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the WAL files follow the database
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = sorted(state.iterdir())
    assert [f.name for f in files if f.name.startswith("outbox")], err
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def test_run_gives_back_the_umask_it_found(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    old = os.umask(0o022)
    try:
        assert main(["run", "--config", str(write_toml(tmp_path / "gw.toml", blocker))]) == 78
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)


def test_world_readable_password_file_is_refused_by_check_and_run(tmp_path, capsys):
    pw = secret(tmp_path / "pw", 0o644)
    path = write_toml(
        tmp_path / "gw.toml", tmp_path / "state", f'username = "gw"\npassword_file = "{pw}"\n'
    )
    assert main(["config", "check", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert f"mqtt.password_file: {pw} is mode 0644" in err and f"chmod 600 {pw}" in err
    assert main(["run", "--config", str(path)]) == EXIT_CONFIG
    assert "mqtt.password_file" in capsys.readouterr().err
    pw.chmod(0o600)
    assert main(["config", "check", str(path)]) == EXIT_OK
    assert "OK — gateway gw-pre, 0 device(s)" in capsys.readouterr().out


def test_every_problem_is_listed(tmp_path, capsys):
    key = secret(tmp_path / "client.key", 0o640, "-----BEGIN PRIVATE KEY-----\n")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    path = tmp_path / "gw.toml"
    path.write_text(
        f'[gateway]\nid = "gw"\nstate_dir = "{blocker}"\n'
        f'[mqtt]\nurl = "mqtts://broker.example"\nca_file = "{tmp_path / "missing-ca.pem"}"\n'
        f'cert_file = "{tmp_path / "client.pem"}"\nkey_file = "{key}"\n'
        f'[[devices]]\nkind = "cart_serial"\nid = "cart"\nport = "{tmp_path / "usb" / "tty0"}"\n'
    )
    assert main(["config", "check", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    for expected in (
        "error: mqtt.ca_file: ",
        "missing-ca.pem: No such file or directory",
        "error: mqtt.cert_file: ",
        "error: mqtt.key_file: ",
        "is mode 0640",
        "error: gateway.state_dir: ",
        "warning: devices.0.port: ",
    ):
        assert expected in err, (expected, err)


def test_parse_errors_are_listed_with_their_key(tmp_path, capsys):
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "gw"\n[mqtt]\nclient_id = ""\ninsecure = "yes"\n')
    assert main(["config", "check", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "mqtt.client_id: String should have at least 1 character" in err
    assert "mqtt.insecure: Input should be a valid boolean (got 'yes')" in err


def test_tls_material_is_loaded_as_the_publisher_will(tmp_path):
    from tests.support import make_tls_files

    tls = make_tls_files(tmp_path / "pki")
    good = {
        "url": "mqtts://127.0.0.1:8883",
        "ca_file": str(tls.ca_file),
        "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
    }
    assert preflight.preflight(parse_config(config(tmp_path / "s", **good))) == []
    # every file there and private, but the key is not the certificate's
    wrong = {**good, "key_file": str(tls.server_key)}
    [p] = preflight.preflight(parse_config(config(tmp_path / "s", **wrong)))
    assert p.fatal and p.where == "mqtt" and "not usable" in p.text


def test_tls_files_over_plaintext_are_warned_about(tmp_path):
    cfg = parse_config(config(tmp_path / "s", ca_file="/nowhere/ca.pem"))
    [p] = preflight.preflight(cfg)
    assert (p.where, p.fatal) == ("mqtt.ca_file", False)
    assert "plaintext" in p.text


def test_serial_port_problems_are_warnings_only(tmp_path, capsys):
    path = write_toml(
        tmp_path / "gw.toml",
        tmp_path / "state",
        f'[[devices]]\nkind = "cart_serial"\nid = "c1"\nport = "{tmp_path}/by-id/usb-cart"\n'
        f'[[devices]]\nkind = "cart_serial"\nid = "c2"\nport = "{tmp_path}/ttyUSB9"\n'
        '[[devices]]\nkind = "cart_serial"\nid = "c3"\nport = "loop://"\n',
    )
    assert main(["config", "check", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"warning: devices.0.port: {tmp_path}/by-id does not exist (cart unplugged?)" in out
    assert f"warning: devices.1.port: {tmp_path}/ttyUSB9 does not exist now" in out
    assert "devices.2" not in out


def test_cart_frame_limit_agrees_with_the_decoder():
    """113 samples of 12 leads fit the 4096-byte body (the protocol document's number);
    the decoder takes such a frame whatever its bytes, and refuses one more sample."""
    n = max_ecg_samples(12)
    assert n == 113 == (4096 - 11) // 36
    assert max_ecg_samples(1) == 255  # a u8
    rng = np.random.default_rng(3)
    for x in (np.full((n, 12), 0x010101), rng.integers(-(2**23), 2**23, (n, 12))):
        [msg] = CartDecoder().feed(b"\x00" + encode_ecg(0x0101, 0x01010101, x))
        assert isinstance(msg, EcgMsg) and msg.samples_uv.shape == (n, 12)
    decoder = CartDecoder()
    too_big = encode_ecg(1, 0x01010101, np.full((n + 1, 12), 0x010101))
    assert decoder.feed(b"\x00" + too_big) == [] and decoder.stats["too_long"] == 1
    doc = (ROOT / "docs" / "protocols" / "cart-serial.md").read_text()
    assert "**113 for 12 leads**" in doc and "n ≤ ⌊(4096 − 11) / (3 × n_leads)⌋" in doc


def test_cart_frame_check_fails_on_a_decoder_with_a_smaller_limit(tmp_path, monkeypatch):
    cfg = parse_config(
        {
            **config(tmp_path / "s"),
            "devices": [{"kind": "cart_serial", "id": "c", "port": "loop://"}],
        }
    )
    assert preflight.preflight(cfg) == []
    monkeypatch.setattr(cart_protocol, "MAX_BODY", 2048)  # what the decoder reads
    [p] = preflight.preflight(cfg)
    assert p.fatal and "refuses 12-lead ECG frames of 113 samples" in p.text


def test_whom_config_check_checks_as():
    sudo = {"SUDO_USER": "pi"}
    assert user_to_check_as("alice", sudo) == "alice"
    assert user_to_check_as(None, {}) is None
    expected = SERVICE_USER if os.geteuid() == 0 else None
    assert user_to_check_as(None, sudo) == expected


def test_unknown_user_is_a_problem(tmp_path):
    path = write_toml(tmp_path / "gw.toml", tmp_path / "s")
    [p] = check_as_user(path, "no-such-user-ecg").problems
    assert p.fatal and p.where == "--as-user"
    if os.geteuid() == 0:
        assert p.text.startswith("no user 'no-such-user-ecg' on this system")
    else:
        assert p.text == "checking as no-such-user-ecg needs root (sudo)"


# --- as another user (root drops to nobody) ------------------------------------------------------
@pytest.fixture
def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="ecg-preflight-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def owned_dir(path: Path, user: pwd.struct_passwd, mode: int = 0o700) -> Path:
    path.mkdir(mode=mode)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)
    return path


def exit_code_as(user: pwd.struct_passwd, argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``ecg-gateway ARGV`` run as ``user`` (a forked child)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_end)
            sys.stderr = io.TextIOWrapper(os.fdopen(write_end, "wb"))
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            code = main(argv)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        err = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_a_root_only_config_fails_for_the_service_user(nobody, shared, capsys):
    path = write_toml(shared / "gw.toml", owned_dir(shared / "state", nobody))
    path.chmod(0o640)  # root:root: what the old install steps left
    assert check_config_file(path).problems == ()  # root reads it
    report = check_as_user(path, "nobody")
    assert report.checked_as.startswith("user nobody")
    assert fatal(report.problems) == [f"{path}: cannot read file: Permission denied"]
    assert main(["config", "check", "--as-user", "nobody", str(path)]) == EXIT_CONFIG
    assert "checked as user nobody" in capsys.readouterr().err
    os.chown(path, 0, nobody.pw_gid)  # root:<the user's group> 0640, as the README says
    assert check_as_user(path, "nobody").problems == ()


def test_state_dir_the_service_user_cannot_write(nobody, shared):
    state = shared / "state"
    state.mkdir(mode=0o700)  # root's
    path = write_toml(shared / "gw.toml", state)
    path.chmod(0o644)
    [p] = check_as_user(path, "nobody").problems
    assert p.fatal and p.where == "gateway.state_dir"
    assert "belongs to" not in p.text and "not writable by user nobody" in p.text
    # missing, in a directory the user cannot write: cannot be created
    path = write_toml(shared / "gw.toml", state / "sub")
    state.chmod(0o755)
    [p] = check_as_user(path, "nobody").problems
    assert "does not exist and user nobody" in p.text and "install -d -o nobody" in p.text


def test_root_owned_files_in_the_state_dir_are_found(nobody, shared):
    state = owned_dir(shared / "state", nobody)
    (state / "outbox.sqlite3").write_bytes(b"")  # left by a gateway started as root
    (state / "recordings").mkdir()
    os.chown(state / "recordings", nobody.pw_uid, nobody.pw_gid)
    (state / "recordings" / "patch-1").mkdir(mode=0o700)  # root's
    path = write_toml(shared / "gw.toml", state)
    path.chmod(0o644)
    [p] = check_as_user(path, "nobody").problems
    assert p.fatal and "2 entries not writable by user nobody" in p.text
    assert "outbox.sqlite3" in p.text and "patch-1" in p.text and "chown -R nobody:" in p.text


def test_open_state_dir_of_another_user_is_refused(nobody, shared):
    state = shared / "state"
    state.mkdir()
    state.chmod(0o777)  # root's, and everybody's
    path = write_toml(shared / "gw.toml", state)
    path.chmod(0o644)
    problems = check_as_user(path, "nobody").problems
    assert any("is mode 0777 (patient data open to other users)" in p for p in fatal(problems))


def test_secret_readable_only_by_root_is_named(nobody, shared):
    state = owned_dir(shared / "state", nobody)
    pw = secret(shared / "pw", 0o600)  # root's: the service user cannot read it
    path = write_toml(shared / "gw.toml", state, f'username = "gw"\npassword_file = "{pw}"\n')
    path.chmod(0o644)
    [p] = check_as_user(path, "nobody").problems
    assert p.where == "mqtt.password_file" and "not readable by user nobody" in p.text
    assert f"chown nobody: {pw}" in p.text


def test_run_as_a_user_exits_78_on_an_unusable_state_dir(nobody, shared):
    state = shared / "state"
    state.mkdir(mode=0o700)  # root's
    path = write_toml(shared / "gw.toml", state / "gw")
    path.chmod(0o644)
    code, err = exit_code_as(nobody, ["run", "--config", str(path)])
    assert code == EXIT_CONFIG, err
    assert "refusing to start" in err and "gateway.state_dir" in err
    assert "Traceback" not in err
