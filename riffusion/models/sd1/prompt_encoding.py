"""Prompts to CLIP text embeddings: textual-inversion tokens, weights, long-prompt chunks.

The syntax and the chunking are :mod:`riffusion.models.sd1.prompt_weighting`'s; this module puts
a pipeline's tokenizer, text encoder and textual-inversion tokens together and gives a prompt and
its negative prompt the same sequence length, as classifier-free guidance batches them (a run
without guidance encodes the prompt alone, :func:`encode_conditional`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from riffusion.models.sd1.prompt_weighting import (
    WeightedTokens,
    encode_chunks,
    pad_chunks,
    tokenize_weighted,
)

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

__all__ = [
    "encode_conditional",
    "encode_padded",
    "encode_prompt",
    "expand_tokens",
    "tokenize_prompt",
]


def expand_tokens(prompt: str, expansions: Mapping[str, str]) -> str:
    """Replace each textual-inversion token by the tokens its embedding was stored as.

    Args:
        prompt: The prompt text.
        expansions: ``token -> "token token_1 ..."`` of the loaded textual inversions (a
            single-vector embedding maps to itself).

    Returns:
        The prompt with every multi-vector token expanded, in loading order.
    """
    for token, expansion in expansions.items():
        prompt = prompt.replace(token, expansion) if expansion != token else prompt
    return prompt


def tokenize_prompt(
    tokenizer: CLIPTokenizer, prompt: str, expansions: Mapping[str, str] | None = None
) -> WeightedTokens:
    """Tokenize a weighted prompt after expanding its textual-inversion tokens.

    Args:
        tokenizer: The pipeline's CLIP tokenizer (77 positions).
        prompt: The prompt; up to 3 x 75 tokens, ``(word:1.3)`` weights allowed.
        expansions: Textual-inversion tokens, see :func:`expand_tokens`; ``None`` for none.

    Returns:
        The chunked int64 ids and float32 weights, each ``(num_chunks, 77)``.

    Raises:
        ParameterError: If the prompt is not a str or is too long.
    """
    if expansions and isinstance(prompt, str):
        prompt = expand_tokens(prompt, expansions)
    return tokenize_weighted(tokenizer, prompt)


def encode_prompt(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompt: str,
    negative_prompt: str | None = None,
    *,
    device: torch.device,
    expansions: Mapping[str, str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode a (weighted) prompt and its negative prompt.

    Args:
        tokenizer: The pipeline's CLIP tokenizer.
        text_encoder: The pipeline's ``CLIPTextModel``.
        prompt: The prompt; up to 3 x 75 tokens.
        negative_prompt: ``None`` means the empty prompt. Padded with empty chunks or
            truncated to the prompt's number of 77-token chunks.
        device: The text encoder's execution device.
        expansions: Textual-inversion tokens, see :func:`expand_tokens`.

    Returns:
        ``(cond, uncond)``, each ``(1, num_chunks * 77, hidden)`` in the text encoder's dtype on
        ``device``.

    Raises:
        ParameterError: If a prompt is not a str or is too long.
    """
    tokens = tokenize_prompt(tokenizer, prompt, expansions)
    negative = pad_chunks(
        tokenize_prompt(tokenizer, negative_prompt or "", expansions),
        tokens.num_chunks,
        tokenizer=tokenizer,
    )
    cond = encode_chunks(text_encoder, tokens, device=device)
    return cond, encode_chunks(text_encoder, negative, device=device)


def encode_conditional(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompt: str,
    *,
    device: torch.device,
    expansions: Mapping[str, str] | None = None,
) -> torch.Tensor:
    """Encode a (weighted) prompt alone, without a negative prompt.

    What a run without classifier-free guidance (guidance <= 1) needs: bitwise the ``cond`` of
    :func:`encode_prompt`, at half its text-encoder work.

    Args:
        tokenizer: The pipeline's CLIP tokenizer.
        text_encoder: The pipeline's ``CLIPTextModel``.
        prompt: The prompt; up to 3 x 75 tokens.
        device: The text encoder's execution device.
        expansions: Textual-inversion tokens, see :func:`expand_tokens`.

    Returns:
        ``(1, num_chunks * 77, hidden)`` in the text encoder's dtype on ``device``.

    Raises:
        ParameterError: If the prompt is not a str or is too long.
    """
    tokens = tokenize_prompt(tokenizer, prompt, expansions)
    return encode_chunks(text_encoder, tokens, device=device)


def encode_padded(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    tokens: Sequence[WeightedTokens],
    num_chunks: int,
    *,
    device: torch.device,
) -> list[torch.Tensor]:
    """Encode tokenized prompts padded (or truncated) to one common number of chunks.

    Embeddings that are mixed element-wise (the two ends of an interpolation) or batched (a
    prompt and its negative prompt) must have the same sequence length.

    Args:
        tokenizer: The tokenizer that made ``tokens`` (its pad and special token ids).
        text_encoder: The pipeline's ``CLIPTextModel``.
        tokens: Outputs of :func:`tokenize_prompt`, encoded in this order.
        num_chunks: The common number of 77-token chunks, >= 1.
        device: The text encoder's execution device.

    Returns:
        One ``(1, num_chunks * 77, hidden)`` tensor per entry of ``tokens``, in order.
    """
    return [
        encode_chunks(text_encoder, pad_chunks(t, num_chunks, tokenizer=tokenizer), device=device)
        for t in tokens
    ]
