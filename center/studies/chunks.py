"""A full-disclosure record chunk (``ecg-gateway/record/v1``), checked and decoded (pure).

Every chunk carries the record's header text, its SHA-256 (of the header bytes followed by
the signal bytes) and its own (of the chunk's signal bytes): a chunk whose bytes do not
match its checksum is rejected here and never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["RECORD_SCHEMA", "RecordChunk", "decode_chunk"]

RECORD_SCHEMA = "ecg-gateway/record/v1"

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}(/[A-Za-z0-9_.-]{1,79})?$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_CHUNKS = 1_000_000
_MAX_SIZE = 2**40
_MAX_HEADER = 8192


class ChunkError(ValueError):
    """Not a usable record chunk; ``str()`` is the reason."""


@dataclass(frozen=True, slots=True)
class RecordChunk:
    """One verified chunk of one version of one record."""

    gateway: str
    device: str
    name: str
    version: int
    sha256: str
    size: int  # .dat bytes of the whole record
    header: str
    index: int
    chunks: int
    offset: int
    data: bytes
    prefix: str = "ecg/v1"  # the topic prefix it came under (the confirmation goes there)


def _int(body: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ChunkError(f"{key} is not an integer in range")
    return v


def decode_chunk(
    gateway: str, device: str, body: dict[str, Any], prefix: str = "ecg/v1"
) -> RecordChunk:
    """The chunk in ``body`` (already JSON-decoded); :class:`ChunkError` when unusable."""
    if body.get("schema") != RECORD_SCHEMA:
        raise ChunkError("unknown schema for a record chunk")
    name, sha, header = body.get("record"), body.get("sha256"), body.get("header")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ChunkError("record name unusable")
    if not isinstance(sha, str) or not _HEX64.match(sha):
        raise ChunkError("sha256 is not 64 hex digits")
    if not isinstance(header, str) or not 0 < len(header) <= _MAX_HEADER:
        raise ChunkError("header missing or too long")
    chunks = _int(body, "chunks", 1, _MAX_CHUNKS)
    index = _int(body, "chunk", 0, chunks - 1)
    size, offset = _int(body, "size", 0, _MAX_SIZE), _int(body, "offset", 0, _MAX_SIZE)
    try:
        data = base64.b64decode(str(body.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise ChunkError("data is not base64") from None
    if hashlib.sha256(data).hexdigest() != body.get("chunk_sha256"):
        raise ChunkError("chunk checksum does not match its data")
    if offset + len(data) > size:
        raise ChunkError("chunk beyond the record's size")
    return RecordChunk(
        gateway,
        device,
        name,
        _int(body, "version", 1, 2**31 - 1),
        sha,
        size,
        header,
        index,
        chunks,
        offset,
        data,
        prefix,
    )
