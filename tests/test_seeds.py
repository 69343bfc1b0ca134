from __future__ import annotations

import numpy as np
import pytest

import riffusion
from riffusion import ParameterError, SpectrogramParams, audio_to_image
from riffusion.image import params_from_image
from riffusion.looping import estimate_tempo
from riffusion.prompts import PROMPTS, random_prompt
from riffusion.seeds import (
    SEED_BPM,
    image_fingerprint,
    load_mask_image,
    load_seed_image,
    make_mask,
    synthesize_seed_audio,
)


def test_at_least_four_seed_images_with_documented_tempo():
    seeds = riffusion.seed_images()
    assert len(seeds) >= 4
    for seed in seeds:
        assert seed.bpm == SEED_BPM == 93.75 and seed.kind == "seed" and seed.description
        image = load_seed_image(seed.name)
        assert image.size == (512, 512) and image.mode == "RGB"
        assert params_from_image(image) == SpectrogramParams()


def test_shipped_seed_images_match_their_synthesis_code():
    for name in ("og_beat", "marimba_arp"):
        rebuilt = np.asarray(audio_to_image(synthesize_seed_audio(name))).astype(int)
        shipped = np.asarray(load_seed_image(name)).astype(int)
        assert np.abs(rebuilt - shipped).max() <= 1


@pytest.mark.parametrize("name", ["og_beat", "four_on_the_floor"])
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
    first = load_seed_image("og_beat")
    first.paste((0, 0, 0), (0, 0, 10, 10))
    assert image_fingerprint(load_seed_image("og_beat")) != image_fingerprint(first)


def test_unknown_names_raise():
    with pytest.raises(ParameterError, match="unknown seed image 'nope'.*og_beat"):
        load_seed_image("nope")
    with pytest.raises(ParameterError, match="unknown mask image"):
        load_mask_image("nope")


def test_random_prompts():
    assert len(PROMPTS) >= 50 and len(set(PROMPTS)) == len(PROMPTS)
    assert random_prompt(seed=3) == random_prompt(seed=3)
    assert {random_prompt(seed=s) for s in range(40)} <= set(PROMPTS)
    assert len({random_prompt(seed=s) for s in range(40)}) > 10
    assert riffusion.random_prompt() in PROMPTS
