"""Prompt weighting and long prompts for CLIP text encoders.

Syntax (the de-facto standard of Stable Diffusion front-ends):

* ``(words:1.3)`` multiplies the attention paid to ``words`` by 1.3;
* ``(words)`` multiplies it by 1.1 and ``[words]`` divides it by 1.1;
* nesting multiplies: ``((words))`` is 1.21, ``[(words)]`` is 1.0;
* ``\\(``, ``\\)``, ``\\[``, ``\\]`` and ``\\\\`` are literal characters;
* a closing bracket without an opening one is literal text; a bracket left open applies its
  factor up to the end of the prompt (so ``smiley :)`` and typos do not fail).

The weights scale each token's output embedding of the text encoder; the embeddings are then
rescaled so that their overall mean is the unweighted one (weights change *relative* emphasis,
not the global scale the UNet was trained on).

CLIP sees 77 positions (begin token, 75 tokens, end token). Longer prompts, up to 3 x 75 tokens,
are split into 75-token chunks, each wrapped in begin/end tokens and encoded on its own; the
chunk embeddings are concatenated along the sequence axis (the UNet's cross-attention accepts any
sequence length).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from riffusion.errors import ParameterError

if TYPE_CHECKING:
    from transformers import CLIPTextModel, CLIPTokenizer

__all__ = [
    "MAX_CHUNKS",
    "WeightedTokens",
    "encode_chunks",
    "pad_chunks",
    "parse_prompt_weights",
    "tokenize_weighted",
    "weighted_embeddings",
]

#: The most 77-token chunks a prompt may span.
MAX_CHUNKS = 3
_UP = 1.1
_EXPLICIT_WEIGHT = re.compile(r"^(.*):\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$", re.DOTALL)
_ESCAPABLE = "()[]\\"


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` segments.

    Args:
        text: The prompt, e.g. ``"a (calm:1.3) piano [with drums]"``.

    Returns:
        Segments in order, adjacent segments of equal weight merged, empty segments dropped; e.g.
        ``[("a ", 1.0), ("calm", 1.3), (" piano ", 1.0), ("with drums", 1/1.1)]``. An empty
        prompt gives ``[]``.

    Raises:
        ParameterError: If ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise ParameterError(f"prompt={text!r} must be a str")

    # Segments are [text, weight] lists so that closing a bracket can rescale them in place.
    segments: list[list] = []
    stack: list[tuple[str, int]] = []  # (bracket, index of the first segment inside it)
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            segments.append(["".join(buffer), 1.0])
            buffer.clear()

    def close(start: int, factor: float) -> None:
        for segment in segments[start:]:
            segment[1] *= factor

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            buffer.append(text[i + 1])
            i += 2
            continue
        if char in "([":
            flush()
            stack.append((char, len(segments)))
        elif char == ")" and stack and stack[-1][0] == "(":
            flush()
            _, start = stack.pop()
            factor = _UP
            # An explicit weight ends the last segment inside the parentheses: "words:1.3".
            if len(segments) > start:
                match = _EXPLICIT_WEIGHT.match(segments[-1][0])
                if match:
                    factor = float(match.group(2))
                    segments[-1][0] = match.group(1)
            close(start, factor)
        elif char == "]" and stack and stack[-1][0] == "[":
            flush()
            _, start = stack.pop()
            close(start, 1.0 / _UP)
        else:
            buffer.append(char)
        i += 1
    flush()
    # Brackets left open weigh the rest of the prompt.
    for bracket, start in reversed(stack):
        close(start, _UP if bracket == "(" else 1.0 / _UP)

    merged: list[tuple[str, float]] = []
    for segment_text, weight in segments:
        if not segment_text:
            continue
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + segment_text, weight)
        else:
            merged.append((segment_text, weight))
    return merged


@dataclass(frozen=True)
class WeightedTokens:
    """A tokenized prompt split into CLIP-sized chunks.

    Attributes:
        input_ids: int64 tensor of shape ``(num_chunks, model_max_length)``; each row is
            ``[BOS, up to 75 tokens, EOS, padding]``.
        weights: float32 tensor of the same shape, the weight of each position (1.0 for the
            special and padding tokens).
        num_tokens: Number of prompt tokens (without special tokens).
    """

    input_ids: torch.Tensor
    weights: torch.Tensor
    num_tokens: int

    @property
    def num_chunks(self) -> int:
        """Number of 77-token chunks."""
        return int(self.input_ids.shape[0])


def _special_ids(tokenizer) -> tuple[int, int, int, int]:
    length = int(tokenizer.model_max_length)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return length, bos, eos, pad


def tokenize_weighted(
    tokenizer: CLIPTokenizer, prompt: str, *, max_chunks: int = MAX_CHUNKS
) -> WeightedTokens:
    """Tokenize a weighted prompt into chunks of ``model_max_length`` (77 for CLIP).

    An unweighted prompt of at most 75 tokens gives exactly the ids of
    ``tokenizer(prompt, padding="max_length", max_length=77)``, so the plain Stable Diffusion
    encoding is reproduced.

    Args:
        tokenizer: A CLIP tokenizer (``bos_token_id``, ``eos_token_id``, ``model_max_length``).
        prompt: The prompt, with optional weights (see :func:`parse_prompt_weights`).
        max_chunks: Most chunks allowed.

    Returns:
        The chunked ids and weights; an empty prompt gives one chunk ``[BOS, EOS, pad...]``.

    Raises:
        ParameterError: If the prompt needs more than ``max_chunks`` chunks (the message gives
            the token count), or a weight is not finite.
    """
    length, bos, eos, pad = _special_ids(tokenizer)
    per_chunk = length - 2
    ids: list[int] = []
    weights: list[float] = []
    for segment, weight in parse_prompt_weights(prompt):
        if not math.isfinite(weight):
            raise ParameterError(f"prompt={prompt!r} has a non-finite weight {weight!r}")
        segment_ids = tokenizer(segment, add_special_tokens=False).input_ids
        ids.extend(segment_ids)
        weights.extend([weight] * len(segment_ids))
    num_chunks = max(1, math.ceil(len(ids) / per_chunk))
    if num_chunks > max_chunks:
        raise ParameterError(
            f"prompt is {len(ids)} tokens long; at most {max_chunks * per_chunk} tokens "
            f"({max_chunks} chunks of {per_chunk}) are supported: {prompt[:60]!r}..."
        )
    rows_ids = torch.full((num_chunks, length), pad, dtype=torch.int64)
    rows_weights = torch.ones((num_chunks, length), dtype=torch.float32)
    for c in range(num_chunks):
        chunk_ids = ids[c * per_chunk : (c + 1) * per_chunk]
        chunk_weights = weights[c * per_chunk : (c + 1) * per_chunk]
        n = len(chunk_ids)
        rows_ids[c, 0] = bos
        rows_ids[c, 1 : n + 1] = torch.tensor(chunk_ids, dtype=torch.int64)
        rows_ids[c, n + 1] = eos
        rows_weights[c, 1 : n + 1] = torch.tensor(chunk_weights, dtype=torch.float32)
    return WeightedTokens(input_ids=rows_ids, weights=rows_weights, num_tokens=len(ids))


def pad_chunks(tokens: WeightedTokens, num_chunks: int, *, tokenizer) -> WeightedTokens:
    """Pad with empty chunks (``[BOS, EOS, pad...]``) or truncate to ``num_chunks`` chunks.

    Used to give the negative prompt (and both ends of an interpolation) the same sequence
    length as the prompt, since they are mixed element-wise or batched together.
    """
    if num_chunks < 1:
        raise ParameterError(f"num_chunks={num_chunks} must be >= 1")
    have = tokens.num_chunks
    if have == num_chunks:
        return tokens
    if have > num_chunks:
        return WeightedTokens(
            input_ids=tokens.input_ids[:num_chunks],
            weights=tokens.weights[:num_chunks],
            num_tokens=tokens.num_tokens,
        )
    length, bos, eos, pad = _special_ids(tokenizer)
    extra_ids = torch.full((num_chunks - have, length), pad, dtype=torch.int64)
    extra_ids[:, 0] = bos
    extra_ids[:, 1] = eos
    extra_weights = torch.ones((num_chunks - have, length), dtype=torch.float32)
    return WeightedTokens(
        input_ids=torch.cat([tokens.input_ids, extra_ids]),
        weights=torch.cat([tokens.weights, extra_weights]),
        num_tokens=tokens.num_tokens,
    )


def weighted_embeddings(embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale token embeddings by their weights, keeping the overall mean.

    Args:
        embeddings: ``(..., seq_len, hidden)`` text-encoder outputs.
        weights: ``(..., seq_len)`` per-token weights.

    Returns:
        Same shape and dtype as ``embeddings``. All-ones weights return the input unchanged. The
        rescaling to the original mean is skipped when it is ill-conditioned (weighted mean of
        the other sign or tiny relative to the mean magnitude, e.g. with negative weights),
        since dividing by a near-zero mean would blow the embeddings up.
    """
    if bool((weights == 1.0).all()):
        return embeddings
    original = embeddings.float()
    weighted = original * weights.to(original)[..., None]
    old_mean = original.mean()
    new_mean = weighted.mean()
    scale_floor = 1e-3 * original.abs().mean()
    if torch.sign(old_mean) == torch.sign(new_mean) and new_mean.abs() > scale_floor:
        weighted = weighted * (old_mean / new_mean)
    return weighted.to(embeddings.dtype)


def encode_chunks(
    text_encoder: CLIPTextModel, tokens: WeightedTokens, *, device: torch.device
) -> torch.Tensor:
    """Encode chunked tokens and concatenate them into one conditioning sequence.

    Each chunk goes through the encoder separately (batch of one), so a prompt's embedding does
    not depend on what else is being encoded (keeps results bitwise reproducible).

    Args:
        text_encoder: A ``CLIPTextModel``.
        tokens: Output of :func:`tokenize_weighted` / :func:`pad_chunks`.
        device: Device of the text encoder's inputs.

    Returns:
        ``(1, num_chunks * 77, hidden)`` tensor in the encoder's dtype: the last hidden states,
        weighted with :func:`weighted_embeddings`.
    """
    outputs = []
    for c in range(tokens.num_chunks):
        ids = tokens.input_ids[c : c + 1].to(device)
        hidden = text_encoder(ids)[0]
        outputs.append(hidden)
    embeddings = torch.cat(outputs, dim=1)
    weights = tokens.weights.reshape(1, -1).to(embeddings.device)
    return weighted_embeddings(embeddings, weights)
