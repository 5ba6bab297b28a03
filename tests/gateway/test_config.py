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


# --- strict values (issue #10) --------------------------------------------------------------
def toml_problems(tmp_path: Path, text: str) -> list[str]:
    """Problems of a TOML file holding ``text`` after a minimal [gateway] table."""
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "gw"\n' + text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.problems


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[strips]\nperiod_s = inf\n", "strips.period_s"),
        ("[strips]\nperiod_s = nan\n", "strips.period_s"),
        ("[live]\nblock_s = -inf\n", "live.block_s"),
        ("[recording]\nmax_mb = inf\n", "recording.max_mb"),
    ],
)
def test_numbers_must_be_finite(tmp_path, text, key):
    probs = toml_problems(tmp_path, text)
    assert len(probs) == 1 and probs[0].startswith(f"{key}: "), probs
    assert "finite" in probs[0] or "greater than" in probs[0]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("gateway", "outbox_max_mb", 1e9),
        ("recording", "max_mb", 1e12),
        ("strips", "period_s", 1e7),
        ("mqtt", "session_expiry_s", 2**32),  # the MQTT v5 property is a u32
        ("mqtt", "keepalive_s", 65535),
        ("study", "period_s", 1e6),
    ],
)
def test_numbers_have_upper_bounds(section, key, value):
    base = {"gateway": {"id": "g"}}
    data = {**base, section: {**base.get(section, {}), key: value}}
    probs = problems(data)
    assert any(p.startswith(f"{section}.{key}: Input should be less than") for p in probs), probs


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"mqtt": {"client_id": ""}}, "mqtt.client_id"),
        ({"mqtt": {"client_id": "gw 1"}}, "mqtt.client_id"),
        ({"mqtt": {"username": ""}}, "mqtt.username"),
        ({"mqtt": {"topic_prefix": "ecg//v1"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"topic_prefix": "ecg/#"}}, "mqtt.topic_prefix"),
        (
            {"devices": [{"kind": "cart_serial", "id": "c", "port": ""}]},
            "devices.0.cart_serial.port",
        ),
        (
            {"devices": [{"kind": "patch", "id": "", "address": "AA:BB:CC:DD:EE:FF"}]},
            "devices.0.patch.id",
        ),
        ({"devices": [{"kind": "patch", "id": "p", "address": ""}]}, "devices.0.patch.address"),
        (
            {
                "devices": [
                    {"kind": "polar_pmd", "id": "p", "address": "AA:BB:CC:DD:EE:FF", "lead": ""}
                ]
            },
            "devices.0.polar_pmd.lead",
        ),
    ],
)
def test_empty_or_malformed_names_are_refused(data, key):
    probs = problems({"gateway": {"id": "g"}, **data})
    assert any(p.startswith(f"{key}: ") for p in probs), probs


@pytest.mark.parametrize("value", ['"yes"', '"true"', "1", "0", '"off"'])
def test_booleans_are_true_or_false_only(tmp_path, value):
    probs = toml_problems(tmp_path, f'[mqtt]\nurl = "mqtts://h"\ninsecure = {value}\n')
    assert len(probs) == 1, probs
    assert probs[0].startswith("mqtt.insecure: Input should be a valid boolean (got "), probs


def test_refused_value_is_shown_with_its_key(tmp_path):
    probs = toml_problems(tmp_path, '[mqtt]\ninsecure = "yes"\n[live]\nenabled = 1\n')
    assert probs == [
        "mqtt.insecure: Input should be a valid boolean (got 'yes')",
        "live.enabled: Input should be a valid boolean (got 1)",
    ]


def test_quoted_numbers_are_refused(tmp_path):
    probs = toml_problems(tmp_path, '[mqtt]\nkeepalive_s = "30"\n[strips]\nperiod_s = "300"\n')
    assert [p.split(":")[0] for p in probs] == ["mqtt.keepalive_s", "strips.period_s"]
    # a whole number is a fine float, but a float is not an integer
    cfg = parse_config({"gateway": {"id": "g"}, "strips": {"period_s": 600}})
    assert cfg.strips.period_s == 600.0
    assert problems({"gateway": {"id": "g"}, "mqtt": {"keepalive_s": 30.5}})[0].startswith(
        "mqtt.keepalive_s: Input should be a valid integer"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"strips": {"period_s": 10.0, "duration_s": 20.0}},
            "strips: duration_s (20) is longer than period_s (10)",
        ),
        ({"dsp": {"brady_bpm": 80.0, "tachy_bpm": 70.0}}, "dsp: brady_bpm (80) must be below"),
        ({"events": {"pre_s": 0.0, "post_s": 0.0}}, "events: pre_s + post_s must be at least 1 s"),
        (
            {"mqtt": {"password_file": "/etc/ecg-gateway/pw"}},
            "mqtt: password_file is set but username is not",
        ),
        (
            {"mqtt": {"key_file": "/etc/ecg-gateway/k"}},
            "mqtt: key_file is set but cert_file is not",
        ),
        ({"mqtt": {"url": "mqtts://gw:secret@broker"}}, "mqtt.url: no user name or password"),
        (
            {"mqtt": {"url": "mqtts://broker/ecg"}},
            "mqtt.url: a broker URL is mqtt[s]://host[:port]",
        ),
    ],
)
def test_settings_that_contradict_each_other(data, expected):
    probs = problems({"gateway": {"id": "g"}, **data})
    assert any(p.startswith(expected) for p in probs), probs


def test_paths_are_given_as_strings():
    cfg = parse_config(
        {"gateway": {"id": "g", "state_dir": "/tmp/x"}, "mqtt": {"ca_file": "/etc/ca.pem"}}
    )
    assert cfg.gateway.state_dir == Path("/tmp/x") and cfg.mqtt.ca_file == Path("/etc/ca.pem")
