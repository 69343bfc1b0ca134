"""Training data from a folder of music: spectrogram windows in the Hugging Face imagefolder layout.

:func:`prepare` walks a folder of audio files, cuts each into windows exactly as wide as the
model's images, skips near-silent windows, encodes each with :func:`riffusion.audio_to_image`
(Riffusion's format, parameters in EXIF) and writes::

    OUT/
      metadata.jsonl        one line per image: file_name, text, source, start_s, duration_s,
                            loudness_lufs (sorted by file_name)
      images/<name>.png     the spectrogram windows
      .riffusion/           settings.json and one manifest record per finished audio file

so that ``datasets.load_dataset("imagefolder", data_dir=OUT)`` loads it with its captions.

Windows start every ``hop_px`` columns; one more window, aligned to the end of the file, keeps
its tail (real audio rather than padding). ``random_crop`` adds windows at seeded random offsets.
Windows whose image repeats an earlier window's of the same file are skipped as duplicates.

Captions come from, in order: a sidecar ``<audio stem>.txt`` beside the audio file, the
``captions`` mapping (a CSV or JSONL file, or a dict, keyed by the audio path relative to the
input folder), ``caption_template`` filled in from the file's tags (``{title}``, ``{artist}``,
``{album}``, ``{genre}``), the names of the folders between the input folder and the file
(``jazz/piano/a.wav`` → ``"jazz, piano"``), and last ``template`` (``{stem}`` and ``{folder}``
are filled in).

The work is split per audio file by a pure worker function (:func:`process_file`): the same
input gives the same files, byte for byte, whatever the engine (``"local"`` runs it in this
process or a process pool, ``"ray"`` as Ray tasks) and however the work is sharded. Every file is
written atomically and a manifest record marks each finished audio file, so an interrupted run
continues where it stopped; files that cannot be read are reported and skipped.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riffusion._checks import check_integer, finite_float
from riffusion._files import atomic_output
from riffusion.audio import Audio
from riffusion.convert import audio_to_image
from riffusion.errors import ParameterError, RiffusionError, install_hint
from riffusion.image import save_image
from riffusion.params import SpectrogramParams

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_TEMPLATE",
    "TAG_FIELDS",
    "FileResult",
    "FileTask",
    "PrepareResult",
    "find_audio_files",
    "load_caption_mapping",
    "prepare",
    "process_file",
    "read_tags",
    "window_starts",
    "write_metadata",
]

#: File extensions :func:`prepare` picks up (anything :meth:`riffusion.Audio.load` reads).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
#: The caption used when no sidecar, mapping entry or folder name gives one.
DEFAULT_TEMPLATE = "music"
#: Minimum loudness (in LUFS) of a kept window; quieter ones count as silence.
DEFAULT_MIN_LOUDNESS_DB = -50.0

_STATE_DIR = ".riffusion"
_MANIFEST_DIR = "manifest"
_IMAGES_DIR = "images"
_METADATA = "metadata.jsonl"
_FORMAT_VERSION = 2  # 2: tail window, duplicate skipping, random crops
#: The tags a ``caption_template`` may use (what libsndfile reads from WAV, FLAC and Ogg files).
TAG_FIELDS: tuple[str, ...] = ("title", "artist", "album", "genre")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# ------------------------------------------------------------------------------ value types
@dataclass(frozen=True)
class FileTask:
    """Everything :func:`process_file` needs to turn one audio file into windows.

    Attributes:
        path: the audio file (absolute or relative to the working folder).
        source: its path relative to the input folder, POSIX style (recorded in the metadata).
        caption: the caption of all its windows.
        out_dir: the dataset folder.
        params: spectrogram parameters of the images.
        window_px: image width (in pixels = spectrogram columns).
        hop_px: step between window starts (in pixels); ``window_px`` means no overlap.
        min_loudness_db: windows quieter than this (in LUFS) are skipped.
        keep_tail: add a window aligned to the end of the file (see :func:`window_starts`).
        skip_duplicates: skip windows whose image equals an earlier window's of this file.
        random_crop: extra windows at random offsets (seeded by ``seed`` and ``source``).
        seed: seed of the random crops.
    """

    path: str
    source: str
    caption: str
    out_dir: str
    params: SpectrogramParams
    window_px: int
    hop_px: int
    min_loudness_db: float
    keep_tail: bool = True
    skip_duplicates: bool = True
    random_crop: int = 0
    seed: int = 0


@dataclass(frozen=True)
class FileResult:
    """What :func:`process_file` did with one audio file.

    Attributes:
        source: the file's path relative to the input folder.
        records: the metadata lines of its kept windows, in time order.
        windows_written: windows encoded and written in this call.
        windows_reused: windows whose image already existed (an earlier, interrupted run).
        windows_silent: windows skipped as quieter than ``min_loudness_db``.
        windows_duplicate: windows skipped as the same image as an earlier window of the file.
        already_done: the manifest already held this file; nothing was read.
        error: why the file was skipped (unreadable, corrupt, too short), else ``None``.
    """

    source: str
    records: tuple[dict[str, Any], ...] = ()
    windows_written: int = 0
    windows_reused: int = 0
    windows_silent: int = 0
    windows_duplicate: int = 0
    already_done: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PrepareResult:
    """Summary of a :func:`prepare` run.

    Attributes:
        out_dir: the dataset folder.
        files: audio files this shard was given.
        files_done: files finished by this run.
        files_skipped: files an earlier run had already finished.
        failures: ``(source, reason)`` of every file that could not be used.
        windows_written: images encoded by this run.
        windows_reused: images that were already on disk.
        windows_silent: windows skipped as near-silent.
        windows_duplicate: windows skipped as duplicates (by files processed in this run).
        num_records: lines in ``metadata.jsonl`` (every shard's finished files).
    """

    out_dir: Path
    files: int
    files_done: int
    files_skipped: int
    failures: tuple[tuple[str, str], ...]
    windows_written: int
    windows_reused: int
    windows_silent: int
    windows_duplicate: int = 0
    num_records: int = 0
    results: tuple[FileResult, ...] = field(default=(), repr=False)


# ------------------------------------------------------------------------------ helpers
def _check_number(name: str, value: Any) -> float:
    number = finite_float(value)
    if number is None:
        raise ParameterError(f"{name}={value!r} must be a finite number")
    return number


def _safe_name(source: str) -> str:
    """A readable, unique file-name stem for ``source`` (a relative POSIX path)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", source.replace("/", "__")).strip("._") or "audio"
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()[:8]
    return f"{readable[:80]}-{digest}"


def _manifest_path(out_dir: Path, source: str) -> Path:
    digest = hashlib.sha1(source.encode("utf-8")).hexdigest()
    return out_dir / _STATE_DIR / _MANIFEST_DIR / f"{digest}.json"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def window_starts(
    num_samples: int, window_samples: int, hop_samples: int, *, keep_tail: bool = True
) -> list[int]:
    """First samples of the windows cut from ``num_samples`` samples.

    Whole windows only, from sample 0 every ``hop_samples``, and (``keep_tail``) one more that
    ends with the audio when the last of those does not: the tail is kept as real audio,
    overlapping the window before it, rather than dropped (up to a window less one sample) or
    padded with silence the model would learn as part of the music. Audio shorter than one
    window gives one window at 0 (zero-padded at the end by :func:`process_file`).

    Args:
        num_samples: length of the audio (samples per channel).
        window_samples: length of a window (samples).
        hop_samples: step between window starts (samples).
        keep_tail: add the window aligned to the end of the audio.

    Returns:
        Start offsets in samples, ascending.
    """
    check_integer("num_samples", num_samples)
    check_integer("window_samples", window_samples)
    check_integer("hop_samples", hop_samples)
    if num_samples <= window_samples:
        return [0]
    starts = list(range(0, num_samples - window_samples + 1, hop_samples))
    if keep_tail and starts[-1] != num_samples - window_samples:
        starts.append(num_samples - window_samples)
    return starts


def _crop_starts(
    source: str, num_samples: int, window_samples: int, count: int, seed: int
) -> list[int]:
    """``count`` random window starts, a function of ``seed`` and ``source`` only (so the same
    whatever the order, worker or shard the file is processed in)."""
    import numpy as np

    if count == 0 or num_samples <= window_samples:
        return []
    file_key = int(hashlib.sha256(source.encode("utf-8")).hexdigest()[:15], 16)
    rng = np.random.default_rng([seed, file_key])
    return [int(s) for s in rng.integers(0, num_samples - window_samples + 1, size=count)]


def read_tags(path: str | os.PathLike[str]) -> dict[str, str]:
    """The file's ``title``, ``artist``, ``album`` and ``genre`` tags, those that are set.

    Read by libsndfile (through soundfile, no other dependency): WAV (``INFO`` chunk), FLAC
    and Ogg Vorbis comments, AIFF. Formats libsndfile does not read (MP3 tags, for one) give
    no tags.

    Args:
        path: the audio file.

    Returns:
        Tag name → value (whitespace collapsed); empty when the file has none or cannot be read.
    """
    import soundfile

    try:
        with soundfile.SoundFile(os.fspath(path)) as handle:
            metadata = handle.copy_metadata()
    except (OSError, RuntimeError, ValueError, TypeError):  # soundfile's errors derive from these
        return {}
    tags = {}
    for name in TAG_FIELDS:
        value = " ".join(str(metadata.get(name, "")).split())
        if value:
            tags[name] = value
    return tags


def find_audio_files(audio_dir: str | os.PathLike[str]) -> list[Path]:
    """Audio files under ``audio_dir`` (recursively), sorted by relative POSIX path.

    Hidden files and folders (names starting with ``.``) are ignored.

    Args:
        audio_dir: the folder to search.

    Raises:
        ParameterError: ``audio_dir`` is not an existing folder.
    """
    root = Path(audio_dir)
    if not root.is_dir():
        raise ParameterError(f"audio_dir={str(audio_dir)!r} is not an existing folder")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def load_caption_mapping(
    captions: str | os.PathLike[str] | Mapping[str, str],
) -> dict[str, str]:
    """Read a caption mapping: audio path (relative to the input folder) → caption.

    Args:
        captions: a dict, a CSV file with columns ``file`` and ``text`` (``file_name`` /
            ``caption`` / ``prompt`` are also accepted), or a JSONL file of objects with the
            same keys. Keys may omit the extension (``jazz/a`` matches ``jazz/a.wav``).

    Raises:
        ParameterError: unreadable file, unknown extension, missing columns or empty captions.
    """
    if isinstance(captions, Mapping):
        rows = [{"file": key, "text": value} for key, value in captions.items()]
        name = "captions"
    else:
        path = Path(captions)
        name = str(path)
        if not path.is_file():
            raise ParameterError(f"captions={name!r} is not an existing CSV or JSONL file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ParameterError(f"cannot read captions={name!r}: {error}") from error
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
        elif path.suffix.lower() in (".jsonl", ".json"):
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ParameterError(f"captions={name!r} line {number}: {error}") from error
        else:
            raise ParameterError(f"captions={name!r} must be a .csv or .jsonl file")
    mapping: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ParameterError(f"captions={name!r} entry {number} is not an object")
        key = next((row[k] for k in ("file", "file_name", "path") if row.get(k)), None)
        value = next((row[k] for k in ("text", "caption", "prompt") if row.get(k)), None)
        if not isinstance(key, str) or not isinstance(value, str) or not value.strip():
            raise ParameterError(
                f"captions={name!r} entry {number} ({row!r}) needs a 'file' and a non-empty 'text'"
            )
        mapping[Path(key).as_posix()] = value.strip()
    return mapping


def _template_fields(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _caption_for(
    path: Path,
    root: Path,
    mapping: Mapping[str, str],
    use_folder_names: bool,
    template: str,
    caption_template: str | None = None,
) -> str:
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file():
        text = sidecar.read_text(encoding="utf-8").strip()
        if text:
            return " ".join(text.split())
    relative = path.relative_to(root)
    for key in (relative.as_posix(), relative.with_suffix("").as_posix()):
        if key in mapping:
            return mapping[key]
    if caption_template is not None:
        tags = read_tags(path)
        # Only when every tag it names is set: no "jazz, " for a file without a title.
        if _template_fields(caption_template) & set(TAG_FIELDS) <= set(tags):
            caption = caption_template.format(
                stem=path.stem, folder=relative.parent.as_posix(), **tags
            )
            if caption.strip():
                return " ".join(caption.split())
    folders = [part.replace("_", " ") for part in relative.parent.parts]
    if use_folder_names and folders:
        return ", ".join(folders)
    return template.format(stem=path.stem, folder=relative.parent.as_posix())


# ------------------------------------------------------------------------------ the worker
def process_file(task: FileTask) -> FileResult:
    """Turn one audio file into spectrogram windows (the per-file unit of work).

    Pure apart from its outputs: the images and the manifest record depend only on ``task`` and
    the file's bytes. An image that already exists is not encoded again (atomic writes mean it is
    complete); the manifest record is written last. Never raises for a bad audio file: the
    reason is returned in :attr:`FileResult.error`.

    Args:
        task: the file, its windowing and where to write (a :class:`FileTask`).

    Returns:
        A :class:`FileResult` with the metadata records of the kept windows.
    """
    out_dir = Path(task.out_dir)
    manifest = _manifest_path(out_dir, task.source)
    path = Path(task.path)
    try:
        digest = _file_digest(path)
    except OSError as error:
        return FileResult(task.source, error=f"cannot read: {error}")
    finished = _finished_result(task, manifest, digest)
    if finished is not None:
        return finished
    params = task.params
    try:
        audio = Audio.load(path, sample_rate=params.sample_rate, num_channels=params.num_channels)
    except RiffusionError as error:
        return FileResult(task.source, error=str(error))

    window = params.samples_for_width(task.window_px)
    stem = _safe_name(task.source)
    records: list[dict[str, Any]] = []
    written = reused = silent = duplicate = 0
    seen: set[str] = set()  # digests of this file's kept images
    for label, start in _labelled_starts(task, audio.num_samples, window):
        piece = Audio(audio.waveform[:, start : start + window], sample_rate=audio.sample_rate)
        piece = piece.fit_length(window)
        loudness = _window_loudness(piece)
        if not math.isfinite(loudness) or loudness < task.min_loudness_db:
            silent += 1
            continue
        file_name = f"{_IMAGES_DIR}/{stem}_{label}.png"
        target = out_dir / file_name
        image = _window_image(task, piece, target, window)
        if task.skip_duplicates and image is not None:
            # The image, not the audio: windows that encode alike train alike.
            image_digest = _image_digest(image)
            if image_digest in seen:
                duplicate += 1
                continue
            seen.add(image_digest)
        if target.is_file():
            reused += 1
        else:
            assert image is not None
            save_image(image, target)
            written += 1
        records.append(_window_record(task, file_name, start, window, loudness))
    _write_manifest(manifest, task.source, digest, silent, duplicate, records)
    return FileResult(
        task.source,
        records=tuple(records),
        windows_written=written,
        windows_reused=reused,
        windows_silent=silent,
        windows_duplicate=duplicate,
    )


def _finished_result(task: FileTask, manifest: Path, digest: str) -> FileResult | None:
    """The result of a file an earlier run finished, else ``None`` (the file is to be processed).

    Finished means: the manifest record exists, names the same audio bytes (``digest``, the
    file's SHA-256) and every image it lists is on disk. A damaged record counts as unfinished.
    Captions are metadata only: a changed caption rewrites the record, nothing is re-encoded.
    """
    if not manifest.is_file():
        return None
    out_dir = Path(task.out_dir)
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        if record.get("sha256") == digest and all(
            (out_dir / r["file_name"]).is_file() for r in record["records"]
        ):
            captioned = [{**r, "text": task.caption} for r in record["records"]]
            if captioned != record["records"]:
                _write_text_atomic(manifest, _manifest_text({**record, "records": captioned}))
            return FileResult(task.source, records=tuple(captioned), already_done=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a damaged record is redone
    return None


def _labelled_starts(task: FileTask, num_samples: int, window: int) -> list[tuple[str, int]]:
    """The windows to cut from ``num_samples`` samples: ``(label, first sample)`` pairs.

    Regular windows (the tail one included, see :func:`window_starts`) are labelled by index
    (``00000``, ``00001``, ...), then the random crops ``c000``, ``c001``, ...; ``window`` and
    the starts are in samples.
    """
    hop = task.hop_px * task.params.hop_length  # one column per STFT hop, whatever the convention
    windows = [
        (f"{index:05d}", start)
        for index, start in enumerate(
            window_starts(num_samples, window, hop, keep_tail=task.keep_tail)
        )
    ]
    crops = _crop_starts(task.source, num_samples, window, task.random_crop, task.seed)
    return windows + [(f"c{index:03d}", start) for index, start in enumerate(crops)]


def _window_loudness(piece: Audio) -> float:
    """Loudness of a window: integrated LUFS, or RMS dBFS for windows shorter than 0.4 s."""
    return piece.loudness_lufs() if piece.duration_s >= 0.4 else _rms_dbfs(piece)


def _window_image(task: FileTask, piece: Audio, target: Path, window: int) -> Image.Image | None:
    """The image of a window: the one at ``target`` if it exists (read back only to detect
    duplicates, else ``None``), otherwise ``piece`` (``window`` samples) encoded afresh.

    Raises:
        RiffusionError: the encoded image is not ``task.window_px`` columns wide (a bug).
    """
    if target.is_file():
        if not task.skip_duplicates:
            return None
        from PIL import Image

        with Image.open(target) as stored:
            return stored.copy()
    image = audio_to_image(piece, task.params)
    if image.width != task.window_px:
        raise RiffusionError(
            f"internal: a window of {window} samples encoded to {image.width} columns, "
            f"expected window_px={task.window_px}"
        )
    return image


def _image_digest(image: Image.Image) -> str:
    """SHA-256 (hex) of an image's mode, size and pixels: equal for images that train alike."""
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def _window_record(
    task: FileTask, file_name: str, start: int, window: int, loudness: float
) -> dict[str, Any]:
    """The metadata line of a kept window (``start`` and ``window`` in samples, times in s)."""
    sample_rate = task.params.sample_rate
    return {
        "file_name": file_name,
        "text": task.caption,
        "source": task.source,
        "start_s": round(start / sample_rate, 6),
        "duration_s": round(window / sample_rate, 6),
        "loudness_lufs": round(loudness, 2),
    }


def _write_manifest(
    manifest: Path,
    source: str,
    digest: str,
    silent: int,
    duplicate: int,
    records: list[dict[str, Any]],
) -> None:
    """Write the manifest record that marks ``source`` finished (atomically, as the last step)."""
    record = {
        "source": source,
        "sha256": digest,
        "silent": silent,
        "duplicate": duplicate,
        "records": records,
    }
    _write_text_atomic(manifest, _manifest_text(record))


def _manifest_text(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def _rms_dbfs(audio: Audio) -> float:
    """RMS level (dB full scale) for windows too short for a LUFS measurement."""
    import numpy as np

    rms = float(np.sqrt(np.mean(np.square(audio.waveform, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


def write_metadata(out_dir: str | os.PathLike[str]) -> int:
    """(Re)write ``metadata.jsonl`` from every manifest record in ``out_dir``.

    Lines are sorted by ``file_name``, so the file is the same whatever order (or shard) the
    audio files were processed in. :func:`prepare` calls this at its end; after running shards in
    parallel, call it once more (or rerun any shard, which skips finished files) so the metadata
    lists every shard's windows.

    Args:
        out_dir: the prepared dataset's folder (holding the per-file manifest records).

    Returns:
        The number of lines written.
    """
    out_dir = Path(out_dir)
    records: list[dict[str, Any]] = []
    for manifest in sorted((out_dir / _STATE_DIR / _MANIFEST_DIR).glob("*.json")):
        records.extend(json.loads(manifest.read_text(encoding="utf-8"))["records"])
    records.sort(key=lambda r: r["file_name"])
    lines = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
    _write_text_atomic(out_dir / _METADATA, lines)
    return len(records)


# ------------------------------------------------------------------------------ engines
def _worker_init() -> None:
    # One process per core: keep each to one thread so they do not oversubscribe the CPU.
    import torch

    torch.set_num_threads(1)


def _run_local(
    tasks: Sequence[FileTask], workers: int, on_done: Callable[[FileResult], None]
) -> None:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            on_done(process_file(task))
        return
    context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context, initializer=_worker_init
    ) as pool:
        futures = [pool.submit(process_file, task) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            on_done(future.result())


def _run_ray(
    tasks: Sequence[FileTask],
    workers: int | None,
    on_done: Callable[[FileResult], None],
    address: str | None = None,
) -> None:
    try:
        import ray
    except ImportError as error:
        raise RiffusionError(f"engine='ray' needs Ray: {install_hint('ray')}") from error
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, log_to_driver=False)
        else:
            try:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            except ValueError:
                # No address, but RAY_ADDRESS or a running `ray start` cluster: Ray joins it
                # and refuses num_cpus (the cluster has its own); join it without.
                ray.init(log_to_driver=False)
    remote = ray.remote(num_cpus=1)(process_file)
    pending = [remote.remote(task) for task in tasks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for reference in done:
            on_done(ray.get(reference))


# ------------------------------------------------------------------------------ prepare
def prepare(
    audio_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    window_px: int = 512,
    hop_px: int | None = None,
    captions: str | os.PathLike[str] | Mapping[str, str] | None = None,
    use_folder_names: bool = True,
    template: str = DEFAULT_TEMPLATE,
    stereo: bool = False,
    params: SpectrogramParams | None = None,
    min_loudness_db: float = DEFAULT_MIN_LOUDNESS_DB,
    shard: tuple[int, int] = (0, 1),
    workers: int = 1,
    engine: str = "local",
    address: str | None = None,
    caption_template: str | None = None,
    keep_tail: bool = True,
    skip_duplicates: bool = True,
    random_crop: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> PrepareResult:
    """Cut a folder of audio into spectrogram windows, ready for training.

    Args:
        audio_dir: folder of audio files, searched recursively (see :data:`AUDIO_EXTENSIONS`).
        out_dir: dataset folder to create or continue (imagefolder layout, see the module doc);
            a local or mounted folder, not a URL (``s3://...`` is refused: sync the folder).
        window_px: window width in pixels; each window is ``params.samples_for_width(window_px)``
            samples and encodes to exactly ``window_px`` columns (512 = the model's width).
        hop_px: step between window starts in pixels; ``None`` = ``window_px`` (no overlap),
            smaller values overlap the windows.
        captions: a CSV/JSONL file or dict mapping audio paths (relative to ``audio_dir``) to
            captions; consulted after a sidecar ``.txt`` and before folder names.
        use_folder_names: caption files without sidecar or mapping entry by their folders.
        template: the caption of last resort; ``{stem}`` and ``{folder}`` are filled in.
        stereo: encode left and right (Riffusion's stereo images) instead of a mono mix.
        params: spectrogram parameters (default Riffusion's, with ``stereo``).
        min_loudness_db: windows quieter than this integrated loudness (in LUFS; RMS dBFS for
            windows shorter than 0.4 s) are skipped as near-silent.
        shard: ``(i, n)``: process only the files whose index in the sorted file list is ``i``
            modulo ``n``; the ``n`` shards together cover every file exactly once.
        workers: processes (local engine) or Ray CPUs (``engine="ray"``, Ray not yet initialised).
        engine: ``"local"`` or ``"ray"``; both write the same bytes.
        address: Ray cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``), with
            ``engine="ray"`` only; ``None``: ``RAY_ADDRESS`` or a running ``ray start`` cluster
            if there is one, else a new local Ray with ``workers`` CPUs.
        caption_template: caption from the file's tags (:data:`TAG_FIELDS`, read by
            :func:`read_tags`), e.g. ``"{genre}, {title}"``; ``{stem}`` and ``{folder}`` too.
            Used after a sidecar and the mapping, and only for files that have every tag it
            names; the others fall through to folder names and ``template``.
        keep_tail: add a window aligned to the end of each file, so that its last seconds are
            kept (see :func:`window_starts`).
        skip_duplicates: skip a window whose image is the same, pixel for pixel, as an earlier
            kept window of the same file (loops, repeated digital silence above the threshold).
        random_crop: extra windows per file at random offsets (augmentation), a function of
            ``seed`` and the file's relative path only; ``0`` = none.
        seed: seed of ``random_crop``.
        progress: show a tqdm progress bar (stderr).

    Returns:
        A :class:`PrepareResult`; unreadable files go to its ``failures`` and stderr, never fatal.

    Raises:
        ParameterError: a bad argument, or ``out_dir`` prepared earlier with other settings.
    """
    root = Path(audio_dir)
    files = find_audio_files(root)
    window_px = check_integer("window_px", window_px)
    hop_px = window_px if hop_px is None else check_integer("hop_px", hop_px)
    min_loudness_db = _check_number("min_loudness_db", min_loudness_db)
    workers = check_integer("workers", workers)
    random_crop = check_integer("random_crop", random_crop, minimum=0)
    seed = check_integer("seed", seed, minimum=0)
    _check_run_options(engine, shard, template, caption_template)
    _check_destination(out_dir, engine, address)
    params = _dataset_params(params, stereo, window_px)
    mapping = load_caption_mapping(captions) if captions is not None else {}

    out = _create_layout(Path(out_dir))
    options = _window_options(keep_tail, skip_duplicates, random_crop, seed)
    _check_settings(out, params, window_px, hop_px, min_loudness_db, options)
    paths = files[shard[0] :: shard[1]]
    captions_of = _captions(paths, root, mapping, use_folder_names, template, caption_template)
    tasks = _file_tasks(
        paths, root, captions_of, out, params, window_px, hop_px, min_loudness_db, options
    )
    results = _run_tasks(tasks, engine, workers, progress, address)
    return _summary(out, len(tasks), results, num_records=write_metadata(out))


def _check_destination(out_dir: str | os.PathLike[str], engine: str, address: Any) -> None:
    """Check :func:`prepare`'s Ray ``address`` (``engine="ray"`` only) and that ``out_dir`` is
    a local or mounted folder, not a URL."""
    if address is not None and (engine != "ray" or not isinstance(address, str) or not address):
        raise ParameterError(
            f"address={address!r} needs engine='ray' (got engine={engine!r}) and a non-empty "
            "string such as 'auto' or 'HOST:6379'"
        )
    if _URL_SCHEME.match(os.fspath(out_dir)):
        raise ParameterError(
            f"out_dir={os.fspath(out_dir)!r} is a URL; prepare writes to a local or mounted "
            "folder only (prepare into a folder, then copy it, e.g. with `aws s3 sync`)"
        )


def _create_layout(out: Path) -> Path:
    """Create the dataset folder ``out`` with its images and manifest folders; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / _IMAGES_DIR).mkdir(exist_ok=True)
    (out / _STATE_DIR / _MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
    return out


def _window_options(
    keep_tail: bool, skip_duplicates: bool, random_crop: int, seed: int
) -> dict[str, Any]:
    """The windowing options shared by every :class:`FileTask` and recorded in the settings."""
    return {
        "keep_tail": bool(keep_tail),
        "skip_duplicates": bool(skip_duplicates),
        "random_crop": random_crop,
        "seed": seed,
    }


def _captions(
    paths: Sequence[Path],
    root: Path,
    mapping: Mapping[str, str],
    use_folder_names: bool,
    template: str,
    caption_template: str | None,
) -> list[str]:
    """The caption of each audio file of ``paths``, in order (see :func:`_caption_for`)."""
    return [
        _caption_for(path, root, mapping, use_folder_names, template, caption_template)
        for path in paths
    ]


def _file_tasks(
    paths: Sequence[Path],
    root: Path,
    captions: Sequence[str],
    out: Path,
    params: SpectrogramParams,
    window_px: int,
    hop_px: int,
    min_loudness_db: float,
    options: Mapping[str, Any],
) -> list[FileTask]:
    """One :class:`FileTask` per audio file of ``paths`` (under ``root``), with its caption."""
    return [
        FileTask(
            path=str(path),
            source=path.relative_to(root).as_posix(),
            caption=caption,
            out_dir=str(out),
            params=params,
            window_px=window_px,
            hop_px=hop_px,
            min_loudness_db=min_loudness_db,
            **options,
        )
        for path, caption in zip(paths, captions, strict=True)
    ]


def _check_run_options(engine: Any, shard: Any, template: Any, caption_template: Any) -> None:
    """Check :func:`prepare`'s engine, shard, ``template`` and ``caption_template`` (before any
    file is read)."""
    if engine not in ("local", "ray"):
        raise ParameterError(f"engine={engine!r} must be 'local' or 'ray'")
    if (
        not isinstance(shard, tuple | list)
        or len(shard) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise ParameterError(f"shard={shard!r} must be (i, n) with integers 0 <= i < n")
    if not isinstance(template, str):
        raise ParameterError(f"template={template!r} must be a string")
    try:
        template.format(stem="", folder="")
    except (KeyError, IndexError, ValueError) as error:
        raise ParameterError(
            f"template={template!r} may only use the fields {{stem}} and {{folder}}"
        ) from error
    _check_caption_template(caption_template)


def _check_caption_template(caption_template: Any) -> None:
    if caption_template is None:
        return
    allowed = {*TAG_FIELDS, "stem", "folder"}
    valid = isinstance(caption_template, str)
    if valid:
        try:
            fields = _template_fields(caption_template)
            caption_template.format(**dict.fromkeys(allowed, ""))
            valid = bool(fields) and fields <= allowed
        except (KeyError, IndexError, ValueError):
            valid = False
    if not valid:
        raise ParameterError(
            f"caption_template={caption_template!r} must be a string using the fields "
            f"{{{'}, {'.join(sorted(allowed))}}}, e.g. '{{genre}}, {{title}}'"
        )


def _dataset_params(params: Any, stereo: bool, window_px: int) -> SpectrogramParams:
    """The spectrogram parameters of the images: ``params``, or Riffusion's with ``stereo``."""
    if params is None:
        params = SpectrogramParams(stereo=bool(stereo))
    elif not isinstance(params, SpectrogramParams):
        raise ParameterError(f"params={params!r} must be a SpectrogramParams")
    elif stereo and not params.stereo:
        raise ParameterError("stereo=True contradicts params.stereo=False; set one of them")
    if params.samples_for_width(window_px) < 1:
        raise ParameterError(f"window_px={window_px} gives windows with no samples")
    return params


def _run_tasks(
    tasks: Sequence[FileTask],
    engine: str,
    workers: int,
    progress: bool,
    address: str | None = None,
) -> list[FileResult]:
    """Run every task on ``engine``, with a progress bar; the results in the order they land.

    Unreadable files are reported on stderr as they land (above the bar when it shows).
    """
    from tqdm.auto import tqdm

    results: list[FileResult] = []
    bar = tqdm(total=len(tasks), desc="prepare-dataset", unit="file", disable=not progress)

    def on_done(result: FileResult) -> None:
        results.append(result)
        if result.error is not None:
            message = f"skipped {result.source}: {result.error}"
            if progress:
                bar.write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr)
        bar.update(1)
        bar.set_postfix(windows=sum(len(r.records) for r in results), refresh=False)

    try:
        if engine == "ray":
            _run_ray(tasks, workers, on_done, address)
        else:
            _run_local(tasks, workers, on_done)
    finally:
        bar.close()
    return results


def _summary(
    out: Path, num_files: int, results: list[FileResult], *, num_records: int
) -> PrepareResult:
    """Add up the per-file results (sorted by source, so the order of landing does not show)."""
    results = sorted(results, key=lambda r: r.source)
    return PrepareResult(
        out_dir=out,
        files=num_files,
        files_done=sum(1 for r in results if r.error is None and not r.already_done),
        files_skipped=sum(1 for r in results if r.already_done),
        failures=tuple((r.source, r.error) for r in results if r.error is not None),
        windows_written=sum(r.windows_written for r in results),
        windows_reused=sum(r.windows_reused for r in results),
        windows_silent=sum(r.windows_silent for r in results),
        windows_duplicate=sum(r.windows_duplicate for r in results),
        num_records=num_records,
        results=tuple(results),
    )


def _check_settings(
    out: Path,
    params: SpectrogramParams,
    window_px: int,
    hop_px: int,
    min_loudness_db: float,
    options: Mapping[str, Any],
) -> None:
    """Record the settings in ``out``; refuse to mix windows made with other settings."""
    settings = {
        "format_version": _FORMAT_VERSION,
        "params": dataclasses.asdict(params),
        "window_px": window_px,
        "hop_px": hop_px,
        "window_samples": params.samples_for_width(window_px),
        "min_loudness_db": min_loudness_db,
        **options,
    }
    path = out / _STATE_DIR / "settings.json"
    if path.is_file():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            existing = None
        if existing != json.loads(json.dumps(settings)):
            raise ParameterError(
                f"out_dir={str(out)!r} was prepared with other settings ({existing}); use a new "
                "folder, or the same window_px, hop_px, params, min_loudness_db, keep_tail, "
                "skip_duplicates, random_crop and seed"
            )
        return
    _write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")
