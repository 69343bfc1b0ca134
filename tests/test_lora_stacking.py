"""Stacked LoRAs (issue 26): several named LoRAs at once, offline on the tiny model.

Two hand-made LoRAs (random peft matrices on the tiny UNet's and text encoder's attention and
resnet layers, written by diffusers' ``save_lora_weights``) are stacked. Every adapted layer
computes ``W x + s1 Δ1 x + s2 Δ2 x``, with each ``Δ`` measured by loading its LoRA alone;
the whole UNet equals the base UNet with ``W + s1 B1 A1 + s2 B2 A2`` merged by hand. Unloading
one leaves exactly the other; every scale 0 is the base model bit for bit; recipes record
every LoRA (name, file, fingerprint, scale, order) and render again in a fresh Riffuser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from riffusion._files import file_fingerprint
from riffusion.errors import ModelLoadError, ParameterError, RiffusionError
from tests.diffusion_fixtures import _one_torch_thread, tiny_model

__all__ = ["_one_torch_thread", "tiny_model"]

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

RANK = 4  # lora_alpha = rank: peft's scaling is the LoRA scale itself
UNET_TARGETS = ("to_q", "to_v", "conv1")
TEXT_TARGETS = ("q_proj", "v_proj")
#: An adapted layer of each model (both LoRAs adapt it).
UNET_LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
TEXT_LAYER = "encoder.layers.0.self_attn.q_proj"


@dataclass(frozen=True)
class Lora:
    """A LoRA folder and its UNet matrices (peft names: ``<module>.lora_A.weight``)."""

    folder: Path
    unet: dict[str, torch.Tensor]

    @property
    def file(self) -> Path:
        return self.folder / "pytorch_lora_weights.safetensors"


def _random_adapter(model, targets, generator) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    # peft directly: transformers' own add_adapter may demand a newer peft than exists.
    config = LoraConfig(r=RANK, lora_alpha=RANK, target_modules=list(targets))
    inject_adapter_in_model(config, model)
    return {
        key: 0.2 * torch.randn(value.shape, generator=generator)
        for key, value in get_peft_model_state_dict(model).items()
    }


def _make_lora(tiny_model: Path, folder: Path, seed: int) -> Lora:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from transformers import CLIPTextModel

    generator = torch.Generator().manual_seed(seed)
    unet = _random_adapter(
        UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet"),
        UNET_TARGETS,
        generator,
    )
    text = _random_adapter(
        CLIPTextModel.from_pretrained(tiny_model, subfolder="text_encoder"),
        TEXT_TARGETS,
        generator,
    )
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        folder, unet_lora_layers=unet, text_encoder_lora_layers=text
    )
    return Lora(folder, unet)


@pytest.fixture(scope="module")
def loras(tiny_model, tmp_path_factory) -> tuple[Lora, Lora]:
    root = tmp_path_factory.mktemp("loras")
    return (
        _make_lora(tiny_model, root / "lofi", seed=1),
        _make_lora(tiny_model, root / "jazz", seed=2),
    )


def new_pipe(tiny_model):
    from riffusion.models.sd1 import RiffusionPipeline

    pipe = RiffusionPipeline.from_pretrained(tiny_model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inputs(vocab_size: int = 100):
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 4, 8, 8, generator=generator),
        torch.randn(1, 77, 32, generator=generator),
        torch.randint(0, vocab_size, (1, 77), generator=generator),
    )


@torch.no_grad()
def _outputs(pipe) -> dict[str, torch.Tensor]:
    """The UNet's prediction, the text encoder's hidden states, and one adapted layer of each
    on fixed inputs."""
    sample, hidden, ids = _inputs(pipe.text_encoder.config.vocab_size)
    layers = dict(pipe.unet.named_modules())
    text_layers = dict(pipe.text_encoder.named_modules())
    return {
        "unet": pipe.unet(sample, 501, encoder_hidden_states=hidden).sample,
        "text": pipe.text_encoder(ids)[0],
        "unet_layer": layers[UNET_LAYER](hidden),
        "text_layer": text_layers[TEXT_LAYER](hidden),
    }


def _merged_by_hand(tiny_model, stack: list[tuple[Lora, float]]):
    """The base UNet with ``W += scale * B @ A`` of every LoRA of ``stack`` added."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    layers = dict(unet.named_modules())
    with torch.no_grad():
        for lora, scale in stack:
            for key, down in lora.unet.items():
                module, _, kind = key.rpartition(".lora_")
                if kind != "A.weight":
                    continue
                up = lora.unet[f"{module}.lora_B.weight"]
                weight = layers[module].weight
                delta = up.double().flatten(1) @ down.double().flatten(1)
                weight += (scale * delta).reshape(weight.shape).float()
    return unet


