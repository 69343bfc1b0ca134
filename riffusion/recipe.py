"""What a run made and how to make it again: :class:`Recipe` and :class:`Clip`.

Value types of the front door, kept apart from :class:`~riffusion.Riffuser` so that reading,
validating and sharing recipes (``riffusion render``, batch jobs, the server) does not need the
generation code. Exported at the top level.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from riffusion._checks import check_integer, check_seed, describe, finite_float
from riffusion._files import atomic_output
from riffusion.audio import Audio
from riffusion.decoders import check_decoder_name, get_decoder
from riffusion.defaults import (
    DEFAULT_SEED_IMAGE,
    MAX_CLIP_DURATION_S,
    MAX_INFERENCE_STEPS,
    RECIPE_URL_PREFIX,
    SCHEDULER_NAMES,
    WINDOW_WIDTH,
)
from riffusion.errors import ParameterError, RiffusionError
from riffusion.image import save_image as write_image
from riffusion.inputs import PromptInput, unicode_problem
from riffusion.params import SpectrogramParams
from riffusion.seeds import check_image_id

__all__ = ["Adapter", "Clip", "Recipe", "check_scheduler_config"]

_WINDOW_S = SpectrogramParams().samples_for_width(WINDOW_WIDTH) / SpectrogramParams().sample_rate
# A share string is at most a few kilobytes of JSON: more, once inflated, is not a recipe
# (and a small deflate stream can inflate to gigabytes).
_MAX_RECIPE_JSON_BYTES = 1 << 20
# A diffusers scheduler class assigned to pipeline.scheduler directly, recorded by class name;
# the class itself is looked up when the recipe is rendered (without loading diffusers here).
_SCHEDULER_CLASS = re.compile(r"[A-Z][A-Za-z0-9]{0,63}Scheduler")


def _library_version() -> str:
    from riffusion import __version__

    return __version__


def _check_steps(num_inference_steps: Any) -> int:
    return check_integer("num_inference_steps", num_inference_steps)


def _check_duration(duration_s: Any) -> float:
    number = finite_float(duration_s)
    if number is None or not 0 < number <= MAX_CLIP_DURATION_S:
        raise ParameterError(
            f"duration_s={duration_s!r} must be a number in (0, {MAX_CLIP_DURATION_S:g}] seconds"
        )
    return number


_MAX_SCHEDULER_KEYS = 64
_MAX_TRAIN_TIMESTEPS = 10_000
# Scheduler settings that size arrays or loops, with their bounds: anything else must be a
# plain scalar. diffusers allocates per training timestep (betas, alphas, sigmas), so a
# recipe's num_train_timesteps of 2e9 would ask for tens of gigabytes.
_SIZED_SCHEDULER_KEYS = {
    "num_train_timesteps": (1, _MAX_TRAIN_TIMESTEPS),
    "steps_offset": (0, _MAX_TRAIN_TIMESTEPS),
    "solver_order": (1, 3),
    "original_inference_steps": (1, _MAX_TRAIN_TIMESTEPS),
}
_MAX_SCHEDULER_NUMBER = 1e6


def check_scheduler_config(config: Any) -> dict[str, Any] | None:
    """``config`` if it is a recipe's scheduler overrides that can not exhaust memory or time.

    At most 64 entries with string keys. The settings that size arrays or loops are integers
    within bounds (``num_train_timesteps`` and ``steps_offset`` up to 10,000, ``solver_order``
    1–3, ``original_inference_steps`` up to 10,000); ``trained_betas`` is ``None`` or at most
    10,000 numbers in (0, 1); every other value is ``None``, a bool, a finite number of
    magnitude at most 1e6, or a string of at most 64 characters. A share string from a
    stranger passes through here before diffusers sees it.

    Args:
        config: ``None`` or a dict of scheduler config entries.

    Raises:
        ParameterError: naming the entry, its value and what was expected.
    """
    if config is None:
        return None
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise ParameterError(f"scheduler_config={describe(config)} must be a dict with string keys")
    if len(config) > _MAX_SCHEDULER_KEYS:
        raise ParameterError(
            f"scheduler_config has {len(config)} entries; at most {_MAX_SCHEDULER_KEYS}"
        )
    for key, value in config.items():
        where = f"scheduler_config[{key[:64]!r}]={describe(value)}"
        if key in _SIZED_SCHEDULER_KEYS:
            low, high = _SIZED_SCHEDULER_KEYS[key]
            if value is None and key == "original_inference_steps":
                continue
            check_integer(f"scheduler_config[{key!r}]", value, minimum=low, maximum=high)
        elif key == "trained_betas":
            if value is not None and (
                not isinstance(value, list)
                or not 0 < len(value) <= _MAX_TRAIN_TIMESTEPS
                or not all((b := finite_float(v)) is not None and 0 < b < 1 for v in value)
            ):
                raise ParameterError(
                    f"{where} must be null or a list of at most {_MAX_TRAIN_TIMESTEPS} numbers "
                    "in (0, 1)"
                )
        elif not _plain_setting(value):
            raise ParameterError(
                f"{where} must be null, a bool, a finite number of magnitude at most "
                f"{_MAX_SCHEDULER_NUMBER:g} or a string of at most 64 characters"
            )
    return config


def _plain_setting(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return len(value) <= 64 and unicode_problem(value) is None
    number = finite_float(value)
    return number is not None and abs(number) <= _MAX_SCHEDULER_NUMBER


def _check_scheduler_name(name: Any) -> None:
    if isinstance(name, str) and (name in SCHEDULER_NAMES or _SCHEDULER_CLASS.fullmatch(name)):
        return
    raise ParameterError(
        f"scheduler={name!r} must be one of {list(SCHEDULER_NAMES)} or a diffusers "
        "scheduler class name"
    )


def _check_fingerprint(name: str, value: Any) -> None:
    if (
        not isinstance(value, str)
        or len(value) != 16
        or any(char not in "0123456789abcdef" for char in value)
    ):
        raise ParameterError(f"{name}={value!r} must be a 16-hex-digit image fingerprint")


# ---------------------------------------------------------------------------------- Adapter
_ADAPTER_KINDS = ("lora", "textual_inversion")
_MAX_LORA_NAME_LENGTH = 100  # as riffusion.models.sd1.lora.MAX_LORA_NAME_LENGTH


@dataclass(frozen=True)
class Adapter:
    """Weights loaded on top of the model when a clip was made (a LoRA or a textual inversion).

    Attributes:
        kind: ``"lora"`` or ``"textual_inversion"``.
        path: absolute path of the weights file as it was loaded.
        fingerprint: the first 16 hex digits of the SHA-256 of the file's bytes; rendering
            checks that the weights in use are these (the path may differ on another machine).
        scale: LoRA strength (a finite number); ``None`` for a textual inversion.
        token: the prompt token a textual inversion is bound to; ``None`` for a LoRA.
        name: the LoRA's name in ``Riffuser.loras`` (a label: not compared, as it does not
            change the clip); ``None`` for a textual inversion, and for a LoRA of a recipe
            written before LoRAs stacked (it gets the name derived from its file when loaded).
    """

    kind: str
    path: str
    fingerprint: str
    scale: float | None = None
    token: str | None = None
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _ADAPTER_KINDS:
            raise ParameterError(f"adapter kind={self.kind!r} must be one of {_ADAPTER_KINDS}")
        if not isinstance(self.path, str) or not self.path.strip() or "\x00" in self.path:
            raise ParameterError(f"adapter path={self.path!r} must be a non-empty file path")
        _check_fingerprint("adapter fingerprint", self.fingerprint)
        if self.kind == "lora":
            if finite_float(self.scale) is None:
                raise ParameterError(f"LoRA scale={self.scale!r} must be a finite number")
            if self.token is not None:
                raise ParameterError(f"a LoRA has no token (got {self.token!r})")
            if self.name is not None and (
                not isinstance(self.name, str)
                or not self.name.strip()
                or len(self.name) > _MAX_LORA_NAME_LENGTH
                or not self.name.isprintable()
            ):
                raise ParameterError(
                    f"LoRA name={self.name!r} must be a non-empty string of at most "
                    f"{_MAX_LORA_NAME_LENGTH} printable characters"
                )
        else:
            if not isinstance(self.token, str) or not self.token.strip():
                raise ParameterError(
                    f"textual inversion token={self.token!r} must be a non-empty string"
                )
            if self.scale is not None:
                raise ParameterError(f"a textual inversion has no scale (got {self.scale!r})")
            if self.name is not None:
                raise ParameterError(f"a textual inversion has no name (got {self.name!r})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``scale`` and ``name`` or ``token``, whichever the kind has)."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "path": self.path,
            "fingerprint": self.fingerprint,
        }
        if self.kind == "lora":
            data["scale"] = self.scale
            if self.name is not None:  # recipes of an unnamed LoRA read as before
                data["name"] = self.name
        else:
            data["token"] = self.token
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Adapter:
        """The inverse of :meth:`to_dict`; unknown or missing keys raise
        :class:`ParameterError`.

        Args:
            data: a dict as :meth:`to_dict` returns it.
        """
        if not isinstance(data, dict):
            raise ParameterError(f"adapter {data!r} must be a JSON object")
        unknown = sorted(set(data) - {"kind", "path", "fingerprint", "scale", "token", "name"})
        if unknown:
            raise ParameterError(f"adapter has unknown keys {unknown}")
        missing = sorted({"kind", "path", "fingerprint"} - set(data))
        if missing:
            raise ParameterError(f"adapter is missing {missing}")
        return cls(**data)


# ----------------------------------------------------------------------------------- Recipe
@dataclass(frozen=True)
class Recipe:
    """Every input needed to reproduce a clip.

    Attributes:
        kind: ``"text_to_audio"``, ``"audio_to_audio"``, ``"riffuse"`` or ``"loop"``.
        model: model id or folder the pipeline was loaded from.
        scheduler: the scheduler that ran: ``"default"`` (the checkpoint's own), a name of
            ``SCHEDULER_NAMES``, or a diffusers scheduler class name (one assigned to
            ``pipeline.scheduler`` directly).
        scheduler_config: config entries of that scheduler that differ from what
            ``scheduler`` builds on the checkpoint's noise schedule (usually ``None``).
        start: the start prompt input (prompt, seed, negative prompt, denoising, guidance).
        end: the end prompt input of an interpolation, or ``None``.
        alpha: interpolation weight in [0, 1].
        num_inference_steps: scheduler steps of a full run.
        seed_image: seed image id (built-in name or registered id; aliases are recorded as
            the id they resolve to), ``"custom:<fingerprint>"`` for a user image or audio, or
            ``None`` for pure text-to-image.
        mask_image: mask id, ``"custom:<fingerprint>"``, or ``None``.
        duration_s: duration (in seconds), in (0, 600]: the requested length of
            ``text_to_audio``, the input's of ``audio_to_audio``, one window's (5.11 s) of
            ``riffuse`` and one period's (5.12 s) of ``loop``.
        input_audio: fingerprint of the input audio of ``audio_to_audio``, else ``None``.
        decode_method: phase recovery method of ``image_to_audio``.
        decode_seed: seed of the phase recovery.
        params: the spectrogram parameters.
        version: riffusion version that made the clip.
        adapters: the textual inversions, then the LoRAs (stacked, in loading order: the
            order of their sum), loaded when it was made (empty: the model alone).
    """

    kind: str
    model: str
    scheduler: str
    start: PromptInput
    end: PromptInput | None = None
    alpha: float = 0.0
    num_inference_steps: int = 50
    seed_image: str | None = DEFAULT_SEED_IMAGE
    mask_image: str | None = None
    duration_s: float = _WINDOW_S
    input_audio: str | None = None
    decode_method: str = "fast"
    decode_seed: int = 0
    params: SpectrogramParams = field(default_factory=SpectrogramParams)
    version: str = field(default_factory=_library_version)
    scheduler_config: dict[str, Any] | None = field(default=None, hash=False)
    adapters: tuple[Adapter, ...] = ()

    def __post_init__(self) -> None:
        kinds = ("text_to_audio", "audio_to_audio", "riffuse", "loop")
        if self.kind not in kinds:
            raise ParameterError(f"kind={self.kind!r} must be one of {', '.join(kinds)}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ParameterError(f"model={self.model!r} must be a non-empty hub id or folder")
        _check_scheduler_name(self.scheduler)
        check_scheduler_config(self.scheduler_config)
        if not isinstance(self.start, PromptInput):
            raise ParameterError(f"start={self.start!r} must be a PromptInput")
        if self.end is not None and not isinstance(self.end, PromptInput):
            raise ParameterError(f"end={self.end!r} must be a PromptInput or None")
        alpha = finite_float(self.alpha)
        if alpha is None or not 0.0 <= alpha <= 1.0:
            raise ParameterError(f"alpha={self.alpha!r} must be a number in [0, 1]")
        check_integer("num_inference_steps", self.num_inference_steps)
        if self.num_inference_steps > MAX_INFERENCE_STEPS:
            raise ParameterError(
                f"num_inference_steps={self.num_inference_steps} must be at most "
                f"{MAX_INFERENCE_STEPS}"
            )
        for name in ("seed_image", "mask_image"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) and value.startswith("custom:"):
                _check_fingerprint(name, value[len("custom:") :])
            else:
                check_image_id(value, what=name)
        if self.kind == "audio_to_audio" and self.seed_image is not None:
            raise ParameterError("seed_image must be None for an audio_to_audio recipe")
        _check_duration(self.duration_s)
        if self.kind == "audio_to_audio" or self.input_audio is not None:
            if self.kind != "audio_to_audio":
                raise ParameterError(f"input_audio is only for audio_to_audio, not {self.kind!r}")
            _check_fingerprint("input_audio", self.input_audio)
        check_decoder_name("decode_method", self.decode_method)
        if self.kind == "loop" and not get_decoder(self.decode_method).supports_periodic:
            # A loop is decoded with circular framing: the decoder is asked, not assumed.
            raise ParameterError(
                f"decode_method={self.decode_method!r} cannot decode a loop: a loop needs a "
                "decoder that supports periodic decoding (such as 'fast')"
            )
        check_seed("decode_seed", self.decode_seed)
        if not isinstance(self.params, SpectrogramParams):
            raise ParameterError(f"params={self.params!r} must be SpectrogramParams")
        if not isinstance(self.version, str) or not self.version:
            raise ParameterError(f"version={self.version!r} must be a non-empty string")
        if not isinstance(self.adapters, tuple) or not all(
            isinstance(adapter, Adapter) for adapter in self.adapters
        ):
            raise ParameterError(f"adapters={self.adapters!r} must be a tuple of Adapter")
        names = [a.name for a in self.adapters if a.kind == "lora" and a.name is not None]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ParameterError(f"LoRA names must be unique in a recipe: {twice} appear twice")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (prompt inputs use riffusion's field names)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["start"] = self.start.to_dict()
        data["end"] = self.end.to_dict() if self.end is not None else None
        data["params"] = dataclasses.asdict(self.params)
        if self.scheduler_config is None:
            del data["scheduler_config"]  # recipes without overrides read as before
        if self.adapters:
            data["adapters"] = [adapter.to_dict() for adapter in self.adapters]
        else:
            del data["adapters"]  # recipes of the model alone read as before
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """The inverse of :meth:`to_dict`; unknown keys raise :class:`ParameterError`.

        Args:
            data: a dict as :meth:`to_dict` returns it (e.g. from ``json.loads``).
        """
        if not isinstance(data, dict):
            raise ParameterError(f"recipe must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"recipe has unknown keys {unknown}")
        values = dict(data)
        try:
            for side in ("start", "end"):
                if side == "end" and values.get("end") is None:
                    continue
                try:
                    values[side] = PromptInput.from_dict(values[side])
                except ParameterError as error:
                    raise ParameterError(f"recipe {side}: {error}") from None
            if "adapters" in values:
                if not isinstance(values["adapters"], list):
                    raise ParameterError(f"adapters={values['adapters']!r} must be a JSON list")
                values["adapters"] = tuple(Adapter.from_dict(a) for a in values["adapters"])
            if "params" in values:
                if not isinstance(values["params"], dict):
                    raise ParameterError(f"params={values['params']!r} must be a JSON object")
                values["params"] = SpectrogramParams(**values["params"])
            return cls(**values)
        except (KeyError, TypeError) as error:
            raise ParameterError(f"recipe is incomplete or malformed: {error}") from error

    @classmethod
    def parse(cls, recipe: Recipe | str | bytes | dict[str, Any]) -> Recipe:
        """A recipe from any form it is shared in: the one reader every app uses.

        Args:
            recipe: a :class:`Recipe` (returned as is), a share string (``riffusion:1:...``,
                see :meth:`to_url`), JSON text (:meth:`to_json`, as ``str`` or UTF-8 bytes) or
                a dict (:meth:`to_dict`). Surrounding whitespace is ignored.

        Raises:
            ParameterError: naming the form that was expected, or what is wrong inside.
        """
        if isinstance(recipe, Recipe):
            return recipe
        if isinstance(recipe, dict):
            return cls.from_dict(recipe)
        if isinstance(recipe, bytes | bytearray):
            try:
                recipe = bytes(recipe).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ParameterError(f"recipe bytes are not UTF-8 text: {error}") from None
        if not isinstance(recipe, str):
            raise ParameterError(
                f"recipe must be a Recipe, a share string, JSON text or a dict, got "
                f"{describe(recipe)}"
            )
        text = recipe.strip()
        if text.startswith("riffusion:"):
            return cls.from_url(text)
        return cls.from_json(text)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The recipe as JSON text.

        Args:
            indent: spaces per indentation level; ``None`` writes one line.
        """
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """Parse :meth:`to_json` output.

        Args:
            text: JSON text of a recipe object.
        """
        if not isinstance(text, str | bytes | bytearray):
            raise ParameterError(f"recipe must be JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except (TypeError, ValueError, RecursionError) as error:
            # ValueError: malformed JSON, or an integer of more digits than Python converts;
            # RecursionError: nesting deeper than the parser goes.
            raise ParameterError(f"recipe is not valid JSON: {error}") from error
        return cls.from_dict(data)

    def to_url(self) -> str:
        """A compact, URL-safe share string (``riffusion:1:`` + base64url of zlib'd JSON)."""
        packed = zlib.compress(self.to_json(indent=None).encode(), level=9)
        return RECIPE_URL_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")

    @classmethod
    def from_url(cls, text: str) -> Recipe:
        """Parse a :meth:`to_url` string.

        Args:
            text: a ``riffusion:1:`` string from :meth:`to_url`.
        """
        if not isinstance(text, str) or not text.startswith("riffusion:"):
            raise ParameterError(f"{str(text)[:40]!r}... is not a riffusion recipe string")
        if not text.startswith(RECIPE_URL_PREFIX):
            # The format's version is the share string's second field. Every version this
            # library wrote stays readable; a larger one comes from a newer riffusion.
            version = text.split(":", 2)[1]
            raise ParameterError(
                f"recipe format version {version[:12]!r} is not one this riffusion reads "
                f"({RECIPE_URL_PREFIX[:-1]!r}); a newer riffusion may have made it"
            )
        body = text[len(RECIPE_URL_PREFIX) :]
        try:
            packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            inflater = zlib.decompressobj()
            data = inflater.decompress(packed, _MAX_RECIPE_JSON_BYTES)
            if inflater.unconsumed_tail:
                raise ParameterError(
                    f"recipe string inflates to more than {_MAX_RECIPE_JSON_BYTES} bytes; a "
                    "recipe is a few hundred"
                )
            return cls.from_json(data.decode())
        except (ValueError, zlib.error) as error:
            if isinstance(error, RiffusionError):
                raise
            raise ParameterError(f"recipe string is corrupt: {error}") from error


# ------------------------------------------------------------------------------------- Clip
@dataclass(frozen=True, eq=False)
class Clip:
    """A generated piece of music.

    Attributes:
        audio: the sound (44.1 kHz at the default parameters).
        image: the spectrogram image it was decoded from (PIL RGB with spectrogram EXIF); for
            clips longer than one window, the joined image.
        recipe: everything needed to make it again (:meth:`Riffuser.render`).
        debug: alphas, seeds, strengths, guidance, timesteps per window, and per-stage timings
            in seconds (``timings_s``).
    """

    audio: Audio
    image: Image.Image
    recipe: Recipe
    debug: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Duration of the audio (in seconds)."""
        return self.audio.duration_s

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        save_image: bool = False,
        save_recipe: bool = False,
    ) -> Path:
        """Write the audio (format by extension: .wav, .flac, .ogg, .mp3).

        Args:
            path: audio file to write.
            save_image: also write the spectrogram as PNG beside it (same stem, ``.png``).
            save_recipe: also write the recipe as JSON beside it (same stem, ``.json``).

        Returns:
            The audio path.
        """
        path = Path(path)
        self.audio.save(path)
        if save_image:
            write_image(self.image, path.with_suffix(".png"))
        if save_recipe:
            with atomic_output(path.with_suffix(".json")) as temporary:
                temporary.write_text(self.recipe.to_json())
        return path

    def _summary(self) -> dict[str, str]:
        """The facts shown by ``repr`` and the notebook display, as label -> text."""
        recipe = self.recipe
        prompts = repr(recipe.start.prompt)
        seeds = str(recipe.start.seed)
        if recipe.end is not None:
            prompts += f" → {recipe.end.prompt!r}"
            seeds += f" → {recipe.end.seed}"
        facts = {"kind": recipe.kind, "prompt": prompts}
        if recipe.end is not None or recipe.kind == "riffuse":
            facts["alpha"] = f"{recipe.alpha:g}"
        facts["seed"] = seeds
        facts["duration_s"] = f"{self.duration_s:.2f}"
        timings = self.debug.get("timings_s", {}) if isinstance(self.debug, dict) else {}
        shown = [
            f"{key} {timings[key]:.2f}"
            for key in ("total", "generation", "audio_decode")
            if isinstance(timings.get(key), int | float)
        ]
        if shown:
            facts["timings_s"] = ", ".join(shown)
        return facts

    def _repr_html_(self) -> str:
        png = io.BytesIO()
        self.image.save(png, format="PNG")
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(text)}</td></tr>"
            for label, text in self._summary().items()
        )
        return (
            f"<div><table>{rows}</table>"
            f'<img src="data:image/png;base64,{base64.b64encode(png.getvalue()).decode()}" '
            f'style="max-width:100%;image-rendering:pixelated"><br>'
            f"{self.audio._repr_html_()}</div>"
        )

    def __repr__(self) -> str:
        facts = ", ".join(f"{label}={text}" for label, text in self._summary().items())
        return f"Clip({facts})"
