"""riffusion.dataset: windows, captions, silence, resuming, shards, engines, imagefolder layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion import Audio, ParameterError, SpectrogramParams, audio_to_image
from riffusion.dataset import (
    find_audio_files,
    load_caption_mapping,
    prepare,
    window_starts,
    write_metadata,
)

# Small images keep the tests fast: 64 mel bins, 64-column windows (0.64 s at 44.1 kHz).
PARAMS = SpectrogramParams(num_frequencies=64)
WINDOW_PX = 64
RATE = PARAMS.sample_rate


def _tone(seconds: float, frequency_hz: float, level: float = 0.3) -> Audio:
    t = np.arange(int(seconds * RATE)) / RATE
    return Audio((level * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32), RATE)


def _corpus(root: Path) -> Path:
    """jazz/piano/a.wav (with sidecar), jazz/b.flac, c.wav (silent middle), d.wav (corrupt)."""
    (root / "jazz" / "piano").mkdir(parents=True)
    _tone(2.0, 440.0).save(root / "jazz" / "piano" / "a.wav")
    (root / "jazz" / "piano" / "a.txt").write_text("  solo piano,\n  bright  \n")
    _tone(1.5, 220.0).save(root / "jazz" / "b.flac")
    silent_middle = np.concatenate(
        [
            _tone(0.64, 330.0).waveform,
            np.zeros((1, PARAMS.samples_for_width(WINDOW_PX)), np.float32),
            _tone(0.64, 330.0).waveform,
        ],
        axis=1,
    )
    Audio(silent_middle, RATE).save(root / "c.wav")
    (root / "d.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    (root / ".hidden").mkdir()
    _tone(1.0, 100.0).save(root / ".hidden" / "e.wav")
    return root


def _prepare(src: Path, out: Path, **kwargs) -> object:
    kwargs.setdefault("params", PARAMS)
    kwargs.setdefault("window_px", WINDOW_PX)
    kwargs.setdefault("progress", False)
    return prepare(src, out, **kwargs)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    return _prepare(corpus, out, captions={"jazz/b": "cool bass"}), out


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def test_window_starts():
    # The tail: one more window ends with the audio (700 + 300 = 1000) unless one already does.
    assert window_starts(1000, 300, 300) == [0, 300, 600, 700]
    assert window_starts(1000, 300, 300, keep_tail=False) == [0, 300, 600]
    assert window_starts(1000, 300, 100) == [0, 100, 200, 300, 400, 500, 600, 700]
    assert window_starts(900, 300, 300) == [0, 300, 600]
    assert window_starts(100, 300, 300) == [0]
    assert window_starts(300, 300, 300) == [0]
    with pytest.raises(ParameterError, match="hop_samples=0"):
        window_starts(1000, 300, 0)


def test_find_audio_files_sorted_and_skips_hidden(corpus):
    names = [p.relative_to(corpus).as_posix() for p in find_audio_files(corpus)]
    assert names == ["c.wav", "d.wav", "jazz/b.flac", "jazz/piano/a.wav"]


def test_windows_captions_and_metadata(prepared):
    result, out = prepared
    window = PARAMS.samples_for_width(WINDOW_PX)
    records = _records(out)
    by_source: dict[str, list[dict]] = {}
    for record in records:
        by_source.setdefault(record["source"], []).append(record)
    # Windows start every WINDOW_PX columns (WINDOW_PX · hop samples), so their images tile the
    # whole file's spectrogram; each holds (WINDOW_PX − 1) · hop samples (Riffusion's frame
    # convention), and one more ends with the file. a.wav: 2 s, b: 1.5 s, each 2 whole windows
    # plus the tail; c: exactly 3 windows (no tail to add), the silent middle one skipped.
    step = WINDOW_PX * PARAMS.hop_length
    for source, seconds in (("jazz/piano/a.wav", 2.0), ("jazz/b.flac", 1.5)):
        num_samples = int(seconds * RATE)
        whole = list(range(0, num_samples - window + 1, step))
        assert [r["start_s"] for r in by_source[source]] == [
            round(s / RATE, 6) for s in [*whole, num_samples - window]
        ]
        # The tail window ends with the file: nothing after the last whole window is lost.
        assert num_samples - (whole[-1] + window) > 0
    assert [r["start_s"] for r in by_source["c.wav"]] == [0.0, round(2 * step / RATE, 6)]
    assert result.windows_silent == 1
    # Captions: sidecar (whitespace collapsed), mapping without extension, template.
    assert {r["text"] for r in by_source["jazz/piano/a.wav"]} == {"solo piano, bright"}
    assert {r["text"] for r in by_source["jazz/b.flac"]} == {"cool bass"}
    assert {r["text"] for r in by_source["c.wav"]} == {"music"}
    for record in records:
        assert record["duration_s"] == round(window / RATE, 6)
        assert -30 < record["loudness_lufs"] < 0
    assert [r["file_name"] for r in records] == sorted(r["file_name"] for r in records)
    assert result.num_records == len(records)


def test_corrupt_file_reported_not_fatal(prepared):
    result, _ = prepared
    assert [source for source, _ in result.failures] == ["d.wav"]
    assert "d.wav" in result.failures[0][1]
    assert result.files == 4 and result.files_done == 3


def test_images_are_audio_to_image_of_the_window(prepared, corpus):
    _, out = prepared
    record = next(r for r in _records(out) if r["source"] == "jazz/piano/a.wav" and r["start_s"])
    audio = Audio.load(corpus / "jazz/piano/a.wav")
    start = round(record["start_s"] * RATE)
    piece = Audio(audio.waveform[:, start : start + PARAMS.samples_for_width(WINDOW_PX)], RATE)
    expected = audio_to_image(piece, PARAMS)
    image = Image.open(out / record["file_name"])
    assert image.size == (WINDOW_PX, PARAMS.num_frequencies)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    # Riffusion's EXIF: the parameters round-trip.
    assert SpectrogramParams.from_exif(dict(image.getexif())).num_frequencies == 64


def test_huggingface_imagefolder_loads_it(prepared):
    datasets = pytest.importorskip("datasets")
    _, out = prepared
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    records = _records(out)
    assert len(loaded) == len(records)
    assert sorted(loaded["text"]) == sorted(r["text"] for r in records)
    row = loaded[0]
    assert row["image"].size == (WINDOW_PX, 64)
    assert {"text", "source", "start_s", "duration_s", "loudness_lufs"} <= set(row)


def test_rerun_skips_and_resumes(corpus, tmp_path):
    out = tmp_path / "ds"
    first = _prepare(corpus, out)
    before = _tree(out)
    again = _prepare(corpus, out)
    assert again.files_skipped == 3 and again.windows_written == 0
    assert _tree(out) == before
    # An interrupted run: a.wav's manifest record never got written, and one image is missing.
    manifests = sorted((out / ".riffusion" / "manifest").glob("*.json"))
    a_manifest = next(m for m in manifests if "jazz/piano/a.wav" in m.read_text())
    a_manifest.unlink()
    a_images = sorted((out / "images").glob("jazz__piano__a*.png"))
    a_images[-1].unlink()
    resumed = _prepare(corpus, out)
    assert resumed.files_skipped == 2 and resumed.files_done == 1
    assert (resumed.windows_written, resumed.windows_reused) == (1, len(a_images) - 1)
    assert _tree(out) == before
    assert first.windows_written == len(_records(out))


def test_deterministic_shards_and_workers(corpus, tmp_path):
    # The pool's workers run torch with one thread (dataset._worker_init): so do the in-process
    # runs, for the PNG bytes to be comparable (with more threads, MKL may split a matrix
    # product's sums differently on a many-core machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = tmp_path / "whole"
        _prepare(corpus, whole)
        sharded = tmp_path / "sharded"
        zero = _prepare(corpus, sharded, shard=(0, 2))
        one = _prepare(corpus, sharded, shard=(1, 2))
        pool = tmp_path / "pool"
        _prepare(corpus, pool, workers=2)
    finally:
        torch.set_num_threads(before)
    sources = lambda result: {r.source for r in result.results}  # noqa: E731
    assert sources(zero) & sources(one) == set()
    assert sources(zero) | sources(one) == {"c.wav", "d.wav", "jazz/b.flac", "jazz/piano/a.wav"}
    assert _tree(sharded) == _tree(whole)
    assert _tree(pool) == _tree(whole)


def test_overlap_and_stereo(corpus, tmp_path):
    out = tmp_path / "overlap"
    result = _prepare(corpus, out, hop_px=WINDOW_PX // 2, params=PARAMS.replace(stereo=True))
    window = PARAMS.samples_for_width(WINDOW_PX)
    hop = (WINDOW_PX // 2) * PARAMS.hop_length
    a = [r for r in _records(out) if r["source"] == "jazz/piano/a.wav"]
    assert [r["start_s"] for r in a] == [
        round(s / RATE, 6) for s in range(0, 2 * RATE - window + 1, hop)
    ]
    image = Image.open(out / a[0]["file_name"])
    assert SpectrogramParams.from_exif(dict(image.getexif())).stereo is True
    assert result.windows_written == len(_records(out))


def test_settings_mismatch_and_bad_arguments(corpus, tmp_path):
    out = tmp_path / "ds"
    _prepare(corpus, out, shard=(0, 4))
    with pytest.raises(ParameterError, match="other settings"):
        _prepare(corpus, out, window_px=32)
    for kwargs, message in (
        ({"shard": (2, 2)}, "shard="),
        ({"engine": "spark"}, "engine='spark'"),
        ({"window_px": 0}, "window_px=0"),
        ({"workers": 0}, "workers=0"),
        ({"min_loudness_db": float("nan")}, "min_loudness_db=nan"),
        ({"template": "{genre}"}, "template="),
    ):
        with pytest.raises(ParameterError, match=message):
            _prepare(corpus, tmp_path / "other", **kwargs)
    with pytest.raises(ParameterError, match="not an existing folder"):
        prepare(tmp_path / "missing", out)


def test_caption_mapping_files(tmp_path):
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text("file,text\njazz/a.wav,smooth jazz\nb,rock\n")
    assert load_caption_mapping(csv_file) == {"jazz/a.wav": "smooth jazz", "b": "rock"}
    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text('{"file_name": "a.wav", "caption": "lofi"}\n\n')
    assert load_caption_mapping(jsonl) == {"a.wav": "lofi"}
    jsonl.write_text('{"file_name": "a.wav"}\n')
    with pytest.raises(ParameterError, match="entry 1"):
        load_caption_mapping(jsonl)
    (tmp_path / "captions.txt").write_text("a.wav lofi\n")
    with pytest.raises(ParameterError, match=r"must be a \.csv or \.jsonl"):
        load_caption_mapping(tmp_path / "captions.txt")
    with pytest.raises(ParameterError, match="not an existing CSV or JSONL"):
        load_caption_mapping(tmp_path / "nope.csv")


def test_folder_names_and_template(tmp_path):
    src = tmp_path / "src"
    (src / "lo_fi").mkdir(parents=True)
    _tone(0.7, 300.0).save(src / "lo_fi" / "x.wav")
    _tone(0.7, 300.0).save(src / "y.wav")
    out = tmp_path / "out"
    _prepare(src, out, template="a {stem} track")
    assert {r["source"]: r["text"] for r in _records(out)} == {
        "lo_fi/x.wav": "lo fi",
        "y.wav": "a y track",
    }
    assert write_metadata(out) == 4  # 0.7 s: one whole window and the tail, for each file


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_writes_the_same_bytes(corpus, prepared, ray_instance, tmp_path):
    _, local = prepared
    out = tmp_path / "ray"
    result = _prepare(corpus, out, engine="ray", captions={"jazz/b": "cool bass"})
    assert [source for source, _ in result.failures] == ["d.wav"]
    assert _tree(out) == _tree(local)


def test_prepare_dataset_command(corpus, prepared, tmp_path, capsys):
    from riffusion.cli import main

    _, library_out = prepared
    out = tmp_path / "cli"
    status = main(
        [
            "prepare-dataset",
            str(corpus),
            "-o",
            str(out),
            "--window-px",
            "64",
            "--captions",
            str(_write_captions(tmp_path)),
            "--quiet",
        ]
    )
    # The command uses Riffusion's parameters (512 mel bins): same windows, taller images.
    assert status == 0
    records = _records(out)
    assert [(r["source"], r["start_s"], r["text"]) for r in records] == [
        (r["source"], r["start_s"], r["text"]) for r in _records(library_out)
    ]
    with Image.open(out / records[0]["file_name"]) as image:
        assert image.size == (WINDOW_PX, 512)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "skipped d.wav" in captured.err
    # Rerun without the mapping: nothing encoded again, b.flac's caption becomes its folder's.
    assert main(["prepare-dataset", str(corpus), "-o", str(out), "--window-px", "64"]) == 0
    assert "0 written" in capsys.readouterr().out
    assert {r["text"] for r in _records(out) if r["source"] == "jazz/b.flac"} == {"jazz"}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare-dataset", str(empty), "-o", str(tmp_path / "none"), "-q"]) == 1
    assert main(["prepare-dataset", str(corpus), "-o", str(out), "--shard", "2/2"]) == 2
    assert "I/N needs 0 <= I < N" in capsys.readouterr().err


def _write_captions(folder: Path) -> Path:
    path = folder / "captions.csv"
    path.write_text("file,text\njazz/b,cool bass\n")
    return path


def _looped_noise(periods: int, seed: int = 0) -> Audio:
    """Seeded noise repeating every WINDOW_PX columns: whole windows at multiples of it match."""
    period = np.random.default_rng(seed).uniform(-0.3, 0.3, WINDOW_PX * PARAMS.hop_length)
    return Audio(np.tile(period, periods).astype(np.float32), RATE)


def test_duplicate_windows_are_skipped_and_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _looped_noise(4).save(src / "loop.wav")
    out = tmp_path / "out"
    result = _prepare(src, out)
    # Windows at 0, 1, 2 and 3 periods hold the same samples, so the same image: the first is
    # kept, 3 are duplicates. The tail window starts 441 samples later in the period: kept.
    window = PARAMS.samples_for_width(WINDOW_PX)
    assert result.windows_duplicate == 3
    assert [r["start_s"] for r in _records(out)] == [0.0, round((4 * 64 * 441 - window) / RATE, 6)]
    manifest = json.loads(next((out / ".riffusion" / "manifest").glob("*.json")).read_text())
    assert manifest["duplicate"] == 3
    assert len(list((out / "images").glob("*.png"))) == 2
    # Resuming re-decides the same way (the duplicates were never written): same bytes.
    before = _tree(out)
    next((out / ".riffusion" / "manifest").glob("*.json")).unlink()
    resumed = _prepare(src, out)
    assert (resumed.windows_duplicate, resumed.windows_reused, resumed.windows_written) == (3, 2, 0)
    assert _tree(out) == before
    kept = _prepare(src, tmp_path / "all", skip_duplicates=False)
    assert (kept.windows_duplicate, kept.num_records) == (0, 5)


def test_captions_from_tags(tmp_path):
    import soundfile

    from riffusion.dataset import read_tags

    src = tmp_path / "src"
    (src / "rock").mkdir(parents=True)

    def tagged(name: str, **tags: str) -> None:
        with soundfile.SoundFile(src / name, "w", RATE, 1) as handle:
            for key, value in tags.items():
                setattr(handle, key, value)
            handle.write(_tone(0.7, 300.0).waveform[0])

    tagged("a.wav", title="Blue  Train", genre="jazz", artist="Coltrane")
    tagged("b.flac", title="Only a title")  # no genre: falls through to the template
    tagged("c.wav", title="Sidecar loses", genre="funk")
    (src / "c.txt").write_text("from the sidecar")
    tagged("rock/d.wav", genre="rock", title="D")
    assert read_tags(src / "a.wav") == {
        "title": "Blue Train",
        "artist": "Coltrane",
        "genre": "jazz",
    }
    assert read_tags(src / "b.flac") == {"title": "Only a title"}
    out = tmp_path / "out"
    _prepare(src, out, caption_template="{genre}, {title} ({stem})", template="untagged {stem}")
    captions = {r["source"]: r["text"] for r in _records(out)}
    assert captions == {
        "a.wav": "jazz, Blue Train (a)",
        "b.flac": "untagged b",
        "c.wav": "from the sidecar",
        "rock/d.wav": "rock, D (d)",  # tags come before folder names
    }
    for bad in ("{year}", "{}", "{genre", "no fields", 3):
        with pytest.raises(ParameterError, match="caption_template="):
            _prepare(src, tmp_path / "bad", caption_template=bad)


def test_random_crops_are_seeded(corpus, tmp_path):
    def crops(out: Path) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for record in _records(out):
            if "_c0" in record["file_name"]:
                found.setdefault(record["source"], []).append(record["start_s"])
        return found

    first = _prepare(corpus, tmp_path / "one", random_crop=2, seed=5)
    again = _prepare(corpus, tmp_path / "two", random_crop=2, seed=5, workers=2)
    other = _prepare(corpus, tmp_path / "three", random_crop=2, seed=6)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    window_s = PARAMS.samples_for_width(WINDOW_PX) / RATE
    found = crops(tmp_path / "one")
    # Two crops per readable file, inside it; c.wav's may land on its silent middle.
    assert set(found) <= {"c.wav", "jazz/b.flac", "jazz/piano/a.wav"}
    assert len(found["jazz/piano/a.wav"]) == 2 and len(found["jazz/b.flac"]) == 2
    assert all(0 <= s <= 2.0 - window_s for s in found["jazz/piano/a.wav"])
    assert crops(tmp_path / "three") != found
    assert first.num_records == again.num_records
    assert other.num_records >= first.num_records - 2
    with pytest.raises(ParameterError, match="other settings"):
        _prepare(corpus, tmp_path / "one", random_crop=3, seed=5)
    with pytest.raises(ParameterError, match="random_crop=-1"):
        _prepare(corpus, tmp_path / "four", random_crop=-1)


def test_url_output_is_refused_without_a_local_folder(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url in ("s3://bucket/x", "gs://b/y", "file:///tmp/z"):
        with pytest.raises(ParameterError, match=f"out_dir='{url}' is a URL"):
            _prepare(corpus, url)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _FakeRay:
    """Records ray.init's arguments; like Ray, refuses num_cpus when a cluster is running."""

    def __init__(self, cluster_running: bool) -> None:
        self.cluster_running = cluster_running
        self.calls: list[dict] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if self.cluster_running and "num_cpus" in kwargs:
            raise ValueError(
                "When connecting to an existing cluster, num_cpus must not be provided"
            )

    def remote(self, **_):
        return lambda function: function