# ------------------------------------------------------------------------------- the sum


def test_two_stacked_loras_add_their_scaled_deltas(tiny_model, loras):
    lofi, jazz = loras
    pipe = new_pipe(tiny_model)
    base = _outputs(pipe)
    delta = []
    for lora in loras:  # each alone at scale 1: its delta
        alone = _outputs(pipe.load_lora(lora.folder))
        delta.append({key: alone[key] - base[key] for key in ("unet_layer", "text_layer")})
        pipe.unload_lora()
    assert all(torch.equal(_outputs(pipe)[key], base[key]) for key in base)

    pipe.load_lora(lofi.folder, scale=0.7).load_lora(jazz.file, scale=-0.4)
    both = _outputs(pipe)
    for key in ("unet_layer", "text_layer"):
        expected = base[key] + 0.7 * delta[0][key] - 0.4 * delta[1][key]
        # float32 sums of a few terms of order 1: differences of a few ulps.
        torch.testing.assert_close(both[key], expected, rtol=0, atol=1e-5)
        assert (both[key] - base[key]).abs().max() > 0.1
    # The whole UNet: the base with both deltas merged into its weights by hand (float32
    # sums in another order through about twenty layers: a few 1e-6, as for one LoRA).
    sample, hidden, _ = _inputs()
    with torch.no_grad():
        merged = _merged_by_hand(tiny_model, [(lofi, 0.7), (jazz, -0.4)])
        expected = merged(sample, 501, encoder_hidden_states=hidden).sample
    torch.testing.assert_close(both["unet"], expected, rtol=0, atol=1e-4)
    assert (both["unet"] - base["unet"]).abs().max() > 0.1
    # The text encoder's adapters stack too.
    assert (both["text"] - base["text"]).abs().max() > 1e-3


def test_unloading_one_by_name_leaves_exactly_the_other(tiny_model, loras):
    lofi, jazz = loras
    alone = {}
    for lora, scale in ((lofi, 0.6), (jazz, 0.9)):
        alone[lora.folder.name] = _outputs(new_pipe(tiny_model).load_lora(lora.folder, scale))
    for first, second in ((lofi, jazz), (jazz, lofi)):
        pipe = new_pipe(tiny_model)
        pipe.load_lora(lofi.folder, scale=0.6).load_lora(jazz.folder, scale=0.9)
        pipe.unload_lora(first.folder.name)
        assert [lora.name for lora in pipe.loras] == [second.folder.name]
        left = _outputs(pipe)
        assert all(torch.equal(left[key], alone[second.folder.name][key]) for key in left)


def test_every_scale_zero_is_the_base_and_one_scale_zero_is_the_other_alone(tiny_model, loras):
    lofi, jazz = loras
    base = _outputs(new_pipe(tiny_model))
    jazz_alone = _outputs(new_pipe(tiny_model).load_lora(jazz.folder, 0.5))
    pipe = new_pipe(tiny_model).load_lora(lofi.folder, 0.0).load_lora(jazz.folder, 0.0)
    assert all(torch.equal(value, base[key]) for key, value in _outputs(pipe).items())
    pipe.set_lora_scale(0.5, name="jazz")  # lofi at 0 adds nothing at all
    assert all(torch.equal(value, jazz_alone[key]) for key, value in _outputs(pipe).items())
    pipe.set_lora_scale(0.0)  # name=None: every LoRA
    assert [lora.scale for lora in pipe.loras] == [0.0, 0.0]
    assert all(torch.equal(value, base[key]) for key, value in _outputs(pipe).items())
    pipe.unload_lora()  # name=None: all of them, the models their base selves again
    assert pipe.loras == ()
    assert not getattr(pipe.unet, "peft_config", None)
    assert not getattr(pipe.text_encoder, "peft_config", None)
    assert all(torch.equal(value, base[key]) for key, value in _outputs(pipe).items())


