"""Test helpers: a tiny, randomly initialised Stable Diffusion checkpoint built offline.

The real riffusion checkpoint (``riffusion/riffusion-model-v1``) is a 4 GB Stable Diffusion 1.5
fine-tune that cannot be downloaded in CI. :func:`make_tiny_model` writes a folder with the *same
layout and config keys* (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/,
with ``safety_checker``/``feature_extractor`` listed in model_index.json but absent on disk) and
random weights, so every code path of the loader and the pipeline runs for real, in seconds.

:data:`SD15_ARCHITECTURE` documents the real checkpoint's architecture and gives the keyword
arguments to build it at full size (used by ``bench/gpu_clip.py``).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import torch

from riffusion.errors import ParameterError

__all__ = [
    "SD15_ARCHITECTURE",
    "TINY_SCHEDULER_CONFIG",
    "bytes_to_unicode",
    "make_tiny_model",
]

#: The architecture of ``riffusion/riffusion-model-v1`` (Stable Diffusion 1.5): keyword arguments
#: for ``UNet2DConditionModel``, ``AutoencoderKL`` and ``CLIPTextConfig``. The UNet has four
#: resolution levels of 320/640/1280/1280 channels with 768-wide cross-attention, the text encoder
#: is the CLIP ViT-L/14 text tower (12 layers, width 768, 77 positions, 49408 tokens), and the VAE
#: has 128/256/512/512 channels, a downsampling factor of 8 and 4 latent channels (a 512x512 RGB
#: image <-> 4x64x64 latents), scaling factor 0.18215.
SD15_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "unet": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        "up_block_types": (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    "text_encoder": {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "projection_dim": 768,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    },
}

#: The scheduler shipped with riffusion-model-v1 (PNDM with SD's scaled-linear betas).
TINY_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
}

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"

# A handful of byte-pair merges so the tokenizer exercises real BPE (common English pairs).
_MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n</w>"),
    ("th", "e</w>"),
    ("in", "g</w>"),
    ("e", "r</w>"),
    ("a", "t</w>"),
    ("o", "r"),
)


def bytes_to_unicode() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character (the byte-level BPE alphabet).

    Printable Latin-1 bytes map to themselves; the others (control characters, space, ...) are
    shifted to code points 256 and up so that no token contains whitespace or control characters.

    Returns:
        A dict of 256 entries, byte value -> one-character string, injective.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """Build the byte-level BPE vocabulary and merges in CLIP's order (bytes, bytes</w>, merges,
    special tokens)."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [f"{c}</w>" for c in alphabet]
    tokens += [a + b for a, b in _MERGES]
    tokens += [_BOS, _EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [f"{a} {b}" for a, b in _MERGES]
    return vocab, merges


def _write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer(folder: pathlib.Path) -> dict[str, int]:
    """Write vocab.json, merges.txt and the tokenizer configs the real checkpoint ships."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _tiny_vocab()
    _write_json(folder / "vocab.json", vocab)
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    _write_json(
        folder / "special_tokens_map.json",
        {"bos_token": _BOS, "eos_token": _EOS, "pad_token": _EOS, "unk_token": _EOS},
    )
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": 77,
            "bos_token": _BOS,
            "eos_token": _EOS,
            "pad_token": _EOS,
            "unk_token": _EOS,
            "do_lower_case": True,
            "errors": "replace",
            "add_prefix_space": False,
        },
    )
    return vocab


def _calibrate_vae(vae) -> None:
    """Scale the encoder's output so scaled latents have unit variance, as in the real model.

    The real VAE's ``scaling_factor`` (0.18215) was chosen so that ``mean * scaling_factor`` has
    unit variance on images, the scale the UNet's noise schedule assumes. A random encoder is
    far off (std ~0.05 after scaling), which would make its latents negligible next to the
    denoised ones and the decoder nearly blind to them. Rescaling the posterior-mean half of
    ``quant_conv`` on a fixed random probe image restores that property.
    """
    generator = torch.Generator().manual_seed(1234)
    probe = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(probe).latent_dist.mean
        gain = 1.0 / (float(mean.std()) * float(vae.config.scaling_factor))
        channels = int(vae.config.latent_channels)
        vae.quant_conv.weight[:channels] *= gain
        vae.quant_conv.bias[:channels] *= gain


def make_tiny_model(directory: str | os.PathLike[str], *, seed: int = 0) -> pathlib.Path:
    """Write a tiny random Stable Diffusion 1.x checkpoint in diffusers format.

    The folder has the layout of ``riffusion/riffusion-model-v1``: ``model_index.json`` naming
    ``StableDiffusionPipeline`` (and listing ``safety_checker`` / ``feature_extractor`` whose
    folders are deliberately absent), ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/`` and
    ``scheduler/``. The models are small (hidden width 32, UNet 16/32 channels, VAE 8/8/16/16
    channels with 4 blocks so the downsampling factor is 8 like the real VAE: a 512x512 image maps
    to 4x64x64 latents). Weights are saved as safetensors. Built offline in about a second.

    Args:
        directory: Folder to create (or reuse); it may already exist but must not be a file.
        seed: Seed of the random weights; the same seed gives bitwise the same weights. Must be a
            non-negative int.

    Returns:
        The folder as a :class:`pathlib.Path`, loadable with ``RiffusionPipeline.from_pretrained``.

    Raises:
        ParameterError: If ``seed`` is not a non-negative int or ``directory`` is an existing file.
    """
    # Imported lazily so that importing riffusion.testing stays cheap.
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed={seed!r} must be a non-negative int")
    root = pathlib.Path(directory)
    if root.exists() and not root.is_dir():
        raise ParameterError(f"directory={str(root)!r} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)

    vocab = _write_tokenizer(root / "tokenizer")

    # fork_rng keeps the caller's global RNG untouched while the weights are initialised.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_config = CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=32,
            bos_token_id=vocab[_BOS],
            eos_token_id=vocab[_EOS],
            pad_token_id=vocab[_EOS],
        )
        text_encoder = CLIPTextModel(text_config)
        # A fresh LayerNorm has weight 1 and bias 0, which makes every token embedding exactly
        # zero-mean; trained CLIP is not like that (prompt weighting renormalises by the mean), so
        # give the norms random affine parameters.
        with torch.no_grad():
            for module in text_encoder.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.normal_(1.0, 0.2)
                    module.bias.normal_(0.0, 0.2)

        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            cross_attention_dim=text_config.hidden_size,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=512,
            scaling_factor=0.18215,
            # No attention in the VAE's mid block: at 64x64 latents it would dominate the tiny
            # model's run time, and being global it would blur "keep this region" tests.
            mid_block_add_attention=False,
        )

        _calibrate_vae(vae)

    text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    unet.save_pretrained(root / "unet", safe_serialization=True)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    PNDMScheduler(**TINY_SCHEDULER_CONFIG).save_pretrained(root / "scheduler")

    _write_json(
        root / "model_index.json",
        {
            "_class_name": "StableDiffusionPipeline",
            "_diffusers_version": "0.42.1",
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    return root
