"""Remote configuration of gateways: versions kept here, published retained to the gateway.

The console's editor saves a gateway's configuration document as the next version
(``gateway_configs``) and publishes it, retained, QoS 1, on ``{prefix}/{gateway}/config``
(docs/provisioning.md). The broker's ACL lets only the center's identity write that topic.
The gateway validates it with its own schema, applies it, rolls it back if its devices do
not come up, and reports the applied or refused version (and why) in its status.

What the center checks is the shape only (an object; no ``gateway`` or ``mqtt`` section:
those stay on the gateway, so a remote change can never cut a gateway off its broker).
The gateway's pydantic schema decides the rest.

Publishing uses a short-lived paho connection with the center's own credentials (a client
id of its own): config changes are rare, and the ingest's connection stays untouched.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import sqlalchemy as sa

from center.config import MqttConfig
from center.store import schema as t
from center.timefmt import iso

__all__ = [
    "CONFIG_SCHEMA",
    "LOCAL_ONLY",
    "ConfigRefused",
    "build_document",
    "check_document",
    "list_configs",
    "publish_retained",
    "save_config",
]

CONFIG_SCHEMA = "ecg-center/config/v1"
LOCAL_ONLY = ("gateway", "mqtt")
"""Sections a remote configuration may not set (they stay in the gateway's own file)."""
MAX_DOCUMENT_BYTES = 256 * 1024


class ConfigRefused(ValueError):
    """The document cannot be sent; ``str()`` says why."""


def check_document(config: Any) -> dict[str, Any]:
    """The configuration part of a document, checked for shape (see the module docstring)."""
    if not isinstance(config, dict):
        raise ConfigRefused("the configuration must be a JSON object")
    local = [k for k in LOCAL_ONLY if k in config]
    if local:
        raise ConfigRefused(f"{', '.join(local)}: set on the gateway only (its own file), "
                            "never remotely")
    if len(json.dumps(config)) > MAX_DOCUMENT_BYTES:
        raise ConfigRefused("the configuration is too large")
    return config


def build_document(gateway: str, version: int, config: dict[str, Any], *, by: str | None,
                   now: float) -> dict[str, Any]:
    """The retained message's body."""
    return {"schema": CONFIG_SCHEMA, "gateway_id": gateway, "version": version,
            "issued_at": iso(now), "issued_by": by, "config": config}


def save_config(conn: sa.Connection, gateway: str, config: Any, *, by: str | None,
                now: float) -> dict[str, Any]:
    """Store ``config`` as the gateway's next version; the document to publish."""
    config = check_document(config)
    c = t.gateway_configs.c
    last = conn.execute(sa.select(sa.func.max(c.version)).where(c.gateway == gateway)).scalar()
    version = int(last or 0) + 1
    doc = build_document(gateway, version, config, by=by, now=now)
    conn.execute(t.gateway_configs.insert().values(
        gateway=gateway, version=version, document=json.dumps(doc, separators=(",", ":")),
        created_at=now, created_by=by))
    return doc


def mark_sent(conn: sa.Connection, gateway: str, version: int, error: str | None,
              now: float) -> None:
    """Record the broker's answer to the publish of one version."""
    c = t.gateway_configs.c
    conn.execute(t.gateway_configs.update().where(c.gateway == gateway, c.version == version)
                 .values(sent_at=None if error else now, last_error=error[:255] if error else None))


def list_configs(conn: sa.Connection, gateway: str, limit: int = 20) -> list[dict[str, Any]]:
    """The gateway's versions, newest first (with the document)."""
    c = t.gateway_configs.c
    rows = conn.execute(sa.select(t.gateway_configs).where(c.gateway == gateway)
                        .order_by(c.version.desc()).limit(limit)).mappings().all()
    return [{"version": r["version"], "created_at": iso(r["created_at"]),
             "created_by": r["created_by"], "sent_at": iso(r["sent_at"]),
             "last_error": r["last_error"], "document": json.loads(r["document"])}
            for r in rows]


def publish_retained(cfg: MqttConfig, topic: str, payload: bytes, *,
                     timeout_s: float = 10.0) -> str | None:
    """Publish ``payload`` retained, QoS 1, on a connection of its own; None when the broker
    acknowledged it with a success code, otherwise the reason (blocking: call in a thread)."""
    import paho.mqtt.client as mqtt

    from center.mqtt_link import LinkError, _tls_context

    done = threading.Event()
    result: dict[str, str | None] = {"error": "no answer from the broker"}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"{cfg.client_id[:48]}-cfg-{secrets.token_hex(3)}")

    def on_connect(c, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            result["error"] = f"broker refused the connection: {reason_code}"
            done.set()
            return
        c.publish(topic, payload, qos=1, retain=True)

    def on_publish(c, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        result["error"] = f"broker refused the publish: {reason_code}" \
            if reason_code.is_failure else None
        done.set()

    client.on_connect, client.on_publish = on_connect, on_publish
    try:
        if cfg.username is not None:
            password = cfg.password_file.read_text().strip() if cfg.password_file else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set_context(_tls_context(cfg))
        client.connect(cfg.host, cfg.port, keepalive=30)
    except (OSError, LinkError) as exc:
        return f"cannot reach the broker: {exc}"
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return result["error"]
