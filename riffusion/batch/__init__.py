"""Batch rendering: many recipes to audio, spectrograms and a manifest, in-process or on Ray.

A *job* is a :class:`~riffusion.Recipe` with an id. :func:`render` writes, for each
job, a folder ``<output>/<id>/`` holding ``audio.wav``, ``spectrogram.png`` and ``recipe.json``,
plus one ``<output>/manifest.jsonl`` line per job (id, status, files with sizes and SHA-256,
error, attempts, timings).

Guarantees:

- The bytes of a job's files do not depend on the engine: both engines run the same
  :class:`RenderWorker` class (in-process for ``engine="local"``, as Ray actors for
  ``engine="ray"``) with the same torch thread count, and the recipe fixes every input.
- Reruns skip finished jobs: a job is finished when the manifest says ``done`` for the same
  recipe (by digest) and every file it lists is present with the recorded size.
- A job that fails (an exception, or its worker process dying) is retried up to
  ``max_retries`` times, then recorded as ``failed`` with its error; the other jobs go on.
  Invalid recipes (:class:`~riffusion.errors.ParameterError`) are not retried.
- Output folders come from job ids that cannot leave the output folder (see
  :func:`check_job_id`); every file is written under a temporary name and renamed into place.
- The output may be a local folder or any fsspec URL
  (``s3://bucket/run``, ``gs://...``, ``file:///shared/run``, ``memory://run``).
- Importing this package loads neither diffusers nor transformers: jobs and manifests are read
  and checked without the model code, which loads when a worker starts.

The package, one concept per module: :mod:`~riffusion.batch.jobs` (job ids, forms and jobs
files), :mod:`~riffusion.batch.storage` (folders and fsspec URLs),
:mod:`~riffusion.batch.manifest`, :mod:`~riffusion.batch.worker` (renders and writes one
job), :mod:`~riffusion.batch.engines` (local and Ray) and :mod:`~riffusion.batch.rendering`
(:func:`render`).
"""

from __future__ import annotations

from riffusion.batch.jobs import BatchJob, check_job_id, load_jobs, make_job, recipe_digest
from riffusion.batch.manifest import MANIFEST_NAME, ManifestEntry, read_manifest
from riffusion.batch.rendering import BatchResult, render
from riffusion.batch.worker import AUDIO_NAME, IMAGE_NAME, RECIPE_NAME, RenderWorker

__all__ = [
    "AUDIO_NAME",
    "IMAGE_NAME",
    "MANIFEST_NAME",
    "RECIPE_NAME",
    "BatchJob",
    "BatchResult",
    "ManifestEntry",
    "RenderWorker",
    "check_job_id",
    "load_jobs",
    "make_job",
    "read_manifest",
    "recipe_digest",
    "render",
]
