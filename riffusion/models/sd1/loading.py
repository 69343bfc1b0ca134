"""Loading a Stable Diffusion 1.x checkpoint in diffusers format, component by component.

Only the five components generation needs are read: ``unet``, ``vae``, ``text_encoder``,
``tokenizer`` and ``scheduler``. The checkpoint's ``model_index.json`` may list a
``safety_checker`` and a ``feature_extractor`` (riffusion-model-v1 does, 1.2 GB); they are never
downloaded nor required, so a folder where they are listed but absent loads fine.

A hub id is first fetched with ``huggingface_hub.snapshot_download`` restricted to those
components' files (safetensors preferred, PyTorch ``.bin`` only for components that have no
safetensors), then everything is loaded from the local snapshot folder with
``local_files_only=True`` so no loader can reach the network on its own.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass
from typing import Any, cast

import diffusers
import torch
from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from riffusion.errors import ModelLoadError

__all__ = [
    "COMPONENTS",
    "SINGLE_FILE_SUFFIXES",
    "ModelComponents",
    "load_components",
    "load_single_file",
    "resolve_model_folder",
]

#: File name endings of single-file (original Stable Diffusion layout) checkpoints.
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth")

#: The checkpoint riffusion was trained as (a Stable Diffusion 1.5 fine-tune on spectrograms).
#: The sub-folders a checkpoint must provide.
COMPONENTS: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

_CONFIG_PATTERNS = [
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/scheduler_config.json",
    "tokenizer/*",
]
# (folder, weights basename stem): diffusers models use diffusion_pytorch_model, transformers
# models use model (safetensors) / pytorch_model (bin).
_WEIGHTS = {
    "unet": ("diffusion_pytorch_model", "diffusion_pytorch_model"),
    "vae": ("diffusion_pytorch_model", "diffusion_pytorch_model"),
    "text_encoder": ("model", "pytorch_model"),
}


def _weight_patterns(folder: str, stem: str, ext: str) -> list[str]:
    # The plain file, plus the shards and their index; variants such as ".fp16" or ".non_ema"
    # are deliberately not matched (they would double the download).
    return [
        f"{folder}/{stem}.{ext}",
        f"{folder}/{stem}-*-of-*.{ext}",
        f"{folder}/{stem}.{ext}.index.json",
    ]


def _has_weights(folder: pathlib.Path, stem: str, ext: str) -> bool:
    return (folder / f"{stem}.{ext}").is_file() or (folder / f"{stem}.{ext}.index.json").is_file()


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else (absolute, relative with ./ or ../, ~,
    # backslashes, several slashes) or an existing path is a folder.
    return (
        os.path.exists(model)
        or os.path.isabs(model)
        or model.startswith((".", "~"))
        or "\\" in model
        or model.count("/") > 1
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


_CONFIG_FILES = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
    "tokenizer": "vocab.json",
}


def _weight_file_names(
    folder: str, *, variant: str | None, use_safetensors: bool | None
) -> list[str]:
    """Weight files (relative names) any of which satisfies ``folder``'s component."""
    stems = _WEIGHTS[folder]
    suffix = f".{variant}" if variant else ""
    names = []
    if use_safetensors is not False:
        names += [f"{stems[0]}{suffix}.safetensors", f"{stems[0]}{suffix}.safetensors.index.json"]
    if use_safetensors is not True:
        names += [f"{stems[1]}{suffix}.bin", f"{stems[1]}{suffix}.bin.index.json"]
    return names


def _check_files(
    folder: pathlib.Path, model: str, *, variant: str | None, use_safetensors: bool | None
) -> None:
    """Name the first file a complete checkpoint needs and ``folder`` lacks."""
    for name, config in _CONFIG_FILES.items():
        if not (folder / name / config).is_file():
            raise ModelLoadError(
                f"model={model!r} ({folder}) is incomplete: {name}/{config} is missing"
            )
    for name in _WEIGHTS:
        wanted = _weight_file_names(name, variant=variant, use_safetensors=use_safetensors)
        if not any((folder / name / file).is_file() for file in wanted):
            what = " or ".join(f"{name}/{file}" for file in wanted if not file.endswith(".json"))
            hint = ""
            if variant:
                hint = f" (variant={variant!r}; omit it to load the plain weights)"
            elif use_safetensors:
                hint = " (use_safetensors=True; pass None to accept .bin weights)"
            raise ModelLoadError(
                f"model={model!r} ({folder}) is incomplete: {what} is missing{hint}"
            )


