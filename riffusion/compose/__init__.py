"""The music algorithms as plain functions over an image model and a decoder.

Continuation windows (:mod:`~riffusion.compose.continuation`), audio-to-audio windows
(:mod:`~riffusion.compose.audio_windows`), one window between two prompts
(:mod:`~riffusion.compose.interpolation`), loops in bars (:mod:`~riffusion.compose.loops`) and the
endless stream (:mod:`~riffusion.compose.stream`), each rendering a :class:`~riffusion.Recipe`
through :func:`riffusion.compose.replay.render_recipe`. Apps may call them directly; the
:class:`~riffusion.Riffuser` verbs are thin front ends over them.
"""
