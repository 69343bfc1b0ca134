"""The web app's request and response values, and the limits every request is checked against.

The original Riffusion web app talks to its server with one call, ``POST /run_inference/``::

    {"alpha": 0.25, "num_inference_steps": 50, "seed_image_id": "og_beat",
     "mask_image_id": null,
     "start": {"prompt": "jazz", "seed": 42, "denoising": 0.75, "guidance": 7},
     "end": {"prompt": "jazz", "seed": 43, "denoising": 0.75, "guidance": 7}}

and gets back ``{"image": "data:image/jpeg;base64,...", "audio": "data:audio/mpeg;base64,...",
"duration_s": 5.11}``. This module holds those shapes as frozen dataclasses that validate
themselves, and parses untrusted JSON into them with errors that name the offending field
(``start.seed``), so a server can answer a 4xx before anything reaches the model or the disk.

It also holds :class:`PromptInput`, one end of an interpolation (the library's own value type,
exported as ``riffusion.PromptInput``), built from an
:class:`InferencePrompt` at the edge (``PromptInput(**prompt.to_dict())``).

It imports only the standard library, :mod:`riffusion.errors` and :mod:`riffusion._checks` (no
torch, no diffusers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from riffusion._checks import describe, finite_float
from riffusion.errors import ParameterError

__all__ = [
    "ASSET_ID_PATTERN",
    "MAX_BODY_BYTES",
    "MAX_NUM_INFERENCE_STEPS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_DECODED_BYTES",
    "REQUEST_NUMBER_FIELDS",
    "InferenceInput",
    "InferenceOutput",
    "InferencePrompt",
    "InputError",
    "PromptInput",
    "check_alpha",
    "check_asset_id",
    "unicode_problem",
]

MAX_NUM_INFERENCE_STEPS = 200
"""Most scheduler steps one request may ask for (the web app sends 50)."""

MAX_PROMPT_CHARS = 1000
"""Longest prompt or negative prompt (in characters) a request may carry; the model reads at
most 3 × 75 tokens, which no sensible prompt of this length exceeds."""

MAX_SEED = 2**63
"""Seeds are integers in ``[0, MAX_SEED)`` (JavaScript sends integers up to 2**53 exactly)."""

MAX_BODY_BYTES = 64 * 1024
"""Largest JSON request body (in bytes); a web app request is about 300 bytes."""

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
"""Largest uploaded audio file (in bytes) turned into a seed image."""

MAX_UPLOAD_DECODED_BYTES = 32 * 1024 * 1024
"""Most bytes an uploaded file may decode to (float32 samples of all channels: 95 s of
44.1 kHz stereo). Checked from the file's header before decoding and again while decoding, so
a small compressed file that expands to an hour of audio is refused in milliseconds."""

ASSET_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Seed image and mask ids: letters, digits, ``_`` and ``-``. Never a path: no ``/``, ``.``,
``\\``, NUL or drive letters, so an id can not name a file outside the server's own list."""