# ------------------------------------------------------------------------ names and errors


def test_loras_lists_names_files_fingerprints_and_scales_in_load_order(tiny_model, loras):
    from riffusion.models.sd1.lora import LoadedLora, default_lora_name

    lofi, jazz = loras
    pipe = new_pipe(tiny_model)
    pipe.load_lora(jazz.file, 0.25).load_lora(lofi.folder, name="my lofi")
    pipe.load_lora(jazz.folder, 2.0)  # the same file again: a name of its own
    assert pipe.loras == (
        LoadedLora("jazz", str(jazz.file), file_fingerprint(jazz.file), 0.25),
        LoadedLora("my lofi", str(lofi.file), file_fingerprint(lofi.file), 1.0),
        LoadedLora("jazz-2", str(jazz.file), file_fingerprint(jazz.file), 2.0),
    )
    pipe.set_lora_scale(-1.5, name="my lofi")
    assert [lora.scale for lora in pipe.loras] == [0.25, -1.5, 2.0]
    assert default_lora_name("/x/bass.safetensors") == "bass"
    assert default_lora_name("/x/bass/pytorch_lora_weights.safetensors", ["bass"]) == "bass-2"


def test_stacking_errors_name_the_argument(tiny_model, loras, tmp_path):
    lofi, jazz = loras
    pipe = new_pipe(tiny_model)
    with pytest.raises(RiffusionError, match="no LoRA is loaded"):
        pipe.set_lora_scale(1.0)
    with pytest.raises(ParameterError, match="name='x': no LoRA is loaded"):
        pipe.unload_lora("x")
    pipe.load_lora(lofi.folder, name="a")
    before = _outputs(pipe)
    with pytest.raises(ParameterError, match=r"name='a' is loaded already \(loaded: \['a'\]\)"):
        pipe.load_lora(jazz.folder, name="a")
    with pytest.raises(ParameterError, match=r"name='b' is not a loaded LoRA; loaded: \['a'\]"):
        pipe.set_lora_scale(0.5, name="b")
    with pytest.raises(ParameterError, match="name='b' is not a loaded LoRA"):
        pipe.unload_lora("b")
    for bad in (float("nan"), float("inf"), "loud", None):
        with pytest.raises(ParameterError, match=r"scale=.* must be a finite number"):
            pipe.load_lora(jazz.folder, scale=bad)
        with pytest.raises(ParameterError, match=r"scale=.* must be a finite number"):
            pipe.set_lora_scale(bad, name="a")
    for bad in ("", "  ", "a\nb", "x" * 101, 3):
        with pytest.raises(ParameterError, match=r"name=.* must be a non-empty string"):
            pipe.load_lora(jazz.folder, name=bad)
    with pytest.raises(ModelLoadError, match="do not exist"):
        pipe.load_lora(tmp_path / "missing.safetensors")
    # A LoRA that does not fit (another rank of the same layers' names is fine; a layer the
    # model lacks is not) fails alone: the one loaded before is as it was.
    from safetensors.torch import save_file

    save_file(
        {"unet.no_such_block.to_q.lora_A.weight": torch.zeros(RANK, 32)},
        tmp_path / "alien.safetensors",
    )
    with pytest.raises(ModelLoadError):
        pipe.load_lora(tmp_path / "alien.safetensors")
    assert [lora.name for lora in pipe.loras] == ["a"]
    assert set(pipe.unet.peft_config) == {"riffusion_lora"}
    after = _outputs(pipe)
    assert all(torch.equal(after[key], before[key]) for key in before)


# --------------------------------------------------------------------------------- recipes


def _clip(riffuser):
    # denoising 0.75 of 2 steps: one UNet step on the default seed image.
    return riffuser.text_to_audio("low tone", seed=3, num_inference_steps=2)


def _riffuser(tiny_model):
    from riffusion import Riffuser

    riffuser = Riffuser.from_pretrained(tiny_model, device="cpu")
    riffuser.pipeline.set_progress_bar_config(disable=True)
    return riffuser


