"""The riffusion exception family.

Every error the library raises on purpose derives from :class:`RiffusionError`, so callers can
catch one type. Errors about a bad *value* also derive from :class:`ValueError`, so code written
against the standard library's conventions keeps working.

Messages name the offending argument, echo its value and say what was expected, e.g.
``hop_length=0 must be a positive integer``.
"""

from __future__ import annotations

__all__ = [
    "AudioFileError",
    "DeviceError",
    "GenerationCancelled",
    "ImageFormatError",
    "ModelLoadError",
    "ParameterError",
    "RiffusionError",
    "install_hint",
]


class RiffusionError(Exception):
    """Base class of every error raised by riffusion."""


class ParameterError(RiffusionError, ValueError):
    """An argument has an invalid value (out of range, wrong shape, wrong type, NaN, ...)."""


class AudioFileError(RiffusionError, ValueError):
    """An audio file is missing, unreadable, corrupt, empty or in an unsupported format."""


class ImageFormatError(RiffusionError, ValueError):
    """A spectrogram image is missing, unreadable, of unusable size, or has impossible EXIF."""


class ModelLoadError(RiffusionError):
    """A diffusion checkpoint could not be found or loaded (offline, missing files, bad config)."""


class DeviceError(RiffusionError, ValueError):
    """A requested compute device (``cuda``, ``mps``, ...) or dtype is not available."""


class GenerationCancelled(RiffusionError):
    """A generation was stopped on request (a step or progress callback asked to cancel).

    Raised between two denoising steps, so no partial result is returned and the pipeline is
    ready for the next call.
    """


def install_hint(extra: str) -> str:
    """The command that installs an optional extra, for error messages.

    From the clone: ``pip install "riffusion[...]"`` would fetch PyPI's ``riffusion``, an
    unrelated 2022 project.

    Args:
        extra: the extra's name in ``pyproject.toml`` (``"server"``, ``"train"``, ``"ray"``).
    """
    return f'pip install -e ".[{extra}]" in your riffusion clone'
