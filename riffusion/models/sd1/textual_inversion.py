"""Textual-inversion embeddings: new prompt tokens whose text embeddings were learned.

Reads the two formats in circulation: diffusers' (``learned_embeds.bin`` / ``.safetensors``
holding ``{token: tensor(dim)}``) and Automatic1111's (``{"string_to_param": {"*":
tensor(n, dim)}, "name": ...}``). A file with ``n`` vectors adds ``n`` tokens (``token``,
``token_1`` … ``token_{n-1}``); prompts mentioning ``token`` get all of them, as in diffusers.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, TypeVar

import torch

from riffusion.errors import ModelLoadError, ParameterError

__all__ = ["TextualInversionMixin", "add_embeddings", "embedding_file", "read_embeddings"]


def embedding_file(path: str | os.PathLike[str]) -> pathlib.Path:
    """The embedding file a textual-inversion ``path`` names: the file itself, or a folder's
    ``learned_embeds.safetensors`` (else ``learned_embeds.bin``).

    Args:
        path: an embedding file or a folder holding ``learned_embeds.*``.

    Raises:
        ParameterError: ``path`` is not a path. ModelLoadError: no such file.
    """
    if not isinstance(path, str | os.PathLike):
        raise ParameterError(f"path={path!r} must be a file path (str or os.PathLike)")
    file = pathlib.Path(path).expanduser()
    if file.is_dir():
        found = [file / n for n in ("learned_embeds.safetensors", "learned_embeds.bin")]
        found = [candidate for candidate in found if candidate.is_file()]
        if not found:
            raise ModelLoadError(
                f"path={os.fspath(path)!r} is a folder without learned_embeds.safetensors or "
                "learned_embeds.bin"
            )
        file = found[0]
    if not file.is_file():
        raise ModelLoadError(f"path={os.fspath(path)!r} is not an existing embedding file")
    return file


def read_embeddings(
    path: str | os.PathLike[str], token: str | None = None
) -> tuple[str, torch.Tensor]:
    """Read a textual-inversion file.

    Args:
        path: a ``.safetensors``, ``.bin`` or ``.pt`` file (or a folder holding
            ``learned_embeds.safetensors`` / ``learned_embeds.bin``).
        token: the prompt token to bind; default the token stored in the file (diffusers'
            format) or its ``name`` (Automatic1111's).

    Returns:
        ``(token, embeddings)``, embeddings ``(n, dim)`` float32 on the CPU.

    Raises:
        ModelLoadError: missing or unreadable file, or a layout that is neither format.
        ParameterError: no token given and none stored, or a token that is not a string.
    """
    file = embedding_file(path)
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: dict[str, Any] = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read embeddings from {file}: {exc}") from None
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ParameterError(f"token={token!r} must be a non-empty string such as '<my-style>'")

    if isinstance(state, dict) and "string_to_param" in state:  # Automatic1111
        params = state["string_to_param"]
        tensor = next(iter(params.values())) if isinstance(params, dict) and params else None
        stored = state.get("name")
    elif isinstance(state, dict) and len(state) == 1:  # diffusers: {token: tensor}
        stored, tensor = next(iter(state.items()))
    else:
        keys = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise ModelLoadError(
            f"{file} holds {keys}, not a textual-inversion embedding ({{token: tensor}} or "
            "Automatic1111's string_to_param)"
        )
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or tensor.numel() == 0:
        raise ModelLoadError(f"{file}: the embedding is not a (dim,) or (n, dim) tensor")
    name = token or stored
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"{file} stores no token name; pass token='<my-style>'")
    return name.strip(), tensor.detach().float().reshape(-1, tensor.shape[-1]).clone()


def add_embeddings(tokenizer: Any, text_encoder: Any, token: str, vectors: torch.Tensor) -> str:
    """Add ``token`` (and ``token_1`` … for more vectors) to the tokenizer and text encoder.

    Returns:
        What ``token`` expands to in prompts (``"token token_1 …"``, or ``token`` itself).

    Raises:
        ParameterError: the token exists already, or the width does not fit the encoder.
    """
    embeddings = text_encoder.get_input_embeddings()
    width = embeddings.weight.shape[1]
    if vectors.shape[1] != width:
        raise ParameterError(
            f"the embedding for {token!r} is {vectors.shape[1]} wide; this text encoder needs "
            f"{width} (a Stable Diffusion 1.x embedding is 768 wide)"
        )
    names = [token] + [f"{token}_{index}" for index in range(1, vectors.shape[0])]
    vocab = tokenizer.get_vocab()
    taken = [name for name in names if name in vocab]
    if taken:
        raise ParameterError(
            f"token={taken[0]!r} is already in the tokenizer's vocabulary; pass another token="
        )
    tokenizer.add_tokens(names)
    ids = tokenizer.convert_tokens_to_ids(names)
    text_encoder.resize_token_embeddings(len(tokenizer))
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[ids] = vectors.to(device=weight.device, dtype=weight.dtype)
    return " ".join(names)


_Pipeline = TypeVar("_Pipeline", bound="TextualInversionMixin")


class TextualInversionMixin:
    """The textual-inversion methods of :class:`~riffusion.models.sd1.pipeline.RiffusionPipeline`,
    as diffusers' ``TextualInversionLoaderMixin``: new tokens in ``tokenizer`` and
    ``text_encoder``; ``_token_expansions`` maps each to the tokens prompts expand it to."""

    tokenizer: Any
    text_encoder: Any
    _token_expansions: dict[str, str]
    _textual_inversions: list[tuple[str, str]]

    @property
    def textual_inversions(self) -> tuple[tuple[str, str], ...]:
        """``(embedding file, token)`` of every textual inversion loaded, in loading order
        (absolute paths, also when a folder was given)."""
        return tuple(self._textual_inversions)

    def load_textual_inversion(
        self: _Pipeline, path: str | os.PathLike[str], token: str | None = None
    ) -> _Pipeline:
        """Add a textual-inversion embedding as a new prompt token, as diffusers does.

        Reads diffusers' ``{token: tensor}`` files and Automatic1111's ``string_to_param``
        files (``.safetensors``, ``.bin``, ``.pt``); see
        :mod:`riffusion.models.sd1.textual_inversion`.

        Args:
            path: the embedding file (or a folder holding ``learned_embeds.*``).
            token: the token to use in prompts (default: the one stored in the file).

        Returns:
            ``self``.

        Raises:
            ModelLoadError: unreadable file. ParameterError: token taken, wrong width.
        """
        name, vectors = read_embeddings(path, token)
        self._token_expansions[name] = add_embeddings(
            self.tokenizer, self.text_encoder, name, vectors
        )
        self._textual_inversions.append((os.path.abspath(embedding_file(path)), name))
        return self
