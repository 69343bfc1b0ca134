"""Open for extension: a toy image model and a toy decoder drive Riffuser end to end.

The toy model echoes its seed image (or paints a flat grey from the seed without one) and the
toy decoder turns each column's mean level into a constant stretch of samples, so every output
can be computed by hand from the input image. Nothing here loads diffusers: the front door
talks to the protocols (:class:`riffusion.models.ImageModel`,
:class:`riffusion.decoders.Decoder`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion import ParameterError, PromptInput, Recipe, Riffuser
from riffusion.decoders import register_decoder, unregister_decoder
from riffusion.image import image_to_mel
from riffusion.models.loading import register_model, unregister_model
from riffusion.seeds import load_seed_image

ROOT = Path(__file__).resolve().parent.parent


class EchoModel:
    """An image model that returns its init image, or a grey of level ``seed % 256``."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.scheduler = "echo"
        self.loras = ()
        self.textual_inversions = ()
        self.interrupt = False
        self.calls: list[dict] = []

    def riffuse(self, start, end=None, alpha=0.0, *, init_image=None, mask_image=None,
                num_inference_steps=50, width=None, height=None, periodic=False,
                callback_on_step_end=None):  # fmt: skip
        self.calls.append({"seed": start.seed, "periodic": periodic, "mask": mask_image})
        if init_image is not None:
            image = init_image.convert("RGB")
        else:
            image = Image.new("RGB", (width, height), (start.seed % 256,) * 3)
        latents = torch.zeros(1, 4, image.height // 8, image.width // 8)
        for step in range(2):
            if callback_on_step_end is not None:
                out = callback_on_step_end(
                    self, step, 999 - step, {"latents": latents, "num_steps": 2}
                )
                latents = (out or {}).get("latents", latents)
        seeds = (start.seed,) if end is None else (start.seed, end.seed)
        return SimpleNamespace(
            image=image,
            alpha=alpha,
            seeds=seeds,
            denoising=start.denoising,
            guidance=start.guidance,
            timesteps=(999, 998),
            timings_s={},
        )

    def describe_scheduler(self):
        return ("default", {})

    def build_scheduler(self, name, overrides=None):
        return name

    def set_scheduler(self, name):
        self.scheduler = name


class ColumnLevels:
    """A decoder: each frame's mean magnitude, held for one hop."""

    def __init__(self, supports_periodic: bool) -> None:
        self.supports_periodic = supports_periodic

    def decode(self, mel, params, *, seed=0, periodic=False, num_iterations=None, device="cpu"):
        levels = mel.mean(dim=-2)  # (..., frames)
        samples = levels.repeat_interleave(params.hop_length, dim=-1)
        length = params.samples_for_width(mel.shape[-1], periodic=periodic)
        return samples[..., :length].to(torch.float32)


def expected_audio(image: Image.Image, params, periodic=False) -> np.ndarray:
    mel = image_to_mel(image, params)  # (1, n_mels, frames)
    levels = mel.mean(dim=-2).numpy()
    samples = np.repeat(levels, params.hop_length, axis=-1)
    return samples[..., : params.samples_for_width(image.width, periodic=periodic)]


@pytest.fixture
def toy():
    register_decoder("toy-levels", ColumnLevels(supports_periodic=True))
    register_decoder("toy-oneshot", ColumnLevels(supports_periodic=False))
    try:
        yield Riffuser(EchoModel(), model="toy/echo", decode_method="toy-levels")
    finally:
        unregister_decoder("toy-levels")
        unregister_decoder("toy-oneshot")


def _peak_normalised(waveform: np.ndarray) -> np.ndarray:
    return waveform / np.abs(waveform).max()


def test_a_toy_model_and_decoder_make_a_clip_and_its_recipe_renders_it_again(toy):
    steps = []
    clip = toy.text_to_audio(
        "anything", seed=3, num_inference_steps=4,
        callback_on_step_end=lambda model, step, t, kw: steps.append((step, tuple(kw))),
    )  # fmt: skip
    seed = load_seed_image("straight_beat").convert("RGB")
    assert np.array_equal(np.asarray(clip.image), np.asarray(seed))  # the echo
    assert steps == [(0, ("latents",)), (1, ("latents",))]
    assert clip.recipe.model == "toy/echo" and clip.recipe.decode_method == "toy-levels"
    # The toy decode of the echoed seed image, computed by hand; image_to_audio scales the
    # decoder's samples to a fixed peak, so the shapes are compared at equal peaks.
    assert clip.audio.num_samples == 225351
    np.testing.assert_allclose(
        _peak_normalised(clip.audio.waveform),
        _peak_normalised(expected_audio(seed, toy.params)[:, :225351]),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    again = toy.render(Recipe.parse(clip.recipe.to_url()))
    assert again.audio == clip.audio


def test_long_clips_continue_through_the_toy_model(toy):
    clip = toy.text_to_audio("x", seed=5, num_inference_steps=4, duration_s=8.0)
    model = toy.pipeline
    # 8 s = 801 columns: a first window of 512, then one per 256 new columns (2), seeds walking.
    assert [call["seed"] for call in model.calls] == [5, 6, 7]
    assert model.calls[0]["mask"] is None and model.calls[1]["mask"] is not None
    assert clip.audio.num_samples == round(8.0 * 44100)
    assert toy.render(clip.recipe).audio == clip.audio


def test_loops_ask_the_decoder_whether_it_decodes_periodically(toy):
    clip = toy.loop("x", seed=1, num_inference_steps=4)
    assert toy.pipeline.calls[-1]["periodic"] is True
    assert clip.audio.num_samples == 512 * 441  # one period: width · hop
    oneshot = Riffuser(EchoModel(), model="toy/echo", decode_method="toy-oneshot")
    with pytest.raises(ParameterError, match="cannot decode a loop") as caught:
        oneshot.loop("x", seed=1, num_inference_steps=4)
    assert "toy-oneshot" in str(caught.value)


def test_text_to_image_stream_and_interpolate_through_the_toy_model(toy):
    clips = toy.interpolate(PromptInput("a", seed=10), PromptInput("b", seed=11), 3,
                            num_inference_steps=4, seed_image=None)  # fmt: skip
    assert [clip.recipe.alpha for clip in clips] == [0.0, 0.5, 1.0]
    assert np.asarray(clips[0].image)[0, 0, 0] == 10  # grey of the start seed
    streamed = list(
        toy.stream(["a", "b"], steps_per_transition=2, max_clips=3, num_inference_steps=4)
    )
    assert [clip.debug["seeds"][0] for clip in streamed] == [[0, 1], [0, 1], [1, 2]]


def test_objects_that_are_not_image_models_are_named():
    with pytest.raises(ParameterError, match="is not an image model") as caught:
        Riffuser(object())
    assert "riffuse" in str(caught.value)


def test_the_front_door_with_a_toy_model_loads_no_diffusers():
    code = textwrap.dedent(
        """
        import sys
        from tests.test_extension import EchoModel
        from riffusion import Riffuser
        riffuser = Riffuser(EchoModel(), model="toy/echo")
        clip = riffuser.text_to_audio("x", seed=1, num_inference_steps=2)
        print(sorted(m for m in ("diffusers", "transformers", "peft") if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_registered_model_family_is_loaded_by_id_and_its_recipes_render_in_a_fresh_riffuser(toy):
    made: list[dict] = []

    def factory(**options):
        made.append(options)
        return EchoModel()

    register_model("toy/echo", factory)
    try:
        riffuser = Riffuser.from_pretrained("toy/echo", device="cpu")
        assert made == [{"device": "cpu", "dtype": None, "scheduler": None}]
        riffuser.decode_method = "toy-levels"
        clip = riffuser.text_to_audio("x", seed=4, num_inference_steps=4)
        assert clip.recipe.model == "toy/echo"
        # A fresh Riffuser from the share string alone: the model comes from the factory.
        url = clip.recipe.to_url()
        again = Riffuser.from_recipe(url).render(url)
        assert len(made) == 2 and again.audio == clip.audio
        with pytest.raises(ParameterError, match="already registered") as caught:
            register_model("toy/echo", factory)
        assert "'toy/echo'" in str(caught.value)
    finally:
        unregister_model("toy/echo")