def _check_folder(folder: pathlib.Path, model: str) -> None:
    if folder.is_file() and folder.suffix in SINGLE_FILE_SUFFIXES:
        raise ModelLoadError(
            f"model={model!r} is a single-file checkpoint, not a diffusers folder; load it with "
            "RiffusionPipeline.from_single_file(path) or Riffuser.from_single_file(path)"
        )
    if not folder.is_dir():
        raise ModelLoadError(
            f"model={model!r} is not an existing folder; pass a folder in diffusers format "
            f"(with {', '.join(COMPONENTS)} sub-folders) or a Hugging Face hub id"
        )
    missing = [name for name in COMPONENTS if not (folder / name).is_dir()]
    if missing:
        raise ModelLoadError(
            f"model={model!r} ({folder}) lacks the sub-folder(s) {missing}; a Stable Diffusion "
            f"checkpoint in diffusers format needs {list(COMPONENTS)}"
        )


def _download(model: str, *, patterns: list[str], local_files_only: bool, cache_dir, revision):
    # Imported here so tests can monkeypatch the module attribute and so that importing the
    # pipeline does not import the hub client eagerly.
    import huggingface_hub
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"cache_dir={str(cache_dir)!r}" if cache_dir is not None else "the Hugging Face cache"
    try:
        return huggingface_hub.snapshot_download(
            model,
            allow_patterns=patterns,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            revision=revision,
        )
    except LocalEntryNotFoundError:
        if local_files_only:
            how = "local_files_only=True forbids downloading it"
        elif huggingface_hub.constants.HF_HUB_OFFLINE:
            how = "HF_HUB_OFFLINE=1 forbids downloading it"
        else:
            how = "the Hugging Face hub could not be reached"
        raise ModelLoadError(
            f"model={model!r} is not in {where} and {how}; download it once while online "
            "(local_files_only=False), or pass model= a local folder in diffusers format; to "
            "try things offline, riffusion.testing.make_tiny_model('tiny-model') builds a "
            "small random one"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise ModelLoadError(
            f"model={model!r} was not found on the Hugging Face hub (or is private/gated and no "
            "valid token was given); check the id, or pass model= a local folder in diffusers "
            "format"
        ) from None
    except RevisionNotFoundError:
        raise ModelLoadError(
            f"revision={revision!r} does not exist for model={model!r} on the Hugging Face hub"
        ) from None
    except Exception as exc:  # any download failure becomes one clear line
        raise ModelLoadError(
            f"could not fetch model={model!r} from the Hugging Face hub ({_one_line(exc)}); "
            "check the connection or local_files_only, or pass model= a local folder in "
            "diffusers format"
        ) from None


def resolve_model_folder(
    model: str | os.PathLike[str],
    *,
    local_files_only: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    variant: str | None = None,
    use_safetensors: bool | None = None,
) -> pathlib.Path:
    """Return a local folder holding the checkpoint, downloading only the needed files.

    Args:
        model: A local folder in diffusers format, or a hub id such as
            ``"riffusion/riffusion-model-v1"``.
        local_files_only: Never touch the network; use the Hugging Face cache only.
        cache_dir: Hugging Face cache folder (default: the hub's default, ``HF_HOME``).
        revision: Hub branch, tag or commit (default: ``main``).
        variant: weights variant, as in diffusers (``"fp16"`` reads
            ``diffusion_pytorch_model.fp16.safetensors``); ``None``: the plain files.
        use_safetensors: ``True``: safetensors weights only; ``False``: PyTorch ``.bin`` only;
            ``None`` (default): safetensors where present, else ``.bin``.

    Returns:
        The folder, with the five component sub-folders.

    Raises:
        ModelLoadError: One line saying what is missing: a folder that does not exist or lacks a
            component, a model neither cached nor downloadable (offline or
            ``local_files_only=True``), an unknown repository or revision.
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise ModelLoadError(f"model={model!r} must be a non-empty hub id or folder path")
    if variant is not None and (not isinstance(variant, str) or not variant.isidentifier()):
        raise ModelLoadError(f"variant={variant!r} must be None or a name such as 'fp16'")
    if use_safetensors not in (None, True, False):
        raise ModelLoadError(f"use_safetensors={use_safetensors!r} must be None, True or False")
    name = os.fspath(model)
    files: dict[str, Any] = {"variant": variant, "use_safetensors": use_safetensors}
    if isinstance(model, os.PathLike) or _looks_like_path(name):
        folder = pathlib.Path(name).expanduser()
        _check_folder(folder, name)
        _check_files(folder, name, **files)
        return folder

    common: dict[str, Any] = {
        "local_files_only": local_files_only,
        "cache_dir": cache_dir,
        "revision": revision,
    }
    suffix = f".{variant}" if variant else ""
    patterns = list(_CONFIG_PATTERNS)
    if use_safetensors is not False:
        for folder_name, (stem, _) in _WEIGHTS.items():
            patterns += _weight_patterns(folder_name, stem + suffix, "safetensors")
        folder = pathlib.Path(_download(name, patterns=patterns, **common))
    else:
        folder = pathlib.Path(_download(name, patterns=patterns, **common))

    # Older checkpoints (riffusion-model-v1 among them, in some revisions) only ship .bin weights.
    fallback: list[str] = []
    if use_safetensors is not True:
        for folder_name, (st_stem, bin_stem) in _WEIGHTS.items():
            if use_safetensors is False or not _has_weights(
                folder / folder_name, st_stem + suffix, "safetensors"
            ):
                fallback += _weight_patterns(folder_name, bin_stem + suffix, "bin")
    if fallback:
        folder = pathlib.Path(_download(name, patterns=patterns + fallback, **common))
    _check_folder(folder, name)
    _check_files(folder, name, **files)
    return folder


@dataclass(frozen=True)
class ModelComponents:
    """The five loaded components of a checkpoint (on the CPU, in the requested dtype)."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: SchedulerMixin


def _load_scheduler(folder: pathlib.Path, model: str) -> SchedulerMixin:
    config_path = folder / "scheduler" / "scheduler_config.json"
    try:
        config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model={model!r}: cannot read {config_path} ({_one_line(exc)})"
        ) from exc
    class_name = config.get("_class_name", "PNDMScheduler")
    cls = getattr(diffusers, str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ModelLoadError(
            f"model={model!r}: scheduler _class_name={class_name!r} is not a diffusers scheduler"
        )
    try:
        return cast(Any, cls).from_config(config)
    except Exception as exc:  # e.g. LMS without scipy, bad config values
        raise ModelLoadError(
            f"model={model!r}: cannot build scheduler {class_name} ({_one_line(exc)})"
        ) from exc


def load_components(
    folder: pathlib.Path,
    *,
    model: str,
    dtype: torch.dtype = torch.float32,
    variant: str | None = None,
    use_safetensors: bool | None = None,
) -> ModelComponents:
    """Load the five components from a local diffusers-format folder.

    Args:
        folder: Output of :func:`resolve_model_folder`.
        model: The name the user gave, for error messages.
        dtype: Floating-point dtype of the model weights.
        variant: weights variant (``"fp16"``), as in diffusers.
        use_safetensors: as in diffusers (``None``: safetensors where present).

    Returns:
        The components, on the CPU.

    Raises:
        ModelLoadError: If a component cannot be read, or the components do not fit together
            (latent channels, cross-attention width), or the UNet is not a 4-channel SD 1.x UNet.
    """
    files: dict[str, Any] = {"variant": variant, "use_safetensors": use_safetensors}
    loaders = {
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", torch_dtype=dtype, local_files_only=True, **files
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(
            folder, subfolder="vae", torch_dtype=dtype, local_files_only=True, **files
        ),
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            folder, subfolder="text_encoder", dtype=dtype, local_files_only=True, **files
        ),
        "tokenizer": lambda: CLIPTokenizer.from_pretrained(
            folder, subfolder="tokenizer", local_files_only=True
        ),
    }
    loaded: dict[str, Any] = {}
    for name, load in loaders.items():
        try:
            loaded[name] = load()
        except Exception as exc:  # report which component failed, chained
            raise ModelLoadError(
                f"model={model!r}: cannot load the {name} from {folder / name} ({_one_line(exc)})"
            ) from exc
    loaded["scheduler"] = _load_scheduler(folder, model)

    unet, vae, text_encoder = loaded["unet"], loaded["vae"], loaded["text_encoder"]
    if unet.config.in_channels != vae.config.latent_channels:
        raise ModelLoadError(
            f"model={model!r}: unet.in_channels={unet.config.in_channels} does not match "
            f"vae.latent_channels={vae.config.latent_channels}; only plain (non-inpainting) "
            "Stable Diffusion 1.x checkpoints are supported"
        )
    if unet.config.cross_attention_dim != text_encoder.config.hidden_size:
        raise ModelLoadError(
            f"model={model!r}: unet.cross_attention_dim={unet.config.cross_attention_dim} does "
            f"not match text_encoder.hidden_size={text_encoder.config.hidden_size}"
        )
    for module in (unet, vae, text_encoder):
        module.eval()
        module.requires_grad_(False)
    return ModelComponents(**loaded)


