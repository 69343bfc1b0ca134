"""Generation tests of RiffusionPipeline on the tiny random checkpoint (CPU, a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import riffusion.models.sd1.denoising as pipeline_module
from riffusion.defaults import SCHEDULER_NAMES
from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.models.sd1 import (
    GenerationResult,
    is_periodic,
    time_range_mask,
)

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

try:
    from diffusion_fixtures import (
        _one_torch_thread,
        as_array,
        gradient_image,
        tiny_model,
        tiny_pipe,
    )
except ImportError:  # tests/ imported as a package
    from tests.diffusion_fixtures import (  # noqa: F401
        _one_torch_thread,
        as_array,
        gradient_image,
        tiny_model,
        tiny_pipe,
    )

STEPS = 4


def t2i(pipe, prompt="a calm piano", **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("width", 64)
    kwargs.setdefault("height", 64)
    return pipe.text_to_image(prompt, **kwargs)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(as_array(a) - as_array(b)).mean())


# ---------------------------------------------------------------------------- basics


def test_text_to_image_result_fields(tiny_pipe):
    result = t2i(tiny_pipe, width=128, height=64, seed=5, guidance=3.0)
    assert isinstance(result, GenerationResult)
    assert result.image.mode == "RGB" and result.image.size == (128, 64)
    assert result.seeds == (5,) and result.alpha == 0.0
    assert result.denoising == 1.0 and result.guidance == 3.0
    # The tiny checkpoint's PNDM (skip_prk_steps) runs one extra warm-up timestep.
    assert result.timesteps == (751, 501, 501, 251, 1)
    assert set(result.timings_s) == {"text_encoder", "vae_encode", "unet", "vae_decode", "total"}
    assert result.timings_s["vae_encode"] == 0.0
    assert result.timings_s["unet"] > 0 and result.timings_s["vae_decode"] > 0
    parts = sum(v for k, v in result.timings_s.items() if k != "total")
    assert parts <= result.timings_s["total"]
    pixels = as_array(result.image)
    assert pixels.std() > 1.0  # not a blank image


def test_full_size_512_generation(tiny_pipe):
    # The real clip size: 512x512 pixels <-> 4x64x64 latents; two steps keep it about a second.
    result = tiny_pipe.text_to_image("x", num_inference_steps=2, seed=1)
    assert result.image.size == (512, 512)
    assert as_array(result.image).std() > 1.0
    assert len(result.timesteps) == 3


def test_same_seed_same_image_and_different_seeds_differ(tiny_pipe):
    a = t2i(tiny_pipe, seed=11)
    b = t2i(tiny_pipe, seed=11)
    c = t2i(tiny_pipe, seed=12)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert mean_abs_diff(a.image, c.image) > 5.0


def test_negative_prompt_changes_output(tiny_pipe):
    plain = t2i(tiny_pipe, seed=1)
    explicit_empty = t2i(tiny_pipe, seed=1, negative_prompt="")
    negative = t2i(tiny_pipe, seed=1, negative_prompt="drums and noise")
    assert np.array_equal(np.asarray(plain.image), np.asarray(explicit_empty.image))
    assert mean_abs_diff(plain.image, negative.image) > 0.5


def test_prompt_weights_change_output_and_unit_weight_is_neutral(tiny_pipe):
    plain = t2i(tiny_pipe, "a calm piano", seed=2)
    unit = t2i(tiny_pipe, "a (calm:1.0) piano", seed=2)
    weighted = t2i(tiny_pipe, "a (calm:1.8) piano", seed=2)
    assert np.array_equal(np.asarray(plain.image), np.asarray(unit.image))
    assert mean_abs_diff(plain.image, weighted.image) > 0.2


def test_encode_prompt_shapes_and_long_prompts(tiny_pipe):
    cond, uncond = tiny_pipe.encode_prompt("a calm piano")
    assert cond.shape == uncond.shape == (1, 77, 32)
    long_prompt = " ".join(["q"] * 100)
    cond, uncond = tiny_pipe.encode_prompt(long_prompt, negative_prompt="noise")
    assert cond.shape == uncond.shape == (1, 154, 32)
    # The second chunk carries the tail of the prompt: it is not an empty chunk.
    _, empty = tiny_pipe.encode_prompt("x")
    assert not torch.allclose(cond[:, 77:], empty.expand(1, 77, 32))
    result = t2i(tiny_pipe, long_prompt, seed=3)
    truncated = t2i(tiny_pipe, " ".join(["q"] * 75), seed=3)
    assert mean_abs_diff(result.image, truncated.image) > 0.1
    with pytest.raises(ParameterError, match="prompt is 240 tokens long; at most 225"):
        t2i(tiny_pipe, " ".join(["q"] * 240))


# ---------------------------------------------------------------------------- interpolation


def test_alpha_endpoints_reproduce_single_generations_bitwise(tiny_pipe):
    image = gradient_image(64, 64)
    start = PromptInput("a calm piano", seed=3, denoising=0.6, guidance=5.0)
    end = PromptInput(
        "(electric guitar:1.4) " + " ".join(["q"] * 90),  # two chunks, weighted
        seed=9,
        negative_prompt="noise",
        denoising=0.9,
        guidance=8.0,
    )
    kwargs = {"init_image": image, "num_inference_steps": 6}
    start_only = tiny_pipe.riffuse(start, **kwargs)
    end_only = tiny_pipe.riffuse(end, **kwargs)
    at0 = tiny_pipe.riffuse(start, end, 0.0, **kwargs)
    at1 = tiny_pipe.riffuse(start, end, 1.0, **kwargs)
    assert np.array_equal(np.asarray(at0.image), np.asarray(start_only.image))
    assert np.array_equal(np.asarray(at1.image), np.asarray(end_only.image))
    assert at0.seeds == at1.seeds == (3, 9)
    assert (at1.denoising, at1.guidance) == (0.9, 8.0)

    mid = tiny_pipe.riffuse(start, end, 0.5, **kwargs)
    assert mid.denoising == pytest.approx(0.75) and mid.guidance == pytest.approx(6.5)
    assert mean_abs_diff(mid.image, start_only.image) > 0.5
    assert mean_abs_diff(mid.image, end_only.image) > 0.5
    # int(6 * 0.75) = 4 steps (+1 PNDM warm-up): the mixed strength drives the schedule.
    assert len(mid.timesteps) == 5


def test_interpolation_honours_negative_prompt(tiny_pipe):
    start = PromptInput("piano", seed=1)
    end = PromptInput("guitar", seed=2)
    end_negative = PromptInput("guitar", seed=2, negative_prompt="drums and noise")
    kwargs = {"num_inference_steps": STEPS, "width": 64, "height": 64}
    a = tiny_pipe.riffuse(start, end, 0.5, **kwargs)
    b = tiny_pipe.riffuse(start, end_negative, 0.5, **kwargs)
    assert mean_abs_diff(a.image, b.image) > 0.2


def test_interpolated_noise_is_slerp_of_both_seeds(tiny_pipe, monkeypatch):
    seen = []
    original = pipeline_module.slerp

    def spy(alpha, v0, v1):
        out = original(alpha, v0, v1)
        seen.append((alpha, v0, v1, out))
        return out

    monkeypatch.setattr(pipeline_module, "slerp", spy)
    tiny_pipe.riffuse(
        PromptInput("a", seed=4),
        PromptInput("b", seed=5),
        0.3,
        num_inference_steps=1,
        width=64,
        height=64,
    )
    ((alpha, v0, v1, out),) = seen
    assert alpha == 0.3 and v0.shape == (1, 4, 8, 8)
    assert torch.equal(v0, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(v1, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5)))
    assert float(out.norm()) == pytest.approx(float(v0.norm()), rel=0.05)


# ---------------------------------------------------------------------------- img2img


def test_denoising_zero_is_the_vae_round_trip(tiny_pipe):
    image = gradient_image(128, 64)
    result = tiny_pipe.img2img("anything", image, denoising=0.0, num_inference_steps=10)
    round_trip = tiny_pipe.decode_latents(tiny_pipe.encode_image(image))
    assert result.timesteps == ()
    assert result.timings_s["unet"] == 0.0
    assert np.array_equal(np.asarray(result.image), np.asarray(round_trip))
    # And the helpers are the plain VAE: posterior mean, scaling_factor, decode.
    vae = tiny_pipe.vae
    x = torch.from_numpy(as_array(image).astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        direct = vae.decode(z).sample[0]
    direct = ((direct / 2 + 0.5).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(direct - as_array(round_trip)).max() <= 1.0


def test_denoising_strength_sets_the_steps(tiny_pipe):
    image = gradient_image(64, 64)
    full = tiny_pipe.img2img("x", image, denoising=1.0, num_inference_steps=10)
    half = tiny_pipe.img2img("x", image, denoising=0.5, num_inference_steps=10)
    light = tiny_pipe.img2img("x", image, denoising=0.2, num_inference_steps=10, seed=1)
    assert full.timesteps[0] == 901 and len(full.timesteps) == 11
    assert half.timesteps == (501, 401, 301, 201, 101, 1)
    round_trip = tiny_pipe.decode_latents(tiny_pipe.encode_image(image))
    # More strength, further from the seed image.
    assert mean_abs_diff(light.image, round_trip) < mean_abs_diff(full.image, round_trip)


def test_mask_keeps_black_region_and_regenerates_white(tiny_pipe, monkeypatch):
    image = gradient_image(128, 64)
    mask = time_range_mask(width=128, height=64, keep_start_px=0, keep_end_px=64)
    decoded = []
    original = tiny_pipe.decode_latents

    def capture(latents):
        decoded.append(latents.clone())
        return original(latents)

    monkeypatch.setattr(tiny_pipe, "decode_latents", capture)
    masked = tiny_pipe.img2img("x", image, denoising=0.5, num_inference_steps=10, mask_image=mask)
    unmasked = tiny_pipe.img2img("x", image, denoising=0.5, num_inference_steps=10)
    monkeypatch.undo()

    init = tiny_pipe.encode_image(image)
    final = decoded[0]
    # In latent space the kept half is exactly the seed's latents, the rest is new.
    assert torch.equal(final[..., :8], init[..., :8])
    assert float((final[..., 8:] - init[..., 8:]).abs().mean()) > 0.1

    round_trip = tiny_pipe.decode_latents(init)
    keep = slice(0, 48)  # stay a few latent cells away from the boundary at x=64
    regen = slice(80, 128)
    kept_err = float(np.abs(as_array(masked.image)[:, keep] - as_array(round_trip)[:, keep]).mean())
    unmasked_err = float(
        np.abs(as_array(unmasked.image)[:, keep] - as_array(round_trip)[:, keep]).mean()
    )
    regen_change = float(
        np.abs(as_array(masked.image)[:, regen] - as_array(round_trip)[:, regen]).mean()
    )
    # The tiny random VAE's group norms couple far-apart pixels, so "close" is relative: the kept
    # region is much closer to the seed than without the mask, and than the regenerated region.
    assert kept_err < 0.6 * unmasked_err
    assert kept_err < 0.7 * regen_change


def test_img2img_accepts_any_image_mode(tiny_pipe):
    image = gradient_image(64, 64)
    rgb = tiny_pipe.img2img("x", image, num_inference_steps=2)
    rgba = tiny_pipe.img2img("x", image.convert("RGBA"), num_inference_steps=2)
    assert np.array_equal(np.asarray(rgb.image), np.asarray(rgba.image))
    grey = tiny_pipe.img2img("x", image.convert("L"), num_inference_steps=2)
    assert grey.image.mode == "RGB" and grey.image.size == (64, 64)


# ---------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_runs(tiny_pipe, name):
    if name == "lms":
        pytest.importorskip("scipy")
    baseline = t2i(tiny_pipe, seed=4, num_inference_steps=3)
    try:
        tiny_pipe.set_scheduler(name)
        result = t2i(tiny_pipe, seed=4, num_inference_steps=3)
        again = t2i(tiny_pipe, seed=4, num_inference_steps=3)
    finally:
        tiny_pipe.set_scheduler("default")
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))
    assert as_array(result.image).std() > 1.0
    if name in ("default", "pndm"):
        assert np.array_equal(np.asarray(result.image), np.asarray(baseline.image))
        assert len(result.timesteps) == 4
    else:
        assert len(result.timesteps) == 3
        assert mean_abs_diff(result.image, baseline.image) > 0.01


def test_scheduler_attribute_is_swappable(tiny_pipe):
    from diffusers import DDIMScheduler, PNDMScheduler

    original = tiny_pipe.scheduler
    try:
        tiny_pipe.scheduler = DDIMScheduler.from_config(original.config)
        assert isinstance(tiny_pipe.scheduler, DDIMScheduler)
        tiny_pipe.set_scheduler("euler")
        assert type(tiny_pipe.scheduler).__name__ == "EulerDiscreteScheduler"
        assert tiny_pipe.scheduler.config.beta_schedule == "scaled_linear"
        with pytest.raises(ParameterError, match="scheduler='nope' is not a known scheduler"):
            tiny_pipe.set_scheduler("nope")
        with pytest.raises(ParameterError, match="must be a diffusers scheduler instance"):
            tiny_pipe.scheduler = "ddim"
    finally:
        tiny_pipe.set_scheduler("default")
    assert isinstance(tiny_pipe.scheduler, PNDMScheduler)
    assert tiny_pipe.scheduler.config.skip_prk_steps is True


# ---------------------------------------------------------------------------- periodic


def _seam_ratio(image: Image.Image) -> float:
    pixels = as_array(image)
    adjacent = np.abs(np.diff(pixels, axis=1)).mean()
    wrap = np.abs(pixels[:, -1] - pixels[:, 0]).mean()
    return float(wrap / adjacent)


def test_periodic_output_is_seamless(tiny_pipe):
    periodic = [
        _seam_ratio(t2i(tiny_pipe, seed=s, width=128, periodic=True).image) for s in range(4)
    ]
    plain = [_seam_ratio(t2i(tiny_pipe, seed=s, width=128).image) for s in range(4)]
    # The wrap-around step is like any other column step when periodic...
    assert np.mean(periodic) < 1.3
    # ...and clearly larger with zero padding.
    assert np.mean(plain) > np.mean(periodic) + 0.3
    assert not is_periodic(tiny_pipe.unet) and not is_periodic(tiny_pipe.vae)


def test_periodic_generation_is_shift_equivariant(tiny_pipe, monkeypatch):
    # Rolling the starting noise by 2 latent columns rolls the periodic image by 16 pixels:
    # nothing in the models distinguishes the image border any more. (The shift must be a
    # multiple of the UNet's downsampling factor, 2 for the tiny model, for stride-2 convs.)
    original = pipeline_module.randn

    def rolled(*args, **kwargs):
        return torch.roll(original(*args, **kwargs), shifts=2, dims=3)

    base = t2i(tiny_pipe, seed=7, width=128, periodic=True)
    monkeypatch.setattr(pipeline_module, "randn", rolled)
    shifted = t2i(tiny_pipe, seed=7, width=128, periodic=True)
    plain_shifted = t2i(tiny_pipe, seed=7, width=128)
    monkeypatch.undo()
    expected = np.roll(as_array(base.image), 16, axis=1)
    assert np.abs(as_array(shifted.image) - expected).max() <= 2.0
    plain = as_array(t2i(tiny_pipe, seed=7, width=128).image)
    assert np.abs(as_array(plain_shifted.image) - np.roll(plain, 16, axis=1)).max() > 10


def test_convs_restored_after_a_failed_periodic_run(tiny_pipe, monkeypatch):
    def boom(*args, **kwargs):
        assert is_periodic(tiny_pipe.unet) and is_periodic(tiny_pipe.vae)
        raise RuntimeError("boom")

    monkeypatch.setattr(tiny_pipe, "decode_latents", boom)
    with pytest.raises(RuntimeError, match="boom"):
        t2i(tiny_pipe, periodic=True, num_inference_steps=1)
    assert not is_periodic(tiny_pipe.unet) and not is_periodic(tiny_pipe.vae)


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"alpha": 1.5, "end": PromptInput("b")}, r"alpha=1\.5 must be a real number in \[0, 1\]"),
        ({"alpha": 0.5}, r"alpha=0\.5 needs an end prompt"),
        ({"num_inference_steps": 0}, r"num_inference_steps=0 must be an int in \[1, 1000\]"),
        ({"num_inference_steps": 2.5}, r"num_inference_steps=2\.5"),
        ({"width": 500}, "width=500 must be a positive multiple of 8"),
        ({"height": -64}, "height=-64 must be a positive multiple of 8"),
        ({"init_image": "x.png"}, "init_image=str must be a PIL.Image.Image"),
        ({"init_image": Image.new("RGB", (100, 64))}, "init_image.width=100 must be a positive"),
        ({"init_image": Image.new("RGB", (64, 64)), "width": 128}, "width=128 differs"),
        (
            {"init_image": Image.new("RGB", (64, 64)), "mask_image": Image.new("L", (32, 64))},
            r"mask_image.size=\(32, 64\) must equal init_image.size=\(64, 64\)",
        ),
        ({"mask_image": Image.new("L", (64, 64))}, "mask_image was given without init_image"),
        ({"start": PromptInput("   ")}, r"start.prompt='   ' must not be empty"),
        ({"start": "a prompt"}, "start='a prompt' must be a PromptInput"),
        ({"end": {"prompt": "b"}}, "end=.* must be a PromptInput or None"),
        ({"periodic": 1}, "periodic=1 must be a bool"),
        ({"start": PromptInput(" ".join(["q"] * 300))}, "prompt is 300 tokens long"),
    ],
)
def test_bad_inputs_raise_parameter_error(tiny_pipe, kwargs, pattern, monkeypatch):
    calls = []
    monkeypatch.setattr(tiny_pipe, "_generate", lambda *a, **k: calls.append(a))
    args = {"start": PromptInput("a"), "end": None, "alpha": 0.0, "width": 64, "height": 64}
    if "init_image" in kwargs:
        args.pop("width"), args.pop("height")
    args.update(kwargs)
    with pytest.raises(ParameterError, match=pattern):
        tiny_pipe.riffuse(args.pop("start"), args.pop("end"), args.pop("alpha"), **args)
    assert calls == []  # rejected before any model ran


def test_convenience_wrappers_validate_their_arguments(tiny_pipe):
    with pytest.raises(ParameterError, match=r"denoising=-0\.1"):
        tiny_pipe.img2img("x", gradient_image(64, 64), denoising=-0.1)
    with pytest.raises(ParameterError, match="seed=-1"):
        tiny_pipe.text_to_image("x", seed=-1)
    with pytest.raises(ParameterError, match=r"guidance=nan"):
        tiny_pipe.text_to_image("x", guidance=float("nan"))
