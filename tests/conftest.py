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

After every async test (and its fixtures) the tasks it left running are cancelled; one
that has not ended ``LEFTOVER_LIMIT_S`` later fails the test, named with its stack, and
cannot hang the event loop's teardown (which waits for every task without a limit, past
pytest-timeout, which fires once per test).

Property tests (hypothesis) draw new examples at every run by hand, so a bug can turn up
any day; with ``HYPOTHESIS_PROFILE=ci`` (``.ci/run`` sets it) they draw the same examples
at every run, so a red CI is a change's doing, not the draw's.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from pytest_asyncio import is_async_test

from tests.support import (
    LEFTOVER_LIMIT_S,
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    START_LIMIT_S,
    Mosquitto,
    MqttListener,
    bound_loop_teardown,
    describe_task,
    free_port,
    make_client_cert,
    make_tls_files,
    stop_leftover_tasks,
    wait_for,
)

hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

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


@pytest.fixture(autouse=True)
def _async_tests_leave_no_task_running(request: pytest.FixtureRequest) -> None:
    """For async tests only (a sync test has no event loop to keep clean): set up first,
    so that its check runs after every other fixture's teardown."""
    if is_async_test(request.node):
        request.getfixturevalue("_no_task_left_running")


@pytest.fixture
async def _no_task_left_running(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """At the test's end: its leftover tasks cancelled and waited for (bounded); those
    that outlive their cancellation fail the test, and never hang the loop's teardown."""
    loop = asyncio.get_running_loop()
    reported: list[asyncio.Task[object]] = []

    def unhung() -> None:
        """After the async part below, even one that was interrupted (pytest-timeout firing
        in it: the test failed already, so this only tells, on stderr, never raises)."""
        pending = bound_loop_teardown(loop)
        if pending and not reported:
            print(_report(pending, "still pending at the event loop's teardown"), file=sys.stderr)

    request.addfinalizer(unhung)
    yield
    stuck = await stop_leftover_tasks()
    if stuck:
        reported.extend(stuck)
        pytest.fail(_report(stuck, f"still running {LEFTOVER_LIMIT_S:g} s after being cancelled"),
                    pytrace=False)  # fmt: skip


def _report(tasks: list[asyncio.Task[object]], what: str) -> str:
    names = ", ".join(t.get_name() for t in tasks)
    stacks = "".join(describe_task(t) for t in tasks)
    return (
        f"{len(tasks)} task(s) the test left behind {what} (each swallowed its "
        f"cancellation or waits for what never comes): {names}\n{stacks}(the event loop "
        "is stopped at its teardown, so that it cannot hang: pytest-asyncio then warns "
        "of an exception during the runner's teardown)"
    )
