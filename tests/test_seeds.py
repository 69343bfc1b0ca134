from __future__ import annotations

import numpy as np
import pytest

import riffusion
from riffusion import ParameterError, RiffusionError, SpectrogramParams, audio_to_image
from riffusion.image import params_from_image
from riffusion.prompts import PROMPTS, random_prompt
from riffusion.seeds import (
    DEFAULT_SEED_IMAGE,
    RIFFUSION_ALIASES,
    SEED_BPM,
    image_fingerprint,
    load_mask_image,
    load_seed_image,
    make_mask,
    make_seed_image,
    register_seed_images,
    registered_images,
    resolve_mask_id,
    resolve_seed_id,
    synthesize_seed_audio,
    unregister_seed_images,
)
from riffusion.tempo import estimate_tempo
from tests.tolerances import assert_images_match

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


def test_at_least_four_seed_images_with_documented_tempo():
    seeds = riffusion.seed_images()
    assert len(seeds) >= 4
    for seed in seeds:
        assert seed.bpm == SEED_BPM == 93.75 and seed.kind == "seed" and seed.description
        image = load_seed_image(seed.name)
        assert image.size == (512, 512) and image.mode == "RGB"
        assert params_from_image(image) == SpectrogramParams()


@pytest.mark.parametrize("name", [seed.name for seed in riffusion.seed_images()])
def test_shipped_seed_images_match_their_synthesis_code(name):
    audio = synthesize_seed_audio(name)
    # Two bars = one period of 225,792 samples → 512 columns (Riffusion's one-shot encoding
    # gives 513; the 513th frame is the next bar's downbeat).
    assert audio.num_samples == 225792
    rebuilt = np.asarray(make_seed_image(name))
    assert rebuilt.shape == (512, 512, 3)
    # Bit-stable, so compared exactly: the synthesis is NumPy float64 rounded once to float32
    # samples, and the image is made from float64 magnitudes (make_seed_image), which differ by
    # ~1e-16 relative between FFT and BLAS kernels; rounded to float32 and quantised with a
    # correctly rounded root, they give the same pixels unless a value lies within ~1e-16 of a
    # rounding boundary. Checked equal under MKL_ENABLE_INSTRUCTIONS=AVX2 and SSE4_2,
    # MKL_CBWR=COMPATIBLE, ATEN_CPU_CAPABILITY=default and NPY_DISABLE_CPU_FEATURES.
    assert np.array_equal(rebuilt, np.asarray(load_seed_image(name)))
    # Riffusion's float32 encoding of the same audio is the same picture within float32's
    # rounding (see tests/tolerances.py: the faintest pixels are rounding noise in float32).
    one_shot = np.asarray(audio_to_image(audio))
    assert one_shot.shape == (512, 513, 3)
    assert_images_match(one_shot[:, :512], rebuilt)


@pytest.mark.parametrize("name", ["straight_beat", "four_on_the_floor"])
def test_drum_seeds_have_their_documented_tempo(name):
    assert estimate_tempo(synthesize_seed_audio(name)) == pytest.approx(SEED_BPM, rel=0.04)


def test_masks_ship_and_match_code():
    masks = riffusion.mask_images()
    assert len(masks) >= 3
    for mask in masks:
        shipped = load_mask_image(mask.name)
        assert shipped.mode == "L" and shipped.size == (512, 512)
        assert np.array_equal(np.asarray(shipped), np.asarray(make_mask(mask.name)))
    keep_first = np.asarray(load_mask_image("keep_first_half"))
    assert (keep_first[:, :256] == 0).all() and (keep_first[:, 256:] == 255).all()


def test_seed_images_are_copies():
    first = load_seed_image("straight_beat")
    first.paste((0, 0, 0), (0, 0, 10, 10))
    assert image_fingerprint(load_seed_image("straight_beat")) != image_fingerprint(first)


def test_unknown_names_raise():
    with pytest.raises(ParameterError, match="unknown seed image 'nope'.*straight_beat"):
        load_seed_image("nope")
    with pytest.raises(ParameterError, match="unknown mask image"):
        load_mask_image("nope")