def test_recipes_with_two_loras_render_bit_identically_in_a_fresh_riffuser(tiny_model, loras):
    from riffusion import Adapter, Recipe, Riffuser

    lofi, jazz = loras
    riffuser = _riffuser(tiny_model)
    base = _clip(riffuser)
    assert riffuser.load_lora(lofi.folder, 0.7) is riffuser
    assert riffuser.load_lora(jazz.folder, -0.4, name="bebop") is riffuser
    clip = _clip(riffuser)
    assert clip.audio != base.audio
    assert clip.recipe.adapters == (
        Adapter("lora", str(lofi.file), file_fingerprint(lofi.file), 0.7, name="lofi"),
        Adapter("lora", str(jazz.file), file_fingerprint(jazz.file), -0.4, name="bebop"),
    )
    share = clip.recipe.to_url()
    recipe = Recipe.from_url(share)
    assert [a.name for a in recipe.adapters] == ["lofi", "bebop"]

    again = Riffuser.from_recipe(share, device="cpu", adapter_dirs=[lofi.folder.parent])
    again.pipeline.set_progress_bar_config(disable=True)
    assert again.loras == riffuser.loras  # names, files, fingerprints, scales, order
    rendered = again.render(share)
    assert rendered.audio == clip.audio
    assert np.array_equal(np.asarray(rendered.image), np.asarray(clip.image))

    # Other scales on the instance: the recipe's are used for the call, the own ones kept.
    riffuser.set_lora_scale(0.0, name="lofi").set_lora_scale(1.0, name="bebop")
    assert riffuser.render(recipe).audio == clip.audio
    assert [lora.scale for lora in riffuser.loras] == [0.0, 1.0]
    # The same LoRAs in the other order: not the recipe's stack.
    swapped = _riffuser(tiny_model).load_lora(jazz.folder, -0.4).load_lora(lofi.folder, 0.7)
    with pytest.raises(ParameterError, match="in the same order"):
        swapped.render(recipe)
    # use_adapters puts them right: unloads, loads the recipe's stack in order.
    swapped.use_adapters(recipe.adapters, adapter_dirs=[lofi.folder.parent])
    assert [(lora.name, lora.scale) for lora in swapped.loras] == [("lofi", 0.7), ("bebop", -0.4)]
    assert swapped.render(recipe).audio == clip.audio
    # One of them loaded already (another name): kept, the second loaded after it.
    partial = _riffuser(tiny_model).load_lora(lofi.folder, 0.1, name="mine")
    partial.use_adapters(recipe.adapters, adapter_dirs=[lofi.folder.parent])
    assert [(lora.name, lora.scale) for lora in partial.loras] == [("mine", 0.7), ("bebop", -0.4)]
    assert partial.render(recipe).audio == clip.audio
    # Unloading one by name: the recipe no longer matches; the other one's clip does.
    riffuser.unload_lora("lofi")
    with pytest.raises(ParameterError, match=r"made with adapters \[lora .*, lora .*\] but"):
        riffuser.render(recipe)
    riffuser.unload_lora()
    assert riffuser.loras == () and _clip(riffuser).audio == base.audio


def test_a_one_lora_recipe_written_before_stacking_still_renders(tiny_model, loras):
    from riffusion import Recipe, Riffuser

    lofi, _ = loras
    riffuser = _riffuser(tiny_model).load_lora(lofi.folder, 0.5)
    clip = _clip(riffuser)
    # The format before: a LoRA adapter without "name" (and at most one).
    data = clip.recipe.to_dict()
    del data["adapters"][0]["name"]
    old = Recipe.from_dict(data)
    assert old.adapters[0].name is None and old == clip.recipe  # the name is a label
    assert "name" not in old.to_dict()["adapters"][0]  # and written back as it was
    again = Riffuser.from_recipe(old.to_url(), device="cpu", adapter_dirs=[lofi.folder.parent])
    again.pipeline.set_progress_bar_config(disable=True)
    assert [lora.name for lora in again.loras] == ["lofi"]  # derived from the file
    assert again.render(old.to_url()).audio == clip.audio
    with pytest.raises(ParameterError, match="a textual inversion has no name"):
        dataclasses.replace(
            clip.recipe.adapters[0], kind="textual_inversion", scale=None, token="<t>"
        )