def load_single_file(
    path: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> ModelComponents:
    """Load a single-file Stable Diffusion 1.x checkpoint (``.ckpt`` / ``.safetensors``).

    Uses diffusers' ``StableDiffusionPipeline.from_single_file``, which converts the original
    (CompVis) key layout to diffusers'. The file holds weights only: the component configs
    come from ``config``, a diffusers-format folder or hub id of the same architecture (for
    Riffusion, ``"riffusion/riffusion-model-v1"`` or any SD 1.5 repo); without it diffusers
    fetches the configs of the architecture it detects from the hub, which needs the network
    once.

    Args:
        path: the checkpoint file.
        config: diffusers-format folder or hub id whose configs fit the checkpoint.
        dtype: weights dtype.
        local_files_only: never touch the network (then a local ``config`` folder or a cached
            hub id is needed).

    Returns:
        The components, on the CPU.

    Raises:
        ModelLoadError: missing file, not a Stable Diffusion checkpoint, or configs not
            available (offline without ``config``), in one line.
    """
    if not isinstance(path, str | os.PathLike) or not str(path).strip():
        raise ModelLoadError(f"path={path!r} must be the path of a .ckpt or .safetensors file")
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise ModelLoadError(f"path={os.fspath(path)!r} is not an existing checkpoint file")
    if file.suffix not in SINGLE_FILE_SUFFIXES:
        raise ModelLoadError(
            f"path={os.fspath(path)!r} must end with one of {list(SINGLE_FILE_SUFFIXES)}"
        )
    options: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": local_files_only}
    if config is not None:
        config_path = pathlib.Path(os.fspath(config)).expanduser()
        options["config"] = str(config_path) if config_path.is_dir() else os.fspath(config)
    try:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_single_file(
            str(file),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            **options,
        )
    except Exception as exc:  # conversion or config errors: one line, no network traceback
        how = (
            ""
            if config is not None
            else (
                "; pass config= a diffusers-format folder (or cached hub id) of the same "
                "architecture, e.g. config='riffusion/riffusion-model-v1'"
            )
        )
        raise ModelLoadError(
            f"cannot load the single-file checkpoint {os.fspath(path)!r} ({_one_line(exc)}){how}"
        ) from None
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval()
        module.requires_grad_(False)
    return ModelComponents(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
    )