def test_ray_address_and_running_clusters(corpus, tmp_path, monkeypatch):
    import sys

    from riffusion.dataset import _run_ray

    fake = _FakeRay(cluster_running=False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    _run_ray([], 3, lambda result: None, "auto")
    _run_ray([], 3, lambda result: None)
    assert fake.calls == [
        {"address": "auto", "log_to_driver": False},
        {"num_cpus": 3, "include_dashboard": False, "log_to_driver": False},
    ]
    # No address but a running `ray start` cluster (or RAY_ADDRESS): join it, without num_cpus.
    fake = _FakeRay(cluster_running=True)
    monkeypatch.setitem(sys.modules, "ray", fake)
    _run_ray([], 3, lambda result: None)
    assert fake.calls[-1] == {"log_to_driver": False}
    with pytest.raises(ParameterError, match="address='auto' needs engine='ray'"):
        _prepare(corpus, tmp_path / "out", address="auto")


def test_prepare_dataset_command_new_options(tmp_path, capsys):
    from riffusion.cli import main

    src = tmp_path / "src"
    src.mkdir()
    _looped_noise(4).save(src / "loop.wav")
    out = tmp_path / "out"
    args = ["prepare-dataset", str(src), "-o", str(out), "--window-px", "64"]
    assert main([*args, "--random-crop", "1", "--seed", "3", "--no-tail"]) == 0
    summary = capsys.readouterr().out
    # 4 periods: one whole window kept, 3 duplicates; no tail; one random crop (at sample
    # 10378 for seed 3, not a multiple of the period: kept).
    assert summary.startswith("2 windows") and "3 duplicate skipped" in summary
    names = sorted(p.name for p in (out / "images").iterdir())
    assert [name.rsplit("_", 1)[1] for name in names] == ["00000.png", "c000.png"]
    assert main([*args, "--address", "auto"]) == 1
    assert "address='auto' needs engine='ray'" in capsys.readouterr().err
    assert main([*args, "--caption-template", "{year}"]) == 1
    assert "caption_template='{year}'" in capsys.readouterr().err
    assert main(["prepare-dataset", str(src), "-o", "s3://bucket/x", "-q"]) == 1
    assert "'s3://bucket/x' is a URL" in capsys.readouterr().err
