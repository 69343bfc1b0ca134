"""Few-step sampling end to end, offline on the tiny model (issue 25, "real-time speed").

* LCM-LoRA and TCD-LoRA files in the layouts their hub files use load with ``load_lora`` and run:
  ``latent-consistency/lcm-lora-sdv1-5`` was written by diffusers' LCM-LoRA training script
  (``train_lcm_distill_lora_sd_wds.py``), which renames peft's keys to Kohya's
  (``lora_unet_<module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``; UNet only:
  attention, feed-forward, ``proj_in``/``proj_out``, resnet convolutions and time projections,
  down/up-sampler convolutions). The same adapter is built here with ``peft`` on the tiny UNet
  and written in that layout; the second layout is diffusers' own
  (``unet.<module>.lora_A.weight``, no alphas), which its ``save_lora_weights`` writes.
* Guidance <= 1 skips the unconditional pass, as diffusers does: the UNet sees a batch of one.
* ``compile()`` compiles the UNet and the VAE decoder once; a second clip compiles nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from riffusion.errors import DeviceError
from riffusion.inputs import PromptInput
from tests.diffusion_fixtures import (
    _one_torch_thread,
    gradient_image,
    tiny_model,
    tiny_pipe,
)
from tests.errors import assert_refused

__all__ = ["_one_torch_thread", "tiny_model", "tiny_pipe"]

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

#: The modules diffusers' LCM-LoRA training script adapts (its ``lora_target_modules``).
LCM_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "time_emb_proj",
)
RANK, ALPHA = 4, 2.0  # Kohya's per-layer alpha: the adapter is scaled by ALPHA / RANK = 0.5


@dataclass(frozen=True)
class LoraFile:
    """A LoRA weights file and what it holds, in peft's names (``<module>.lora_A.weight``)."""

    path: Path
    weights: dict[str, torch.Tensor]
    scaling: float  # alpha / rank of every layer

    @property
    def modules(self) -> set[str]:
        return {key.rpartition(".lora_")[0] for key in self.weights}


