"""One device's processing, from received blocks to strips, events and live chunks (pure).

See :mod:`gateway.pipeline.device` for how the parts fit together.
"""

from gateway.pipeline.device import DevicePipeline, PipelineOutput, StripReady
from gateway.pipeline.facts import StripFacts, Trigger
from gateway.pipeline.live import LiveChunk
from gateway.pipeline.settings import PipelineSettings

__all__ = [
    "DevicePipeline",
    "LiveChunk",
    "PipelineOutput",
    "PipelineSettings",
    "StripFacts",
    "StripReady",
    "Trigger",
]