def test_builtin_names_do_not_impersonate_riffusion():
    ours = {seed.name for seed in riffusion.seed_images()} | {
        mask.name for mask in riffusion.mask_images()
    }
    riffusion_ids = {"og_beat", "agile", "marim", "motorway", "vibes"} | {
        "mask_beat_lines_80",
        "mask_gradient_dark",
        "mask_gradient_top_70",
        "mask_gradient_top_fifth_75",
        "mask_top_third_75",
        "mask_top_third_95",
    }
    assert not ours & riffusion_ids
    assert set(RIFFUSION_ALIASES) == riffusion_ids
    assert DEFAULT_SEED_IMAGE == "straight_beat"


def test_riffusion_ids_are_aliases_of_matching_character():
    assert RIFFUSION_ALIASES["og_beat"] == "straight_beat"
    assert RIFFUSION_ALIASES["marim"] == "marimba_arp"
    for alias, target in RIFFUSION_ALIASES.items():
        resolve = resolve_mask_id if alias.startswith("mask_") else resolve_seed_id
        assert resolve(alias) == target
        loader = load_mask_image if alias.startswith("mask_") else load_seed_image
        assert image_fingerprint(loader(alias)) == image_fingerprint(loader(target))
    # The alias masks are drawn after their names (255 = regenerate, top rows = highs).
    third = np.asarray(load_mask_image("mask_top_third_75"))
    assert (third[:170] == 191).all() and (third[171:] == 0).all()
    assert (np.asarray(load_mask_image("mask_top_third_95"))[:170] == 242).all()
    top_70 = np.asarray(load_mask_image("mask_gradient_top_70")).astype(int)
    assert top_70[0, 0] == 178 and top_70[-1, 0] == 0 and (np.diff(top_70[:, 0]) <= 0).all()
    fifth = np.asarray(load_mask_image("mask_gradient_top_fifth_75")).astype(int)
    assert fifth[0, 0] == 191 and (fifth[102:] == 0).all()
    dark = np.asarray(load_mask_image("mask_gradient_dark")).astype(int)
    assert dark.max() == 128 and dark[-1].max() == 0
    lines = np.asarray(load_mask_image("mask_beat_lines_80"))
    assert set(np.unique(lines)) == {0, 204}
    assert (lines[:, 0:8] == 0).all() and (lines[:, 64:72] == 0).all() and lines[0, 8] == 204


def test_registered_folder_wins_over_aliases_and_builtins(tmp_path):
    from PIL import Image

    original = Image.new("RGB", (512, 512), (10, 20, 30))
    original.save(tmp_path / "og_beat.png")
    Image.new("L", (512, 512), 77).save(tmp_path / "mask_top_third_75.png")
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "bad name.png")  # not a valid id: skipped
    try:
        assert register_seed_images(tmp_path) == ["mask_top_third_75", "og_beat"]
        assert resolve_seed_id("og_beat") == "og_beat"
        assert np.array_equal(np.asarray(load_seed_image("og_beat")), np.asarray(original))
        assert (np.asarray(load_mask_image("mask_top_third_75")) == 77).all()
        assert registered_images()["og_beat"] == (tmp_path / "og_beat.png").resolve()
    finally:
        unregister_seed_images()
    assert resolve_seed_id("og_beat") == "straight_beat"
    with pytest.raises(ParameterError, match="not a directory"):
        register_seed_images(tmp_path / "notes.txt")


@pytest.mark.parametrize(
    "bad", ["../x", "/etc/passwd", "a/b", "a\\b", "x\x00y", ".hidden", "..", "a..b", "C:x/y", 3]
)
def test_path_like_ids_are_rejected_listing_known_ids(bad):
    for resolve in (resolve_seed_id, resolve_mask_id, load_seed_image, load_mask_image):
        with pytest.raises(RiffusionError, match="straight_beat"):
            resolve(bad)


def test_empty_and_none_mask_mean_no_mask():
    assert resolve_mask_id(None) is None and resolve_mask_id("") is None
    with pytest.raises(ParameterError, match="no mask"):
        load_mask_image("")
    with pytest.raises(ParameterError):
        resolve_seed_id("")


def test_random_prompts():
    assert len(PROMPTS) >= 50 and len(set(PROMPTS)) == len(PROMPTS)
    assert random_prompt(seed=3) == random_prompt(seed=3)
    assert {random_prompt(seed=s) for s in range(40)} <= set(PROMPTS)
    assert len({random_prompt(seed=s) for s in range(40)}) > 10
    assert riffusion.random_prompt() in PROMPTS