class InputError(ParameterError):
    """A request value is missing, of the wrong type or out of range.

    Attributes:
        field: dotted name of the offending field (``"start.seed"``), or ``None`` for the body.
        message: what was wrong and what was expected.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


# ----------------------------------------------------------------------------------- checks
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any, field: str, *, low: float, high: float | None = None) -> float:
    if not _is_number(value):
        raise InputError(field, f"{value!r} must be a number")
    number = finite_float(value)
    if number is None:
        raise InputError(field, f"{describe(value)} must be finite")
    if number < low or (high is not None and number > high):
        span = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise InputError(field, f"{describe(value)} must be in {span}")
    return number


def _integer(value: Any, field: str, *, low: int, high: int) -> int:
    """An integer in ``[low, high)``; integral floats (``42.0``, as JavaScript may send) pass."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"{value!r} must be an integer")
    if not low <= value < high:
        raise InputError(field, f"{describe(value)} must be an integer in [{low}, {high - 1}]")
    return value


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text (a lone UTF-16 surrogate), or ``None``.

    JSON can carry ``"\\ud800"`` and Python keeps it in a ``str``, but such a string has no
    UTF-8 form: a tokenizer or a JSON encoder fails on it deep inside. Checked at the edge.

    Args:
        text: the string to check.
    """
    if not isinstance(text, str):
        raise ParameterError(f"text must be a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds a lone UTF-16 surrogate (U+{ord(text[error.start]):04X} at index "
            f"{error.start}); send valid Unicode text"
        )
    return None


def _text(value: Any, field: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise InputError(field, f"{describe(value)} must be a string")
    if "\x00" in value:
        raise InputError(field, "must not contain NUL characters")
    problem = unicode_problem(value)
    if problem is not None:
        raise InputError(field, problem)
    if len(value) > MAX_PROMPT_CHARS:
        raise InputError(field, f"is {len(value)} characters long; at most {MAX_PROMPT_CHARS}")
    if not allow_empty and not value.strip():
        raise InputError(field, "must not be empty")
    return value


def _object(data: Any, field: str | None, required: Iterable[str], optional: Iterable[str]) -> None:
    where = field or "body"
    if not isinstance(data, Mapping):
        raise InputError(field, f"{where} must be a JSON object, got {type(data).__name__}")
    required, optional = list(required), list(optional)
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise InputError(
            f"{field}.{unknown[0]}" if field else unknown[0],
            f"unknown field; {where} takes {', '.join(required + optional)}",
        )
    for name in required:
        if name not in data:
            raise InputError(f"{field}.{name}" if field else name, "is required")


def check_asset_id(value: Any, field: str, known: Iterable[str]) -> str:
    """Check a seed image or mask id against the ids that exist.

    Args:
        value: the id from the request.
        field: field name for the error (``"seed_image_id"``).
        known: the ids the server offers.

    Returns:
        ``value``, which is one of ``known``.

    Raises:
        InputError: if ``value`` is not a string matching :data:`ASSET_ID_PATTERN` (so path-like
            values such as ``../../etc/passwd``, absolute paths and NUL bytes never get further)
            or is not one of ``known``; the message lists the ids that exist.
    """
    names = sorted(known)
    listing = ", ".join(names) if names else "none"
    if not isinstance(value, str):
        raise InputError(field, f"{value!r} must be a string id; one of {listing}")
    if not ASSET_ID_PATTERN.fullmatch(value) or value not in names:
        raise InputError(field, f"{value[:80]!r} is not a known id; one of {listing}")
    return value


# ----------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class InferencePrompt:
    """One end of a web app request (the JSON of the original ``PromptInput``).

    Attributes:
        prompt: the text prompt, 1 to :data:`MAX_PROMPT_CHARS` characters.
        seed: noise seed, an integer in [0, 2**63).
        denoising: img2img strength in [0, 1].
        guidance: classifier-free guidance scale, finite and >= 0 (JavaScript's ``7`` is fine).
        negative_prompt: what to steer away from, or ``None``.
    """

    prompt: str
    seed: int
    denoising: float = 0.75
    guidance: float = 7.0
    negative_prompt: str | None = None

    def __post_init__(self) -> None:
        self._check("")

    def _check(self, field: str) -> None:
        set_, at = object.__setattr__, f"{field}." if field else ""
        _text(self.prompt, f"{at}prompt", allow_empty=False)
        set_(self, "seed", _integer(self.seed, f"{at}seed", low=0, high=MAX_SEED))
        set_(self, "denoising", _number(self.denoising, f"{at}denoising", low=0, high=1))
        set_(self, "guidance", _number(self.guidance, f"{at}guidance", low=0, high=100))
        if self.negative_prompt is not None:
            _text(self.negative_prompt, f"{at}negative_prompt", allow_empty=True)

    @classmethod
    def from_json(cls, data: Any, field: str) -> InferencePrompt:
        """Parse the JSON object at ``field`` (``"start"`` or ``"end"``) of a request.

        Args:
            data: the decoded JSON object of one end point.
            field: its name in the request, used in error messages.
        """
        names = [f.name for f in fields(cls)]
        _object(data, field, names[:2], names[2:])
        value = cls.__new__(cls)
        for name in names:
            object.__setattr__(value, name, data.get(name, getattr(cls, name, None)))
        value._check(field)
        return value

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, with the field names of ``riffusion.PromptInput``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class InferenceInput:
    """The body of ``POST /run_inference/``.

    Attributes:
        start: the prompt at ``alpha = 0``.
        end: the prompt at ``alpha = 1``.
        alpha: interpolation weight in [0, 1].
        num_inference_steps: scheduler steps, 1 to :data:`MAX_NUM_INFERENCE_STEPS`.
        seed_image_id: id of the seed image (``"og_beat"`` by default).
        mask_image_id: id of a mask, or ``None`` for none (a missing key, ``null`` and ``""``
            all mean no mask, as the web app sends after ``?maskImageId=none``).
    """

    start: InferencePrompt
    end: InferencePrompt
    alpha: float
    num_inference_steps: int = 50
    seed_image_id: str = "og_beat"
    mask_image_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            if not isinstance(getattr(self, name), InferencePrompt):
                raise InputError(name, "must be an InferencePrompt")
        set_ = object.__setattr__
        set_(self, "alpha", _number(self.alpha, "alpha", low=0, high=1))
        steps = _integer(
            self.num_inference_steps,
            "num_inference_steps",
            low=1,
            high=MAX_NUM_INFERENCE_STEPS + 1,
        )
        set_(self, "num_inference_steps", steps)
        if not isinstance(self.seed_image_id, str):
            raise InputError("seed_image_id", f"{self.seed_image_id!r} must be a string id")
        if self.mask_image_id == "":
            set_(self, "mask_image_id", None)
        if self.mask_image_id is not None and not isinstance(self.mask_image_id, str):
            raise InputError("mask_image_id", f"{self.mask_image_id!r} must be a string or null")

    @classmethod
    def from_json(cls, data: Any) -> InferenceInput:
        """Parse a decoded JSON body.

        Args:
            data: the decoded JSON body (a dict, from ``json.loads``).

        Raises:
            InputError: naming the first bad field.
        """
        _object(
            data,
            None,
            ("alpha", "start", "end"),
            ("num_inference_steps", "seed_image_id", "mask_image_id"),
        )
        return cls(
            start=InferencePrompt.from_json(data["start"], "start"),
            end=InferencePrompt.from_json(data["end"], "end"),
            alpha=data["alpha"],
            num_inference_steps=data.get("num_inference_steps", 50),
            seed_image_id=data.get("seed_image_id", "og_beat"),
            mask_image_id=data.get("mask_image_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the web app sends."""
        return {
            "alpha": self.alpha,
            "num_inference_steps": self.num_inference_steps,
            "seed_image_id": self.seed_image_id,
            "mask_image_id": self.mask_image_id,
            "start": self.start.to_dict(),
            "end": self.end.to_dict(),
        }


@dataclass(frozen=True)
class InferenceOutput:
    """The answer of ``POST /run_inference/``.

    Attributes:
        image: the spectrogram, ``"data:image/jpeg;base64,..."``.
        audio: the clip, ``"data:audio/mpeg;base64,..."`` (MP3).
        duration_s: length of the audio (in seconds).
    """

    image: str
    audio: str
    duration_s: float

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.startswith("data:image/jpeg;base64,"):
            raise InputError("image", "must be a data:image/jpeg;base64 URL")
        if not isinstance(self.audio, str) or not self.audio.startswith("data:audio/mpeg;base64,"):
            raise InputError("audio", "must be a data:audio/mpeg;base64 URL")
        object.__setattr__(self, "duration_s", _number(self.duration_s, "duration_s", low=0))

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"image": self.image, "audio": self.audio, "duration_s": self.duration_s}


