"""The ecg-center command: version, db upgrade, user add from stdin, strict configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from center.config import ConfigError, load_config
from tests.center.conftest import REPO


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "center", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version_upgrade_and_user_add(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/c.db"
    assert run("--version").stdout.strip().startswith("ecg-center ")
    from center.store.db import head_revision

    assert f"revision {head_revision()}" in run("db", "upgrade", "--db", db).stdout
    out = run(
        "user", "add", "alice", "--role", "technician", "--db", db, stdin="long enough password\n"
    )
    assert out.returncode == 0, out.stderr
    again = run("user", "add", "alice", "--role", "technician", "--db", db, stdin="x" * 12)
    assert again.returncode == 1 and "exists" in again.stderr
    short = run("user", "add", "bob", "--role", "supervisor", "--db", db, stdin="short\n")
    assert short.returncode == 1 and "at least" in short.stderr
    eng = sa.create_engine(db)
    with eng.connect() as conn:
        row = conn.execute(sa.text("SELECT role, password_hash FROM users")).one()
    assert row[0] == "technician" and row[1].startswith("$argon2id$")


def test_unknown_key_is_an_error_with_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mqtt]\nurl = "mqtts://b:8883"\nshare_grup = "x"\n')
    out = run("serve", "--config", str(cfg))
    assert out.returncode == 78
    assert "mqtt.share_grup: unknown key" in out.stderr


def test_plaintext_needs_insecure_and_example_is_valid() -> None:
    try:
        load_config(None, {"mqtt": {"url": "mqtt://localhost"}})
        raise AssertionError("plaintext accepted")
    except ConfigError as exc:
        assert "insecure = true" in str(exc)
    cfg = load_config(REPO / "center" / "example.toml")
    assert cfg.mqtt.tls and cfg.web.host == "127.0.0.1"
    assert run("config", "check", str(REPO / "center" / "example.toml")).returncode == 0
