"""Renewed TLS files for the next connection (issue #14).

:class:`TlsFiles` notices that the certificate, key or CA file of the MQTT configuration
changed (``ecg-gateway provision --renew``) and builds the new TLS context; a pair that does
not load yet (mid-renewal: the key is replaced before the certificate) is left for later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

from gateway.mqtt.credentials import tls_context
from gateway.mqtt.errors import PublisherError

__all__ = ["TlsFiles"]

log = logging.getLogger(__name__)


class TlsFiles:
    """Watches the TLS files of an MQTT configuration (modification times, ns)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, ...] | None:
        files = [f for f in (self.cfg.ca_file, self.cfg.cert_file, self.cfg.key_file) if f]
        try:
            return tuple(os.stat(f).st_mtime_ns for f in files)
        except OSError:
            return None

    def reload_into(self, client: Any) -> bool:
        """Give ``client`` (its ``ssl_context`` is used at each connection) the renewed
        files' context; True when it was replaced."""
        ctx = self.changed_context() if client is not None else None
        if ctx is not None:
            client.ssl_context = ctx
        return ctx is not None

    def changed_context(self) -> ssl.SSLContext | None:
        """A new context when the files changed and load; None otherwise."""
        if not self.cfg.tls:
            return None
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return None
        try:
            ctx = tls_context(self.cfg)
        except PublisherError as exc:
            log.warning("TLS files changed but do not load yet (%s); keeping the old ones", exc)
            return None
        self.stamp = stamp
        log.info("TLS files changed: the next connection presents the renewed certificate")
        return ctx

    async def watch(self, client: Callable[[], Any], period_s: float = 30.0) -> None:
        """Every ``period_s``, give the current client (``client()``, None while there is
        none) the renewed files' context; until cancelled."""
        while True:
            await asyncio.sleep(period_s)
            self.reload_into(client())