def _adapter_weights(
    tiny_model: Path, seed: int, targets: tuple[str, ...] = LCM_TARGETS
) -> dict[str, torch.Tensor]:
    """Random LoRA matrices of the LCM-LoRA's layers on the tiny UNet, float16 as on the hub."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(targets)))
    generator = torch.Generator().manual_seed(seed)
    return {
        key: (0.2 * torch.randn(value.shape, generator=generator)).to(torch.float16)
        for key, value in get_peft_model_state_dict(unet).items()
    }


def kohya_layout(weights: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """peft's keys renamed as diffusers' LCM-LoRA script did for the hub file: ``base_model.
    model`` -> ``lora_unet``, ``lora_A``/``lora_B`` -> ``lora_down``/``lora_up``, the module
    path's dots -> ``_``, and one float16 ``<module>.alpha`` per layer."""
    state = {}
    for key, value in weights.items():
        module, _, kind = key.rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_")
        state[f"{name}.{'lora_down' if kind == 'A.weight' else 'lora_up'}.weight"] = value
        state[f"{name}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
    return state


def save_diffusers_layout(weights: dict[str, torch.Tensor], folder: Path) -> Path:
    """Written by diffusers' own ``save_lora_weights`` (its training scripts' writer):
    ``unet.<module>.lora_A.weight`` / ``lora_B.weight``, no alphas (alpha = rank)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=weights)
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def lcm_lora(tiny_model, tmp_path_factory) -> LoraFile:
    weights = _adapter_weights(tiny_model, seed=1)
    path = tmp_path_factory.mktemp("lcm-lora-sdv1-5") / "pytorch_lora_weights.safetensors"
    save_file(kohya_layout(weights, ALPHA), path)
    return LoraFile(path, weights, ALPHA / RANK)


@pytest.fixture(scope="module")
def tcd_lora(tiny_model, tmp_path_factory) -> LoraFile:
    weights = _adapter_weights(tiny_model, seed=2)
    path = save_diffusers_layout(weights, tmp_path_factory.mktemp("tcd-sd15-lora"))
    return LoraFile(path, weights, 1.0)


@pytest.fixture(scope="module")
def small_lora(tiny_model, tmp_path_factory) -> LoraFile:
    """Two kinds of layer only: compiling a UNet with fewer adapters traces faster."""
    weights = _adapter_weights(tiny_model, seed=3, targets=("to_q", "conv1"))
    path = save_diffusers_layout(weights, tmp_path_factory.mktemp("small-lora"))
    return LoraFile(path, weights, 1.0)


def new_pipe(tiny_model, scheduler: str | None = None):
    """A CPU pipeline of its own (tests load adapters or compile: the shared one stays clean)."""
    from riffusion.models.sd1 import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu", scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _levels(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))


# ---------------------------------------------------------------------------- LoRA files


@pytest.mark.parametrize("which", ["lcm", "tcd"])
def test_lora_files_in_their_hub_layouts_load_every_layer_exactly(
    tiny_model, lcm_lora, tcd_lora, which
):
    from riffusion.models.sd1.lora import ADAPTER_NAME

    lora = lcm_lora if which == "lcm" else tcd_lora
    pipe = new_pipe(tiny_model).load_lora(lora.path, scale=0.8)
    layers = dict(pipe.unet.named_modules())
    adapted = {name for name, module in layers.items() if hasattr(module, "lora_A")}
    # Every attention, feed-forward, projection, resnet and sampler layer of the tiny UNet.
    assert adapted == lora.modules and len(adapted) == 79
    for key, written in lora.weights.items():
        module, _, kind = key.rpartition(".lora_")
        matrices = layers[module].lora_A if kind == "A.weight" else layers[module].lora_B
        assert torch.equal(matrices[ADAPTER_NAME].weight, written.float()), key
        # peft's scale: the LoRA scale times the file's alpha / rank (Kohya's alphas kept).
        assert layers[module].scaling[ADAPTER_NAME] == pytest.approx(0.8 * lora.scaling)
    assert not getattr(pipe.text_encoder, "peft_config", None)  # UNet-only files
    assert [(entry.path, entry.scale) for entry in pipe.loras] == [(str(lora.path), 0.8)]


def _merged_by_hand(tiny_model, lora: LoraFile, scale: float):
    """The base UNet with ``W += scale * alpha / rank * B @ A`` added to every adapted layer."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    layers = dict(unet.named_modules())
    with torch.no_grad():
        for module in lora.modules:
            down = lora.weights[f"{module}.lora_A.weight"].double()
            up = lora.weights[f"{module}.lora_B.weight"].double()
            weight = layers[module].weight
            # Linear: (out, r) @ (r, in); conv: the 1x1 up-projection after the k x k down one.
            delta = up.flatten(1) @ down.flatten(1)
            weight += (scale * lora.scaling * delta).reshape(weight.shape).float()
    return unet


def test_the_unet_with_the_lora_is_the_base_plus_the_hand_made_delta(tiny_model, lcm_lora):
    pipe = new_pipe(tiny_model).load_lora(lcm_lora.path, scale=0.7)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    text = torch.randn(1, 77, 32, generator=generator)
    with torch.no_grad():
        ours = pipe.unet(sample, 501, encoder_hidden_states=text).sample
        merged = _merged_by_hand(tiny_model, lcm_lora, 0.7)(sample, 501, text).sample
        base = new_pipe(tiny_model).unet(sample, 501, encoder_hidden_states=text).sample
        pipe.set_lora_scale(0.0)
        off = pipe.unet(sample, 501, encoder_hidden_states=text).sample
    # x W^T + s x (BA)^T against x (W + s BA)^T: float32 sums in another order, through about
    # twenty layers: relative differences of a few 1e-6, far below the adapter's own effect.
    assert torch.allclose(ours, merged, rtol=0, atol=1e-4)
    assert (ours - base).abs().max() > 0.1
    assert torch.equal(off, base)  # scale 0: the adapters are switched off, bit for bit


def _diffusers_img2img(pipe, monkeypatch, image, **kwargs):
    """diffusers' own img2img on ``pipe``'s components (its LoRA'd UNet, a scheduler copy),
    from the VAE posterior's mean as ours."""
    from diffusers import StableDiffusionImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_img2img as module

    original = module.retrieve_latents

    def posterior_mean(encoder_output, generator=None, sample_mode="sample"):
        return original(encoder_output, generator, sample_mode="argmax")

    monkeypatch.setattr(module, "retrieve_latents", posterior_mean)
    reference = StableDiffusionImg2ImgPipeline(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        scheduler=copy.deepcopy(pipe.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    reference.set_progress_bar_config(disable=True)
    return reference(image=image, output_type="pil", **kwargs).images[0]


@pytest.mark.parametrize(
    ("which", "scheduler", "extra"), [("lcm", "lcm", {}), ("tcd", "tcd", {"eta": 0.3})]
)
def test_a_few_step_clip_with_the_lora_matches_diffusers_and_scale_zero_is_the_base(
    tiny_model, lcm_lora, tcd_lora, monkeypatch, which, scheduler, extra
):
    lora = lcm_lora if which == "lcm" else tcd_lora
    pipe = new_pipe(tiny_model, scheduler).load_lora(lora.path)
    seed_image = gradient_image(64, 64, seed=5)
    settings = {"denoising": 1.0, "guidance": 1.0, "seed": 4, "num_inference_steps": 4}
    ours = pipe.img2img("lofi beat", seed_image, **settings)
    assert len(ours.timesteps) == 4
    # LCM and TCD draw fresh noise every step from the seed's generator: diffusers' too.
    theirs = _diffusers_img2img(
        pipe,
        monkeypatch,
        seed_image,
        prompt="lofi beat",
        strength=1.0,
        guidance_scale=1.0,
        num_inference_steps=4,
        generator=torch.Generator("cpu").manual_seed(4),
        **extra,
    )
    assert _levels(ours.image, theirs).max() <= 1
    base = new_pipe(tiny_model, scheduler).img2img("lofi beat", seed_image, **settings).image
    assert _levels(ours.image, base).max() > 10  # the adapter does change the clip
    pipe.set_lora_scale(0.0)
    off = pipe.img2img("lofi beat", seed_image, **settings).image
    assert np.array_equal(np.asarray(off), np.asarray(base))


def test_a_recipe_made_with_the_lcm_lora_renders_again(tiny_model, lcm_lora):
    from riffusion import Adapter, Recipe, Riffuser
    from riffusion._files import file_fingerprint

    riffuser = Riffuser.from_pretrained(tiny_model, device="cpu", scheduler="lcm")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    riffuser.load_lora(lcm_lora.path)
    batches = _unet_batches(riffuser.pipeline)
    clip = riffuser.text_to_audio("lofi", seed=3, guidance=1.0, num_inference_steps=4)
    assert batches == [1, 1, 1]  # int(4 * denoising 0.75) steps, no unconditional pass
    recipe = Recipe.from_json(clip.recipe.to_json())
    assert recipe.scheduler == "lcm" and recipe.num_inference_steps == 4
    assert recipe.start.guidance == 1.0
    assert recipe.adapters == (
        Adapter(
            kind="lora",
            path=str(lcm_lora.path),
            fingerprint=file_fingerprint(lcm_lora.path),
            scale=1.0,
        ),
    )
    again = Riffuser.from_recipe(recipe, device="cpu", adapter_dirs=[lcm_lora.path.parent])
    again.pipeline.set_progress_bar_config(disable=True)
    assert again.render(recipe).audio == clip.audio


# ---------------------------------------------------------------------------- guidance <= 1


def _unet_batches(pipe) -> list[int]:
    """A list that fills with the UNet's batch size at every call (a forward pre-hook)."""
    batches: list[int] = []

    def record(module, args, kwargs):
        sample, text = args[0], kwargs["encoder_hidden_states"]
        assert sample.shape[0] == text.shape[0]
        batches.append(int(sample.shape[0]))

    pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    return batches


def _text_encoder_calls(pipe) -> list[int]:
    calls: list[int] = []
    pipe.text_encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


@pytest.mark.parametrize(
    ("guidance", "batch", "encoded"),
    [(7.0, 2, 2), (1.01, 2, 2), (1.0, 1, 1), (0.5, 1, 1), (0.0, 1, 1)],
)
def test_guidance_at_most_one_halves_the_unet_batch_and_skips_the_negative_prompt(
    tiny_model, guidance, batch, encoded
):
    pipe = new_pipe(tiny_model)
    batches, calls = _unet_batches(pipe), _text_encoder_calls(pipe)
    result = pipe.img2img(
        "jazz",
        gradient_image(64, 64),
        denoising=0.5,
        guidance=guidance,
        seed=1,
        negative_prompt="noise",
        num_inference_steps=8,
    )
    # PNDM (the checkpoint's) at 8 steps, strength 0.5: 4 steps plus its warm-up timestep.
    assert len(result.timesteps) == 5
    assert batches == [batch] * 5 and len(calls) == encoded


@pytest.mark.parametrize(
    ("start_guidance", "end_guidance", "alpha", "batch", "encoded"),
    [
        (1.0, 3.0, 0.25, 2, 4),  # mixed 1.5: guided; both prompts and both negatives
        (0.5, 1.0, 0.5, 1, 2),  # mixed 0.75: the two prompts only
        (1.0, 7.0, 0.0, 1, 1),  # an end point is its single generation: the start's 1.0
        (1.0, 7.0, 1.0, 2, 2),
    ],
)
def test_interpolated_guidance_decides_per_clip(
    tiny_model, start_guidance, end_guidance, alpha, batch, encoded
):
    pipe = new_pipe(tiny_model)
    batches, calls = _unet_batches(pipe), _text_encoder_calls(pipe)
    start = PromptInput("jazz", seed=1, negative_prompt="noise", guidance=start_guidance)
    end = PromptInput("rock", seed=2, negative_prompt="hiss", guidance=end_guidance)
    result = pipe.riffuse(
        start, end, alpha, init_image=gradient_image(64, 64), num_inference_steps=4
    )
    assert result.guidance == pytest.approx(
        start_guidance + alpha * (end_guidance - start_guidance)
    )
    assert set(batches) == {batch} and len(calls) == encoded


def test_without_guidance_masks_and_step_callbacks_still_work(tiny_pipe):
    seed_image = gradient_image(64, 64, seed=3)
    seen = []

    def callback(pipe, step, timestep, kwargs):
        seen.append((step, tuple(kwargs["latents"].shape), kwargs["num_steps"]))
        return {"latents": kwargs["latents"]}

    run = {"denoising": 0.75, "guidance": 1.0, "seed": 2, "num_inference_steps": 4}
    keep_all = gradient_image(64, 64).convert("L").point(lambda _: 0)  # black: keep everything
    kept = tiny_pipe.riffuse(
        PromptInput("techno", seed=2, denoising=0.75, guidance=1.0),
        init_image=seed_image,
        mask_image=keep_all,
        num_inference_steps=4,
        callback_on_step_end=callback,
    )
    # PNDM: int(4 * 0.75) = 3 steps plus its warm-up timestep, each on a batch of one.
    assert seen == [(step, (1, 4, 8, 8), 4) for step in range(4)]
    # After the last step the kept region is the seed's clean latents: the VAE round trip.
    round_trip = tiny_pipe.img2img("techno", seed_image, **{**run, "denoising": 0.0}).image
    assert np.array_equal(np.asarray(kept.image), np.asarray(round_trip))


def test_denoise_refuses_embeddings_that_do_not_fit_the_guidance(tiny_pipe):
    from riffusion.models.sd1.denoising import Timer, denoise

    latents = torch.zeros(1, 4, 8, 8)
    for guidance, batch, expected in ((7.0, 1, "batch of 2"), (1.0, 2, "batch of 1")):
        assert_refused(
            denoise,
            tiny_pipe.unet,
            tiny_pipe.scheduler,
            latents,
            torch.zeros(batch, 77, 32),
            torch.tensor([1]),
            guidance=guidance,
            timer=Timer(torch.device("cpu")),
            extra_step_kwargs={},
            named=f"embeddings of shape ({batch}, 77, 32)",
            phrase=(expected, f"{guidance!r}"),
        )


# ---------------------------------------------------------------------------- compile()


class CountingBackend:
    """A ``torch.compile`` backend that runs the traced graph as it is and counts compilations
    (one per graph: a recompile for a new shape counts again)."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


def test_compile_returns_the_holder_compiles_once_and_keeps_the_outputs(tiny_model, tiny_pipe):
    from riffusion import Riffuser

    riffuser = Riffuser.from_pretrained(tiny_model, device="cpu", scheduler="default")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    backend = CountingBackend()
    assert riffuser.compile(backend=backend) is riffuser
    settings = riffuser.pipeline.compiled
    assert (settings.mode, settings.channels_last, settings.dynamic) == (
        "reduce-overhead",
        True,
        False,
    )
    assert riffuser.pipeline.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert backend.graphs == 0  # compiled on first use

    seed_image = gradient_image(512, 512, seed=1)
    run = {"denoising": 0.75, "guidance": 7.0, "num_inference_steps": 4}
    first = riffuser.pipeline.img2img("jazz", seed_image, seed=1, **run)
    compiled = backend.graphs
    assert compiled == 2  # the UNet and the VAE decoder, each one graph (no graph break)
    second = riffuser.pipeline.img2img("rock", seed_image, seed=2, **run)
    assert backend.graphs == compiled  # same shapes: nothing compiled again
    for result, seed, prompt in ((first, 1, "jazz"), (second, 2, "rock")):
        plain = tiny_pipe.img2img(prompt, seed_image, seed=seed, **run).image
        # Only the NHWC convolutions differ (float32 sums in another order): a few pixels of
        # the 512x512 image land on the other side of an 8-bit rounding edge.
        levels = _levels(result.image, plain)
        assert levels.max() <= 1 and levels.mean() < 0.01
    # Guidance 1 runs the UNet on a batch of one: a new shape, one more UNet graph.
    riffuser.pipeline.img2img("jazz", seed_image, seed=1, **{**run, "guidance": 1.0})
    assert backend.graphs == compiled + 1


def test_a_compiled_pipeline_follows_periodic_and_lora_scale_changes(tiny_model, small_lora):
    # torch._dynamo guards what the graphs assumed: circular padding or another LoRA scale
    # compiles again instead of reusing a graph that no longer fits. channels_last off: the
    # compiled graphs then compute exactly what the modules do, bit for bit.
    plain = new_pipe(tiny_model).load_lora(small_lora.path)
    pipe = new_pipe(tiny_model).load_lora(small_lora.path)
    pipe.compile(backend=CountingBackend(), channels_last=False)
    run = {"seed": 3, "num_inference_steps": 2, "width": 64, "height": 64}
    previous = None
    for periodic, scale in ((False, 1.0), (True, 1.0), (True, 0.3)):
        plain.set_lora_scale(scale)
        pipe.set_lora_scale(scale)
        expected = np.asarray(plain.text_to_image("pad", periodic=periodic, **run).image)
        got = np.asarray(pipe.text_to_image("pad", periodic=periodic, **run).image)
        assert np.array_equal(got, expected), (periodic, scale)
        # A stale graph would have given the previous image: the change is visible.
        assert previous is None or _levels(expected, previous).max() > 10
        previous = expected


@pytest.mark.parametrize(
    ("kwargs", "named", "phrase"),
    [
        ({"mode": "fast"}, "mode='fast'", "'reduce-overhead'"),
        ({"mode": None}, "mode=None", "'max-autotune'"),
        ({"fullgraph": "yes"}, "fullgraph='yes'", "a bool"),
        ({"channels_last": 1}, "channels_last=1", "a bool"),
        ({"dynamic": "no"}, "dynamic='no'", "a bool or None"),
        ({"backend": "tensorrt-please"}, "backend='tensorrt-please'", "'inductor'"),
    ],
)
def test_compile_refuses_bad_arguments(tiny_pipe, kwargs, named, phrase):
    assert_refused(tiny_pipe.compile, **kwargs, named=named, phrase=phrase)
    assert tiny_pipe.compiled is None  # nothing was compiled


def test_compile_names_models_without_it_and_a_missing_cpu_compiler(tiny_pipe, monkeypatch):
    from riffusion.model_holder import ModelHolder

    class NoCompile:
        device, scheduler, lora, textual_inversions, interrupt = "cpu", None, None, (), False

        def riffuse(self, *args, **kwargs): ...

        def describe_scheduler(self):
            return "default", {}

        def build_scheduler(self, name, overrides=None): ...

        def set_scheduler(self, name): ...

    assert_refused(
        ModelHolder(NoCompile()).compile, named="pipeline=NoCompile", phrase="has no compile()"
    )
    import riffusion.models.sd1.compiling as compiling

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert_refused(
        tiny_pipe.compile,
        error=DeviceError,
        named="backend='inductor'",
        mentions="device='cpu'",
        phrase="C++ compiler",
    )
    assert tiny_pipe.compiled is None


@pytest.mark.slow
def test_inductor_on_the_cpu_matches_the_uncompiled_pipeline(tiny_model, tiny_pipe):
    # About 150 s of C++ compilation on a 2-core machine: opt-in (pytest -m slow).
    pipe = new_pipe(tiny_model).compile(mode="default")
    seed_image = gradient_image(512, 512, seed=1)
    run = {"denoising": 0.75, "guidance": 7.0, "seed": 1, "num_inference_steps": 4}
    levels = _levels(
        pipe.img2img("jazz", seed_image, **run).image,
        tiny_pipe.img2img("jazz", seed_image, **run).image,
    )
    # Fused kernels and NHWC convolutions: float32 rounding, a grey level at rounding edges.
    assert levels.max() <= 1 and levels.mean() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_reduce_overhead_on_cuda_matches_the_uncompiled_pipeline(tiny_model, guidance):
    # CUDA graphs reuse the UNet's output buffer: PNDM (the checkpoint's) keeps past
    # predictions, so guidance 1 (the raw prediction, no blend) checks the loop copies it.
    from riffusion.models.sd1 import RiffusionPipeline

    def pipe():
        made = RiffusionPipeline.from_pretrained(tiny_model, device="cuda", torch_dtype="float16")
        made.set_progress_bar_config(disable=True)
        return made

    plain, compiled = pipe(), pipe().compile()
    seed_image = gradient_image(512, 512, seed=1)
    run = {"denoising": 0.75, "guidance": guidance, "num_inference_steps": 8}
    for seed in (1, 2):  # the second clip replays the graphs
        levels = _levels(
            compiled.img2img("jazz", seed_image, seed=seed, **run).image,
            plain.img2img("jazz", seed_image, seed=seed, **run).image,
        )
        # float16 through fused kernels: a few grey levels where rounding differs.
        assert levels.max() <= 6 and levels.mean() < 0.5
