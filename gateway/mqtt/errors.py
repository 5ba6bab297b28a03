"""Every exception of the MQTT layer, in one place."""

from __future__ import annotations

__all__ = ["MqttError", "MqttProtocolError", "MqttRefused", "PublisherError"]


class MqttError(Exception):
    """Base of the errors below."""


class MqttProtocolError(MqttError, ValueError):
    """The peer sent something that breaks the MQTT 5.0 specification."""


class MqttRefused(MqttError):
    """The broker answered CONNECT with a failure reason code (``reason``)."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class PublisherError(MqttError):
    """The publisher cannot start with this configuration (files, permissions, TLS)."""
