"""Compatibility module: joining, tempo and the stream schedule, re-exported from their homes.

``riffusion.looping`` used to hold all three; they now live by concern in
:mod:`riffusion.joins` (crossfades, stitching, periodic decode, the seam metric),
:mod:`riffusion.tempo` (tempo estimate, trimming to whole bars) and :mod:`riffusion.schedule`
(the endless stream's prompt schedule). Import from those in new code.
"""

from __future__ import annotations

from riffusion.joins import periodic_image_to_audio, seam_discontinuity, stitch
from riffusion.schedule import StreamStep, _walk_schedule, stream_schedule
from riffusion.tempo import estimate_tempo, trim_to_bars

__all__ = [
    "StreamStep",
    "estimate_tempo",
    "periodic_image_to_audio",
    "seam_discontinuity",
    "stitch",
    "stream_schedule",
    "trim_to_bars",
]

_ = _walk_schedule  # re-exported for code that reached into the old module
