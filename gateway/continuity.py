"""Each device's stream position and study facts, kept across gateway restarts.

A gateway that is killed, loses power or is restarted must not forget where each device
stood: the samples a device produced while the gateway was not running are reported as a
gap ("gateway not running"; a patch with memory backfills them), numbering goes on where
it stopped (nothing recorded is overwritten), and the study record is cumulative.

``<state_dir>/continuity/<device>.json`` holds the device's
:class:`~core.events.StreamPosition` and its :class:`~gateway.payloads.StudyFacts`,
written atomically (temp file, fsync, rename) every ``recording.sync_s`` and at a clean
stop. After a crash that file is up to ``sync_s`` old; the full recording on disk is not
(its pages reach the disk on their own), so at start the position is brought up to where
the recording really ends (:func:`refine_with_recording`), holes included, and the
samples declared lost are counted again from the gap ledger, which every gap reaches the
moment it is reported (:func:`missing_from_ledger`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from core.events import StreamPosition
from core.ranges import runs_of
from gateway.payloads import StudyFacts
from gateway.recording import read_tail

__all__ = ["ContinuityStore", "missing_from_ledger", "refine_with_recording"]

log = logging.getLogger(__name__)


class ContinuityStore:
    """Positions and study facts by device, one small JSON file each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, device_id: str) -> Path:
        return self.root / f"{device_id}.json"

    def load(self, device_id: str) -> tuple[StreamPosition | None, StudyFacts]:
        """What was saved for ``device_id`` (nothing: ``(None, StudyFacts())``). A file
        that does not parse is set aside (``.bad``) and reported, never fatal."""
        path = self._path(device_id)
        try:
            data = json.loads(path.read_text())
            pos = data.get("position")
            position = None
            if pos is not None:
                holes = tuple((int(a), int(b)) for a, b in pos.pop("holes", []))
                position = StreamPosition(**pos, holes=holes)
            return position, StudyFacts(**data.get("study", {}))
        except FileNotFoundError:
            return None, StudyFacts()
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error(
                "%s: continuity file %s unreadable (%s); starting afresh", device_id, path, exc
            )
            with contextlib.suppress(OSError):
                path.replace(path.with_suffix(".bad"))
            return None, StudyFacts()

    def save(self, device_id: str, position: StreamPosition | None, study: StudyFacts) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "position": None if position is None else dataclasses.asdict(position),
            "study": dataclasses.asdict(study),
        }
        tmp = self._path(device_id).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(device_id))


def refine_with_recording(
    position: StreamPosition | None, study: StudyFacts, records: Path
) -> tuple[StreamPosition | None, StudyFacts]:
    """The saved position and study facts brought up to where the device's recording on
    disk really ends (samples written after the last save, before a crash), with the holes
    found in that stretch."""
    tail = read_tail(records, since=position.next_seq if position is not None else None)
    if tail is None:
        return position, study
    first, values_missing, fs, utc_first = tail
    end = first + len(values_missing)
    if position is not None and end <= position.next_seq:
        return position, study
    holes = runs_of(values_missing, first)
    if position is None:  # no save at all: the recording is all there is
        position = StreamPosition(first, utc_first, 0, fs)
    received = len(values_missing) - int(np.count_nonzero(values_missing))
    merged = tuple(sorted({*position.holes, *holes}))
    new_position = dataclasses.replace(
        position, next_seq=end, utc=utc_first + (end - first) / fs, holes=merged, fs=fs
    )
    new_study = dataclasses.replace(
        study,
        fs=fs,
        first_seq=first if study.first_seq is None else study.first_seq,
        end_seq=max(end, study.end_seq or 0),
        start=study.start if study.start is not None else utc_first,
        end=utc_first + (end - first) / fs,
        received=study.received + received,
    )
    return new_position, new_study


def missing_from_ledger(study: StudyFacts, ledger: Path) -> StudyFacts:
    """``study`` with ``missing`` = the samples of every final gap in the device's gap
    ledger (``<state_dir>/study/<device>.gaps.jsonl``): the saved count may be older than
    the last gaps a killed run reported. A line cut by a crash is skipped."""
    try:
        lines = Path(ledger).read_text().splitlines()
    except FileNotFoundError:
        return study
    except OSError as exc:
        log.error("gap ledger %s unreadable (%s): missing samples as last saved", ledger, exc)
        return study
    missing = 0
    for line in lines:
        try:
            entry = json.loads(line)
            if entry.get("final") and "n_samples" in entry:
                missing += int(entry["n_samples"])
        except (ValueError, TypeError, AttributeError):
            continue
    return dataclasses.replace(study, missing=missing)
