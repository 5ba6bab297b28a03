"""Streaming ECG signal processing: pure, synchronous, block by block.

Nothing in this package does I/O or imports asyncio, bleak, serial or MQTT.
"""

from core.block import SampleBlock, concat_blocks
from dsp.qrs import detect_beats

__all__ = ["SampleBlock", "concat_blocks", "detect_beats"]
