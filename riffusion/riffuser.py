"""The front door: :class:`Riffuser` turns prompts into clips through the layers beneath it.

Each verb checks its arguments, writes the :class:`~riffusion.Recipe` of the clip and renders
it with :mod:`riffusion.compose` (continuation windows, audio-to-audio windows, loops, the
stream) over an image model (:class:`~riffusion.models.ImageModel`) and a decoder — the same
path a shared recipe takes through :meth:`Riffuser.render`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch

from riffusion._checks import check_integer
from riffusion.audio import Audio
from riffusion.calls import generating
from riffusion.compose.inputs import (
    DEFAULT_SEED,
    as_audio,
    as_prompt_input,
    prompt_input,
    resolve_mask_image,
    resolve_seed_image,
)
from riffusion.compose.interpolation import interpolation_alphas
from riffusion.compose.loops import loop_width
from riffusion.compose.replay import Inputs, audio_source, make_recipe, render_recipe
from riffusion.compose.stream import Stream
from riffusion.compose.stream_stages import RiffuseStages, StreamSettings
from riffusion.defaults import WINDOW_WIDTH
from riffusion.errors import ParameterError
from riffusion.inputs import PromptInput
from riffusion.model_holder import ModelHolder
from riffusion.progress import StepHooks
from riffusion.recipe import Clip, Recipe, _check_duration, _check_steps
from riffusion.schedule import stream_schedule
from riffusion.seeds import image_fingerprint

__all__ = ["DEFAULT_SEED", "Riffuser"]


class Riffuser(ModelHolder):
    """Text to music, audio to audio, interpolation, endless streams and seamless loops.

    Args:
        pipeline: an image model: a loaded :class:`~riffusion.models.sd1.RiffusionPipeline`,
            or anything with the members of :class:`riffusion.models.ImageModel`.
        model: the id or folder it came from (recorded in recipes).
        params: spectrogram parameters of the model's images (Riffusion's by default; mono).
        decode_method: the registered decoder of every clip (``"fast"``, ``"reference"`` or a
            name given to :func:`riffusion.decoders.register_decoder`).
        decode_seed: seed of the phase recovery.
        scheduler: a scheduler name (``SCHEDULER_NAMES``) to switch to, or ``None`` to keep
            the model's. Recipes record the scheduler that actually ran.

    Thread safety: every generating method and ``set_scheduler`` hold :attr:`lock`, a
    re-entrant lock, so calls from several threads run one at a time; hold it yourself to keep
    a group of calls together. Progress: inside ``with riffuser.on_progress(callback):`` each
    denoising step reports a :class:`~riffusion.progress.Progress`; ``True`` cancels the clip
    (:class:`~riffusion.errors.GenerationCancelled`). Per call, the verbs also take diffusers'
    ``callback_on_step_end=`` and ``callback_on_step_end_tensor_inputs=``.

    Example:
        >>> riffuser = Riffuser.from_pretrained()  # doctest: +SKIP
        >>> clip = riffuser.text_to_audio("funky bass groove", seed=42)  # doctest: +SKIP
        >>> clip.save("funk.wav")  # doctest: +SKIP
    """

    # ------------------------------------------------------------------------ rendering
    def _recipe(self, kind: str, start: Any, **values: Any) -> Recipe:
        return make_recipe(
            self.pipeline, kind, start, model_id=self.model, params=self.params,
            decode_method=self.decode_method, decode_seed=self.decode_seed, **values,
        )  # fmt: skip

    def _render(self, recipe: Recipe, inputs: Inputs, hooks: StepHooks | None = None) -> Clip:
        # Phase recovery runs on CUDA when the model does; MPS lacks some FFT ops: CPU there.
        device = torch.device(self.pipeline.device)
        device = device if device.type == "cuda" else torch.device("cpu")
        return render_recipe(self.pipeline, recipe, inputs, device=device, hooks=hooks)

    # ------------------------------------------------------------------------ the verbs
    @generating
    def text_to_audio(
        self,
        prompt: str,
        *,
        seed: int | None = None,
        negative_prompt: str | None = None,
        denoising: float = 0.75,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        mask_image: Any = None,
        duration_s: float | None = None,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Clip:
        """Generate music from a text prompt.

        Args:
            prompt: what to play (supports ``(word:1.3)`` emphasis).
            seed: noise seed; ``None`` draws one (recorded in the recipe).
            negative_prompt: what to steer away from.
            denoising: img2img strength in [0, 1] against the seed image (ignored without one).
            guidance: classifier-free guidance scale.
            num_inference_steps: scheduler steps of a full run.
            seed_image: an id (a built-in name, see :func:`riffusion.seed_images`, a registered
                id or a Riffusion web-app id), a :class:`pathlib.Path`, a PIL image,
                :class:`Audio`, or ``None`` for pure text-to-image. Default ``"straight_beat"``.
                Strings are never paths.
            mask_image: a mask id, :class:`pathlib.Path` or PIL image (white = regenerate);
                ``None`` or ``""`` for no mask; applies to the first window.
            duration_s: length in seconds, (0, 600]; ``None`` is one model window (512 columns,
                225,351 samples, 5.11 s). Longer music is continued: each next window is
                in-painted after the last 2.56 s of the previous one, and the joined
                spectrogram is decoded in one piece, so there are no seams in the phase.
            callback_on_step_end: diffusers' per-step hook, ``(model, step, timestep,
                callback_kwargs) -> dict | None``, called in every window.
            callback_on_step_end_tensor_inputs: the tensors it receives (``["latents"]``).

        Returns:
            A :class:`Clip` of exactly ``round(duration_s * sample_rate)`` samples.
        """
        hooks = StepHooks(callback_on_step_end, callback_on_step_end_tensor_inputs)
        start = prompt_input(
            prompt, seed=seed, negative_prompt=negative_prompt, denoising=denoising,
            guidance=guidance, example="riffuser.text_to_audio('funky bass', seed=42)",
        )  # fmt: skip
        if duration_s is None:
            duration_s = self.params.samples_for_width(WINDOW_WIDTH) / self.params.sample_rate
        duration_s = _check_duration(duration_s)
        steps = _check_steps(num_inference_steps)
        seed_picture, seed_id = resolve_seed_image(seed_image, self.params)
        mask_picture, mask_id = resolve_mask_image(mask_image)
        if mask_picture is not None and seed_picture is None:
            raise ParameterError("mask_image needs a seed image; seed_image=None has none")
        recipe = self._recipe(
            "text_to_audio", start, num_inference_steps=steps, seed_image=seed_id,
            mask_image=mask_id, duration_s=duration_s,
        )  # fmt: skip
        return self._render(recipe, Inputs(seed_picture, mask_picture, resolved=True), hooks)

    @generating
    def audio_to_audio(
        self,
        audio: Audio | str | os.PathLike[str],
        prompt: str,
        *,
        denoising: float = 0.5,
        seed: int | None = None,
        negative_prompt: str | None = None,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Clip:
        """Transform audio of any length with a prompt (style transfer on the spectrogram).

        The audio is resampled and mixed to mono, encoded, cut into 512-column windows
        overlapping by 64 (one padded window for shorter audio), each window regenerated with
        img2img (window ``k`` uses seed ``seed + k``), crossfaded back together in the image
        and decoded in one piece.

        Args:
            audio: input :class:`Audio` or a path to an audio file (any rate, channels,
                length of at least 10 ms).
            prompt: what it should sound like.
            denoising: strength in [0, 1]; low keeps more of the input.
            seed, negative_prompt, guidance, num_inference_steps: as :meth:`text_to_audio`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: as
                :meth:`text_to_audio`.

        Returns:
            A :class:`Clip` as long as the input (at ``params.sample_rate``).
        """
        example = "riffuser.audio_to_audio('song.wav', 'jazz piano', denoising=0.5)"
        if isinstance(prompt, Audio | os.PathLike) and isinstance(audio, str):
            raise ParameterError(
                f"audio and prompt look swapped: the audio comes first, e.g. {example}"
            )
        audio = as_audio(audio, example)
        hooks = StepHooks(callback_on_step_end, callback_on_step_end_tensor_inputs)
        start = prompt_input(
            prompt, seed=seed, negative_prompt=negative_prompt, denoising=denoising,
            guidance=guidance, example=example,
        )  # fmt: skip
        steps = _check_steps(num_inference_steps)
        source = audio_source(audio, self.params)
        recipe = self._recipe(
            "audio_to_audio", start, num_inference_steps=steps, seed_image=None,
            duration_s=source[1] / self.params.sample_rate,
            input_audio=image_fingerprint(source[0]),
        )  # fmt: skip
        return self._render(recipe, Inputs(source=source, resolved=True), hooks)

    @generating
    def riffuse(
        self,
        start: PromptInput | str,
        end: PromptInput | str | None = None,
        alpha: float = 0.0,
        *,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        mask_image: Any = None,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Clip:
        """One interpolation step between two prompt inputs (one 512-column window: 5.11 s).

        Text embeddings are mixed linearly, the seeds' noise spherically, denoising and
        guidance linearly; ``alpha=0`` is the start alone, ``alpha=1`` the end alone.

        Args:
            start: the prompt input at ``alpha = 0`` (a string: ``PromptInput(text, seed=0)``).
            end: the prompt input at ``alpha = 1`` (a string: seed ``start.seed + 1``);
                ``None`` uses ``start`` alone.
            alpha: interpolation weight in [0, 1].
            num_inference_steps, seed_image, mask_image: as :meth:`text_to_audio`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: as
                :meth:`text_to_audio`.
        """
        hooks = StepHooks(callback_on_step_end, callback_on_step_end_tensor_inputs)
        start = as_prompt_input(start, 0, "start")
        end = None if end is None else as_prompt_input(end, start.seed + 1, "end")
        steps = _check_steps(num_inference_steps)
        seed_picture, seed_id = resolve_seed_image(seed_image, self.params)
        mask_picture, mask_id = resolve_mask_image(mask_image)
        recipe = self._recipe(
            "riffuse", start, end=end, alpha=alpha, num_inference_steps=steps,
            seed_image=seed_id, mask_image=mask_id,
            duration_s=self.params.samples_for_width(WINDOW_WIDTH) / self.params.sample_rate,
        )  # fmt: skip
        return self._render(recipe, Inputs(seed_picture, mask_picture, resolved=True), hooks)

    def interpolate(
        self, start: PromptInput | str, end: PromptInput | str, num_clips: int, **options: Any
    ) -> list[Clip]:
        """``num_clips`` clips of :meth:`riffuse` along alpha from 0 to 1 inclusive.

        Args:
            start: the prompt input at alpha 0 (a string: seed 0).
            end: the prompt input at alpha 1 (a string: seed ``start.seed + 1``).
            num_clips: clips at ``alpha = k / (num_clips − 1)``, an int >= 2.
            **options: ``num_inference_steps``, ``seed_image``, ``mask_image`` for every clip.
        """
        alphas = interpolation_alphas(num_clips)
        start = as_prompt_input(start, 0, "start")
        end = as_prompt_input(end, start.seed + 1, "end")
        return [self.riffuse(start, end, alpha, **options) for alpha in alphas]

    def stream(
        self,
        prompts: Iterable[PromptInput | str] | PromptInput | str,
        *,
        steps_per_transition: int = 4,
        max_clips: int | None = None,
        endless: bool = True,
        buffer_ahead: int = 0,
        background: bool = True,
        **options: Any,
    ) -> Stream:
        """The web app's endless playback: a :class:`~riffusion.compose.stream.Stream` of
        one-window (5.11 s) clips, whose prompt, seed image, denoising ... can change while it
        plays (``stream.set_prompt("techno")`` from another thread).

        Moves between successive prompts in ``steps_per_transition`` alpha steps; when the
        prompt stays the same (or the prompts run out, with ``endless``) the seed walks
        ``n → n + 1``. All clips share the seed image, so they line up on its beat and play
        back to back (:func:`riffusion.stitch`); each is 225,351 samples, as Riffusion's server
        sent, so clips played end to end drift 10 ms per clip against the seed's beat, as in
        the original app. Each clip is the one :meth:`riffuse` makes for its step.

        Args:
            prompts: :class:`PromptInput` values or strings (see
                :func:`riffusion.schedule.stream_schedule`).
            steps_per_transition: clips per transition (4: alpha 0, 0.25, 0.5, 0.75).
            max_clips: stop after this many clips (``None``: as the schedule goes).
            endless: keep walking the seed after the last prompt.
            buffer_ahead: make up to this many clips ahead (the web app keeps 3), in a
                background thread started by the first ``next()``; 0 makes them on demand.
                The clips are the same either way.
            background: ``False``: the clips ahead are made only by ``stream.make_ahead()``,
                on the caller's thread (an app with its own device worker, like the server).
            **options: ``num_inference_steps``, ``seed_image``, ``mask_image`` for every clip.

        Raises:
            ParameterError: bad arguments, raised at the call, before any clip is made.
        """
        if max_clips is not None:
            check_integer("max_clips", max_clips, minimum=0)
        check_integer("buffer_ahead", buffer_ahead, minimum=0)
        unknown = sorted(set(options) - {"num_inference_steps", "seed_image", "mask_image"})
        if unknown:
            raise ParameterError(
                f"stream() got unknown option(s) {unknown}; it takes num_inference_steps, "
                "seed_image and mask_image for every clip"
            )
        steps = _check_steps(
            options.get("num_inference_steps", self.default_num_inference_steps or 50)
        )
        seed_picture, seed_id = resolve_seed_image(
            options.get("seed_image", DEFAULT_SEED), self.params
        )
        mask_picture, mask_id = resolve_mask_image(options.get("mask_image"))
        schedule = stream_schedule(
            prompts, steps_per_transition=steps_per_transition, endless=endless
        )
        stages = RiffuseStages(self.pipeline, self.params, lock=self.lock, record=self._recipe)
        return Stream(
            stages,
            schedule,
            StreamSettings(seed_picture, seed_id, mask_picture, mask_id, steps),
            steps_per_transition=steps_per_transition,
            endless=endless,
            max_clips=max_clips,
            buffer_ahead=buffer_ahead,
            background=background,
        )

    @generating
    def loop(
        self,
        prompt: str,
        *,
        seed: int | None = None,
        negative_prompt: str | None = None,
        denoising: float = 0.75,
        guidance: float = 7.0,
        num_inference_steps: int = 50,
        seed_image: Any = DEFAULT_SEED,
        bars: int | None = None,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Clip:
        """A clip that loops seamlessly: one period of 512 columns, 225,792 samples = 5.12 s.

        The generation is periodic in time (circular padding along the latent time axis in the
        UNet and VAE) and the phase is recovered with circular framing, so played end to start
        there is no click or jump. It needs a decoder that supports periodic decoding.

        Args:
            prompt, seed, negative_prompt, denoising, guidance: as :meth:`text_to_audio`.
            num_inference_steps: as :meth:`text_to_audio`.
            callback_on_step_end, callback_on_step_end_tensor_inputs: as
                :meth:`text_to_audio`.
            seed_image: seed image (as :meth:`text_to_audio`), tiled or cut to the loop.
            bars: length in 4/4 bars at the seed images' tempo (``riffusion.seeds.SEED_BPM``,
                93.75 BPM: a bar is 256 columns), an int in [1, 16]; ``None``: 512 columns.
        """
        hooks = StepHooks(callback_on_step_end, callback_on_step_end_tensor_inputs)
        start = prompt_input(
            prompt, seed=seed, negative_prompt=negative_prompt, denoising=denoising,
            guidance=guidance, example="riffuser.loop('techno beat', seed=42, bars=4)",
        )  # fmt: skip
        width = loop_width(bars, self.params)
        steps = _check_steps(num_inference_steps)
        seed_picture, seed_id = resolve_seed_image(seed_image, self.params, width=width)
        duration_s = self.params.samples_for_width(width, periodic=True) / self.params.sample_rate
        recipe = self._recipe(
            "loop", start, num_inference_steps=steps, seed_image=seed_id, duration_s=duration_s
        )
        return self._render(recipe, Inputs(seed_picture, resolved=True), hooks)

    @generating
    def render(
        self,
        recipe: Recipe | str,
        *,
        seed_image: Any = None,
        mask_image: Any = None,
        audio: Audio | str | os.PathLike[str] | None = None,
    ) -> Clip:
        """Make the clip a recipe describes again — bit for bit on the same device, versions
        and torch thread count (reductions are split per thread).

        Everything comes from the recipe: the scheduler (built for this call on this model's
        noise schedule, the model's own put back after), the decoder and its seed, the seed and
        mask images. Its LoRA and textual inversions must be the ones loaded (the same files,
        by fingerprint); a LoRA scale that differs is used for this call. In a fresh process:
        ``Riffuser.from_recipe(recipe).render(recipe)``.

        Args:
            recipe: a :class:`Recipe` or any form :meth:`Recipe.parse` reads (share string…).
            seed_image: the custom seed image a ``custom:`` recipe used (checked by fingerprint).
            mask_image: likewise for a custom mask.
            audio: the input audio of an ``audio_to_audio`` recipe (checked by fingerprint).
        """
        recipe = Recipe.parse(recipe)
        if recipe.params != self.params:
            raise ParameterError(
                f"recipe params {recipe.params} differ from this Riffuser's {self.params}"
            )
        source = None
        if recipe.kind == "audio_to_audio":
            if audio is None:
                raise ParameterError("this recipe transforms audio: pass audio=")
            audio = as_audio(audio, "riffuser.render(recipe, audio='song.wav')")
            source = audio_source(audio, self.params)
        return self._render(
            recipe, Inputs(source=source, seed_image=seed_image, mask_image=mask_image)
        )