def _number_fields(cls: type, prefix: str = "") -> list[str]:
    return [f"{prefix}{f.name}" for f in fields(cls) if f.type in ("int", "float", int, float)]


REQUEST_NUMBER_FIELDS: tuple[str, ...] = (
    *_number_fields(InferenceInput),
    *_number_fields(InferencePrompt, "start."),
    *_number_fields(InferencePrompt, "end."),
)
"""The numeric fields of a ``POST /run_inference/`` body, dotted into the end points
(``"alpha"``, ``"num_inference_steps"``, ``"start.seed"``, …): what a server must bound."""


# ------------------------------------------------------------------- interpolation end point
def check_alpha(alpha: Any, *, name: str = "alpha") -> float:
    """Validate an interpolation weight and return it as a float.

    Args:
        alpha: A real number in [0, 1].
        name: Argument name used in the error message.

    Raises:
        ParameterError: If ``alpha`` is not a finite real number in [0, 1].
    """
    number = finite_float(alpha)
    if number is None or not 0.0 <= number <= 1.0:
        raise ParameterError(f"{name}={describe(alpha)} must be a real number in [0, 1]")
    return number


_REQUIRED: Any = object()


@dataclass(frozen=True, init=False)
class PromptInput:
    """One end of an interpolation, with riffusion's JSON field names and defaults.

    Attributes:
        prompt: The text prompt (may contain ``(word:1.3)`` style weights).
        seed: Seed of the starting noise, an int in [0, 2**63).
        negative_prompt: What to steer away from; ``None`` means the empty prompt.
        denoising: img2img strength in [0, 1]: 0 keeps the seed image (no denoising steps), 1
            regenerates it entirely. Ignored for text-to-image (no seed image).
        guidance: Classifier-free guidance scale, finite and >= 0 (<= 1: no guidance, the
            prompt's prediction alone and the negative prompt unused, as diffusers).
    """

    prompt: str
    seed: int = 0
    negative_prompt: str | None = None
    denoising: float = 0.75
    guidance: float = 7.0

    def __init__(
        self,
        prompt: str = _REQUIRED,
        seed: int = 0,
        negative_prompt: str | None = None,
        denoising: float = 0.75,
        guidance: float = 7.0,
        **unknown: Any,
    ) -> None:
        # Written out (not the dataclass's) so that a missing prompt or an unknown field is a
        # ParameterError naming it, like every other bad value, not a TypeError.
        if unknown:
            known = [f.name for f in fields(PromptInput)]
            raise ParameterError(
                f"PromptInput has no field(s) {sorted(unknown)}; expected a subset of {known}"
            )
        if prompt is _REQUIRED:
            raise ParameterError("PromptInput needs a prompt (the text to play)")
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "negative_prompt", negative_prompt)
        object.__setattr__(self, "denoising", denoising)
        object.__setattr__(self, "guidance", guidance)
        self.__post_init__()

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise ParameterError(f"prompt={describe(self.prompt)} must be a str")
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ParameterError(
                f"negative_prompt={describe(self.negative_prompt)} must be a str or None"
            )
        for name in ("prompt", "negative_prompt"):
            text = getattr(self, name)
            problem = None if text is None else unicode_problem(text)
            if problem is not None:
                raise ParameterError(f"{name}={describe(text)} {problem}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < MAX_SEED
        ):
            raise ParameterError(f"seed={describe(self.seed)} must be an int in [0, 2**63)")
        object.__setattr__(self, "denoising", check_alpha(self.denoising, name="denoising"))
        guidance = finite_float(self.guidance)
        if guidance is None or guidance < 0:
            raise ParameterError(f"guidance={describe(self.guidance)} must be a finite number >= 0")
        object.__setattr__(self, "guidance", guidance)

    def to_dict(self) -> dict[str, Any]:
        """Return the riffusion JSON object: ``prompt``, ``seed``, ``negative_prompt``,
        ``denoising``, ``guidance``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptInput:
        """Build from the riffusion JSON object (missing optional keys take their defaults).

        Args:
            data: a mapping with ``prompt`` (required) and any of ``seed``, ``negative_prompt``,
                ``denoising``, ``guidance``.

        Raises:
            ParameterError: If ``data`` is not a mapping, has unknown keys, lacks ``prompt``, or
                a value is invalid.
        """
        if not isinstance(data, Mapping):
            raise ParameterError(f"data={data!r} must be a mapping (a JSON object)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(
                f"data has unknown keys {unknown}; expected a subset of {sorted(known)}"
            )
        if "prompt" not in data:
            raise ParameterError(f"data={dict(data)!r} lacks the required key 'prompt'")
        return cls(**data)
