"""Fixtures shared by the whole suite: a real mosquitto broker and an MQTT listener.

``mosquitto`` is a factory: each call starts a broker on a free loopback port with
its own temporary configuration, in one of these variants (combinable)::

    broker = mosquitto()                                   # anonymous, plaintext
    broker = mosquitto(users={"gw1": "s3cret"})            # password file
    broker = mosquitto(users={...}, acl={"gw1": ["topic write ecg/v1/gw1/#"]})
    broker = mosquitto(tls=True)                           # mutual TLS (needs `cryptography`)
    broker = mosquitto(persistence=True)                   # sessions survive stop()/start()
    broker = mosquitto(tls=True, identity_as_username=True,   # certificate CN = username,
                       acl_patterns=["pattern write ecg/v1/%u/#"])  # per-gateway topics

The returned :class:`~tests.support.Mosquitto` can be stopped and started again on the
*same* port (broker outage tests), or paused (SIGSTOP: a hung broker) and resumed. Every
broker started is terminated at teardown.

``mqtt_listener`` is a factory for a paho subscriber that records what arrives.
The helpers themselves live in :mod:`tests.support`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    START_LIMIT_S,
    Mosquitto,
    MqttListener,
    free_port,
    make_client_cert,
    make_tls_files,
    wait_for,
)

__all__ = ["free_port", "make_client_cert", "make_tls_files", "wait_for"]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Factory: ``mosquitto(users=, acl=, tls=, persistence=) -> Mosquitto`` (started)."""
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip(f"{MOSQUITTO} not installed (apt-get install mosquitto)")
    brokers: list[Mosquitto] = []

    def start(
        *,
        users: dict[str, str] | None = None,
        acl: dict[str, list[str]] | None = None,
        tls: bool = False,
        persistence: bool = False,
        identity_as_username: bool = False,
        acl_patterns: list[str] | None = None,
    ) -> Mosquitto:
        if users and not os.access(MOSQUITTO_PASSWD, os.X_OK):
            pytest.skip("mosquitto_passwd not installed")
        broker = Mosquitto(
            tmp_path / f"mosquitto-{len(brokers)}",
            users=users,
            acl=acl,
            tls=tls,
            persistence=persistence,
            identity_as_username=identity_as_username,
            acl_patterns=acl_patterns,
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_listener() -> Iterator[Callable[..., MqttListener]]:
    """Factory: ``mqtt_listener(broker, topics, username=, password=)`` -> subscribed listener."""
    listeners: list[MqttListener] = []

    def make(broker: Mosquitto, topics: str | list[str], **kw: Any) -> MqttListener:
        listener = MqttListener(broker, topics, **kw)
        listeners.append(listener)
        if not listener.subscribed.wait(START_LIMIT_S):
            pytest.fail(f"listener could not subscribe to {topics}\n{broker.log()}")
        return listener

    yield make
    for listener in listeners:
        listener.close()
