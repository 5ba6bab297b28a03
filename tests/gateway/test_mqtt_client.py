"""The MQTT client's connection handling against a peer on loopback that writes exact bytes
(what a broker may legally do but mosquitto does only by chance of timing)."""

from __future__ import annotations

import asyncio

from gateway.mqtt.client import MqttClient
from gateway.mqtt.codec import ConnAck, Connect, PacketReader, PubAck, Publish, encode


async def test_messages_that_come_with_the_connack_are_not_dropped() -> None:
    """A persistent session's redelivered message can arrive in the same TCP segment as the
    CONNACK: it reaches the handler, and its PUBACK goes back."""
    redelivered = Publish("ecg/v1/gw/p1/record-ack", b"{}", qos=1, dup=True, packet_id=7)
    got: list[Publish] = []
    acked = asyncio.Event()

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packets = PacketReader()  # decodes what a broker receives too, but for CONNECT
        await reader.read(65536)  # the CONNECT (one write on loopback)
        writer.write(encode(ConnAck(True, 0)) + encode(redelivered))  # one write
        while not acked.is_set():
            data = await reader.read(65536)
            if not data:
                return
            if any(isinstance(p, PubAck) and p.packet_id == 7 for p in packets.feed(data)):
                acked.set()
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client: MqttClient

    def on_packet(packet: object) -> None:
        if isinstance(packet, Publish):
            got.append(packet)
            client.send(PubAck(packet.packet_id or 0))

    client = MqttClient(
        "127.0.0.1",
        port,
        None,
        make_connect=lambda: Connect("c", clean_start=False, session_expiry_s=60),
        on_up=lambda connack: None,
        on_packet=on_packet,
        on_down=lambda reason: None,
    )
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(10):
            await acked.wait()
    finally:
        await client.disconnect()
        await asyncio.wait_for(task, 5)
        server.close()
    assert got == [redelivered]
