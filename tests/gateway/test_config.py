import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import EXIT_CONFIG, main
from gateway.config import ConfigError, GatewayConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid_and_complete():
    cfg = load_config(ROOT / "config" / "example.toml")
    assert cfg.gateway.id == "gw-0001"
    assert {d.kind for d in cfg.devices} == {"patch", "polar_pmd", "cart_serial"}
    # Every top-level section of the model appears in the example.
    text = (ROOT / "config" / "example.toml").read_text()
    for section in GatewayConfig.model_fields:
        assert f"[{section}]" in text or f"[[{section}]]" in text, section


def test_exported_schema_is_current():
    on_disk = json.loads((ROOT / "config" / "schema.json").read_text())
    assert on_disk == GatewayConfig.model_json_schema(), (
        "run: ecg-gateway config schema > config/schema.json"
    )


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    return exc.value.problems


def test_unknown_key_is_named_with_its_path():
    probs = problems({"gateway": {"id": "gw"}, "strips": {"periode_s": 5}})
    assert probs == ["strips.periode_s: unknown key (check spelling; see config/example.toml)"]


def test_wrong_types_and_ranges_are_named():
    probs = problems(
        {
            "gateway": {"id": "gw/1"},
            "events": {"pre_s": -1},
            "devices": [{"kind": "cart_serial", "id": "c", "port": "/dev/x", "baudrate": 9600}],
        }
    )
    joined = "\n".join(probs)
    assert "gateway.id" in joined
    assert "events.pre_s" in joined
    assert "devices.0.cart_serial.baudrate" in joined


def test_plaintext_needs_explicit_insecure():
    assert any(
        "insecure" in p for p in problems({"gateway": {"id": "g"}, "mqtt": {"url": "mqtt://h"}})
    )
    cfg = parse_config({"gateway": {"id": "g"}, "mqtt": {"url": "mqtt://h:1884", "insecure": True}})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("h", 1884, False)
    assert parse_config({"gateway": {"id": "g"}}).mqtt.port == 8883


def test_duplicate_device_ids_rejected():
    dev = {"kind": "polar_pmd", "id": "p", "address": "AA:BB:CC:DD:EE:FF"}
    assert any("used twice" in p for p in problems({"gateway": {"id": "g"}, "devices": [dev, dev]}))


def test_unknown_device_kind():
    probs = problems({"gateway": {"id": "g"}, "devices": [{"kind": "holter9000", "id": "x"}]})
    assert probs and probs[0].startswith("devices.0")


def test_run_refuses_bad_config_with_exit_code_and_key_path(tmp_path, capsys):
    bad = tmp_path / "gw.toml"
    bad.write_text('[gateway]\nid = "gw"\n[live]\nblock_s = "fast"\n')
    assert main(["run", "--config", str(bad)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "refusing to start" in err and "live.block_s" in err


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_cli_help_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("ecg-gateway ")
    helptext = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("run", "demo", "monitor", "config"):
        assert cmd in helptext
