"""MQTT v5 delivery: a pure codec and delivery window, a thin asyncio client, the publisher.

- :mod:`gateway.mqtt.codec`: packets ↔ bytes (pure);
- :mod:`gateway.mqtt.window`: which outbox rows are in flight, what to (re)send (pure);
- :mod:`gateway.mqtt.client`: one connection kept up on the event loop (keepalive,
  reconnect with backoff, failures explained);
- :mod:`gateway.mqtt.credentials`: TLS context and secret files, checked before use;
- :mod:`gateway.mqtt.publisher`: the glue between the outbox, the window and the client;
- :mod:`gateway.mqtt.errors`: every exception of this layer.
"""

from gateway.mqtt.client import LinkState
from gateway.mqtt.errors import PublisherError
from gateway.mqtt.publisher import Publisher

__all__ = ["LinkState", "Publisher", "PublisherError"]
