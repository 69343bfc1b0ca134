"""Golden equivalence: our pipeline against diffusers' own Stable Diffusion pipelines.

On the tiny random checkpoint, with the same components, scheduler, seed and starting noise,
our text-to-image and img2img must give the image diffusers' ``StableDiffusionPipeline`` and
``StableDiffusionImg2ImgPipeline`` give, to within one grey level, with classifier-free guidance
(guidance > 1) and without it (guidance <= 1, where both run the UNet on the prompt alone). A
sign flip in guidance, a wrong timestep slice or a wrong VAE scaling breaks these by tens of
levels.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as img2img_module

from riffusion.inputs import PromptInput
from tests.diffusion_fixtures import _one_torch_thread, gradient_image, tiny_model, tiny_pipe

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

__all__ = ["_one_torch_thread", "tiny_model", "tiny_pipe"]

SCHEDULERS = ["default", "ddim", "dpm++", "euler"]


def _components(pipe) -> dict:
    return {
        "vae": pipe.vae,
        "text_encoder": pipe.text_encoder,
        "tokenizer": pipe.tokenizer,
        "unet": pipe.unet,
        # A copy: the two pipelines must not share per-run scheduler state.
        "scheduler": copy.deepcopy(pipe.scheduler),
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def _levels(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))


@pytest.fixture
def scheduler_named(tiny_pipe, request):
    before = tiny_pipe.scheduler
    tiny_pipe.set_scheduler(request.param)
    yield tiny_pipe
    tiny_pipe.scheduler = before


@pytest.mark.parametrize("scheduler_named", SCHEDULERS, indirect=True)
def test_text_to_image_matches_diffusers(scheduler_named):
    pipe = scheduler_named
    ours = pipe.text_to_image(
        "jazzy piano", seed=7, guidance=7.5, num_inference_steps=4, width=64, height=64
    ).image
    reference = StableDiffusionPipeline(**_components(pipe))
    reference.set_progress_bar_config(disable=True)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(7))
    theirs = reference(
        "jazzy piano",
        num_inference_steps=4,
        guidance_scale=7.5,
        width=64,
        height=64,
        latents=noise,
        output_type="pil",
    ).images[0]
    assert _levels(ours, theirs).max() <= 1


@pytest.mark.parametrize(
    ("scheduler_named", "strength"),
    [("default", 0.5), ("default", 0.75), ("default", 1.0), ("ddim", 0.75), ("dpm++", 0.75),
     ("euler", 0.6)],
    indirect=["scheduler_named"],
)
def test_img2img_matches_diffusers(scheduler_named, monkeypatch, strength):
    pipe = scheduler_named
    seed_image = gradient_image(64, 64)
    ours = pipe.img2img(
        "acid bass", seed_image, denoising=strength, guidance=6.0, seed=3, num_inference_steps=6
    ).image

    # Same starting point as ours: the VAE posterior's mean (no sample drawn, so the generator's
    # first draw is the noise, exactly as our pipeline draws it).
    original = img2img_module.retrieve_latents

    def posterior_mean(encoder_output, generator=None, sample_mode="sample"):
        return original(encoder_output, generator, sample_mode="argmax")

    monkeypatch.setattr(img2img_module, "retrieve_latents", posterior_mean)
    reference = StableDiffusionImg2ImgPipeline(**_components(pipe))
    reference.set_progress_bar_config(disable=True)
    theirs = reference(
        "acid bass",
        image=seed_image,
        strength=strength,
        guidance_scale=6.0,
        num_inference_steps=6,
        generator=torch.Generator("cpu").manual_seed(3),
        output_type="pil",
    ).images[0]
    assert _levels(ours, theirs).max() <= 1


def test_negative_prompt_matches_diffusers(tiny_pipe):
    ours = tiny_pipe.text_to_image(
        "drum and bass", negative_prompt="vocals", seed=1, guidance=7.5, num_inference_steps=3,
        width=64, height=64,
    ).image
    reference = StableDiffusionPipeline(**_components(tiny_pipe))
    reference.set_progress_bar_config(disable=True)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(1))
    theirs = reference(
        "drum and bass", negative_prompt="vocals", guidance_scale=7.5, num_inference_steps=3,
        width=64, height=64, latents=noise, output_type="pil",
    ).images[0]
    assert _levels(ours, theirs).max() <= 1


def test_guidance_identities(tiny_pipe):
    def run(prompt, negative, guidance):
        return np.asarray(
            tiny_pipe.text_to_image(
                prompt, negative_prompt=negative, guidance=guidance, seed=5,
                num_inference_steps=3, width=64, height=64,
            ).image
        )

    # As diffusers (guidance_scale <= 1: no classifier-free guidance), every guidance <= 1 is
    # the prompt's prediction alone, the negative prompt unused: the same run, bit for bit.
    alone = run("techno", None, 1.0)
    for negative, guidance in (("ambient", 1.0), ("ambient", 0.5), ("ambient", 0.0)):
        assert np.array_equal(run("techno", negative, guidance), alone)
    # Just above 1 guidance runs, and really steers: 7 differs from 1 by far more than rounding.
    assert _levels(run("techno", "ambient", 1.01), alone).max() > 0
    assert _levels(run("techno", None, 7.0), alone).max() > 3


@pytest.mark.parametrize("guidance", [1.0, 0.5])
@pytest.mark.parametrize("scheduler_named", ["default", "euler"], indirect=True)
def test_img2img_without_guidance_matches_diffusers(scheduler_named, monkeypatch, guidance):
    # diffusers skips classifier-free guidance for guidance_scale <= 1 (the UNet sees the
    # prompt alone); so must we, negative prompt or not.
    pipe = scheduler_named
    seed_image = gradient_image(64, 64, seed=2)
    ours = pipe.img2img(
        "acid bass", seed_image, denoising=0.75, guidance=guidance, seed=3,
        negative_prompt="vocals", num_inference_steps=6,
    ).image
    original = img2img_module.retrieve_latents

    def posterior_mean(encoder_output, generator=None, sample_mode="sample"):
        return original(encoder_output, generator, sample_mode="argmax")

    monkeypatch.setattr(img2img_module, "retrieve_latents", posterior_mean)
    reference = StableDiffusionImg2ImgPipeline(**_components(pipe))
    reference.set_progress_bar_config(disable=True)
    theirs = reference(
        "acid bass",
        negative_prompt="vocals",
        image=seed_image,
        strength=0.75,
        guidance_scale=guidance,
        num_inference_steps=6,
        generator=torch.Generator("cpu").manual_seed(3),
        output_type="pil",
    ).images[0]
    assert _levels(ours, theirs).max() <= 1


@pytest.mark.parametrize("guidance", [1.0, 0.5])
def test_text_to_image_without_guidance_matches_diffusers(tiny_pipe, guidance):
    ours = tiny_pipe.text_to_image(
        "drum and bass", negative_prompt="vocals", seed=1, guidance=guidance,
        num_inference_steps=3, width=64, height=64,
    ).image
    reference = StableDiffusionPipeline(**_components(tiny_pipe))
    reference.set_progress_bar_config(disable=True)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(1))
    theirs = reference(
        "drum and bass", negative_prompt="vocals", guidance_scale=guidance,
        num_inference_steps=3, width=64, height=64, latents=noise, output_type="pil",
    ).images[0]
    assert _levels(ours, theirs).max() <= 1


def test_interpolation_end_points_match_single_prompts(tiny_pipe):
    start = PromptInput(prompt="jazz", seed=1, denoising=0.6, guidance=5.0)
    end = PromptInput(prompt="metal", seed=2, denoising=0.8, guidance=9.0)
    seed_image = gradient_image(64, 64, seed=4)
    for alpha, single in ((0.0, start), (1.0, end)):
        mixed = tiny_pipe.riffuse(start, end, alpha, init_image=seed_image, num_inference_steps=4)
        alone = tiny_pipe.riffuse(single, init_image=seed_image, num_inference_steps=4)
        assert np.array_equal(np.asarray(mixed.image), np.asarray(alone.image))
    middle = tiny_pipe.riffuse(start, end, 0.5, init_image=seed_image, num_inference_steps=4)
    assert middle.denoising == pytest.approx(0.7) and middle.guidance == pytest.approx(7.0)
