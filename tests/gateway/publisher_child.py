"""Child process for the Last Will test: a Publisher connected until it is killed.

``python -m tests.gateway.publisher_child URL GATEWAY_ID OUTBOX`` prints ``connected``
(flushed) once the broker accepted it, then runs until SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.config import MqttConfig
from gateway.mqtt import Publisher
from gateway.outbox import Outbox


async def main(url: str, gateway_id: str, outbox: str) -> None:
    cfg = MqttConfig(url=url, insecure=True, keepalive_s=5)
    async with Publisher(cfg, gateway_id, Outbox(outbox), status_period_s=0.2) as pub:
        while not (pub.connected and pub.stats()["acked"] >= 1):
            await asyncio.sleep(0.01)
        print("connected", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
