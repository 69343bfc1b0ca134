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

from riffusion._checks import check_seed
from riffusion.errors import ParameterError

__all__ = [
    "SD15_ARCHITECTURE",
    "TINY_SCHEDULER_CONFIG",
    "bytes_to_unicode",
    "make_tiny_model",
    "make_tiny_single_file",
    "web_app_request",
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


def web_app_request(**changes: Any) -> dict[str, Any]:
    """The JSON body of the original web app's ``POST /run_inference/``, for tests and benches.

    Defaults to what the app sends on its first transition (alpha 0.25, 50 steps, ``og_beat``,
    no mask, "jazz piano" seed 5 to "rock drums" seed 6, denoising 0.75, guidance 7). Keyword
    arguments replace fields; a dotted name reaches into an end point
    (``web_app_request(**{"start.seed": 9}, num_inference_steps=2)``).

    Args:
        **changes: field (or ``"start.field"`` / ``"end.field"``) → value.
    """
    body: dict[str, Any] = {
        "alpha": 0.25,
        "num_inference_steps": 50,
        "seed_image_id": "og_beat",
        "mask_image_id": None,
        "start": {"prompt": "jazz piano", "seed": 5, "denoising": 0.75, "guidance": 7},
        "end": {"prompt": "rock drums", "seed": 6, "denoising": 0.75, "guidance": 7},
    }
    for key, value in changes.items():
        target = body
        *parents, last = key.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                raise ParameterError(f"{key!r} reaches into {part!r}, which is not an object")
            target = target[part]
        target[last] = value
    return body


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
    from diffusers import PNDMScheduler

    check_seed("seed", seed)
    root = pathlib.Path(directory)
    if root.exists() and not root.is_dir():
        raise ParameterError(f"directory={str(root)!r} exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)

    vocab = _write_tokenizer(root / "tokenizer")

    # fork_rng keeps the caller's global RNG untouched while the weights are initialised. The
    # weights are drawn from the global RNG in this order (text encoder, its norms, UNet, VAE):
    # changing the order changes every weight, and the golden clips with them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = _tiny_text_encoder(vocab)
        unet = _tiny_unet(cross_attention_dim=text_encoder.config.hidden_size)
        vae = _tiny_vae()
        _calibrate_vae(vae)

    text_encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    unet.save_pretrained(root / "unet", safe_serialization=True)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    PNDMScheduler(**TINY_SCHEDULER_CONFIG).save_pretrained(root / "scheduler")
    _write_json(root / "model_index.json", _TINY_MODEL_INDEX)
    return root


# The pipeline's component table, as in riffusion-model-v1 (whose safety checker and feature
# extractor folders the tiny model leaves out on purpose).
_TINY_MODEL_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _tiny_text_encoder(vocab: dict[str, int]) -> Any:
    """A random CLIP text tower of width 32 (2 layers, 4 heads, 77 positions) over ``vocab``.

    Draws from the global torch RNG: the model's initialisation, then its LayerNorms' affine
    parameters.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

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
    return text_encoder


def _tiny_unet(*, cross_attention_dim: int) -> Any:
    """A random two-level UNet (16/32 channels, 4 latent channels in and out, 64x64 samples)
    attending to text embeddings of width ``cross_attention_dim``; draws from the global RNG."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def _tiny_vae() -> Any:
    """A random VAE with 8/8/16/16 channels in four levels (downsampling factor 8, like SD's:
    a 3x512x512 image <-> 4x64x64 latents); draws from the global RNG."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
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


# diffusers ResNet block parameter names -> the original (CompVis ldm) UNet ResBlock names.
_LDM_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}

# diffusers UNet top-level parameters -> ldm names (under ``model.diffusion_model.``).
_LDM_UNET_TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}

# diffusers VAE mid-block attention modules -> ldm ``mid.attn_1`` modules.
_LDM_VAE_ATTENTION_NAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _rename_by_prefix(
    state: dict[str, torch.Tensor],
    prefixes: dict[str, str],
    resnet_names: dict[str, str],
    what: str,
) -> dict[str, torch.Tensor]:
    """Rename every key by its longest matching prefix; inside ResNet blocks (prefixes whose
    diffusers name contains ``.resnets.``) also rename the parameter's module name."""
    ordered = sorted(prefixes, key=len, reverse=True)
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        prefix = next((p for p in ordered if key.startswith(p)), None)
        if prefix is None:
            raise ParameterError(
                f"the {what} weight {key!r} has no place in the original Stable Diffusion layout "
                "(only the SD 1.x architecture of make_tiny_model is supported)"
            )
        rest = key[len(prefix) :]
        if ".resnets." in prefix:
            module, _, param = rest.partition(".")
            rest = f"{resnet_names.get(module, module)}.{param}"
        renamed[prefixes[prefix] + rest] = tensor
    return renamed


def _unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers ``UNet2DConditionModel`` weights -> ``model.diffusion_model.*`` (SD 1.x).

    The ldm UNet numbers its blocks sequentially: ``input_blocks.0`` is ``conv_in``, then each
    down level has ``layers_per_block`` blocks ``[ResBlock, SpatialTransformer?]`` and (except the
    last level) one downsampler block ``[Downsample]`` (``.0.op``); ``middle_block`` is
    ResBlock/SpatialTransformer/ResBlock; each up level has ``layers_per_block + 1`` output blocks
    ``[ResBlock, SpatialTransformer?, Upsample?]``, the upsampler in the level's last block.
    """
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ParameterError(
            f"layers_per_block={layers!r}: only one int for every level is supported"
        )
    levels = len(config["block_out_channels"])
    prefixes = dict(_LDM_UNET_TOP_LEVEL)
    block = 1
    for level in range(levels):
        for layer in range(layers):
            prefixes[f"down_blocks.{level}.resnets.{layer}."] = f"input_blocks.{block}.0."
            prefixes[f"down_blocks.{level}.attentions.{layer}."] = f"input_blocks.{block}.1."
            block += 1
        if level < levels - 1:
            prefixes[f"down_blocks.{level}.downsamplers.0.conv."] = f"input_blocks.{block}.0.op."
            block += 1
    prefixes["mid_block.resnets.0."] = "middle_block.0."
    prefixes["mid_block.attentions.0."] = "middle_block.1."
    prefixes["mid_block.resnets.1."] = "middle_block.2."
    block = 0
    for level in range(levels):
        for layer in range(layers + 1):
            prefixes[f"up_blocks.{level}.resnets.{layer}."] = f"output_blocks.{block}.0."
            prefixes[f"up_blocks.{level}.attentions.{layer}."] = f"output_blocks.{block}.1."
            block += 1
        if level < levels - 1:
            has_attention = str(config["up_block_types"][level]).startswith("CrossAttn")
            slot = 2 if has_attention else 1
            prefixes[f"up_blocks.{level}.upsamplers.0.conv."] = (
                f"output_blocks.{block - 1}.{slot}.conv."
            )
    renamed = _rename_by_prefix(state, prefixes, _LDM_UNET_RESNET_NAMES, "UNet")
    return {f"model.diffusion_model.{key}": tensor for key, tensor in renamed.items()}


def _vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` weights -> ``first_stage_model.*`` (SD 1.x).

    ldm names the encoder levels ``encoder.down.{i}.block.{j}`` / ``.downsample``, the decoder
    levels in *reverse* order (``decoder.up.{n-1-i}`` is diffusers' ``decoder.up_blocks.{i}``), the
    mid ResNets ``mid.block_1`` / ``mid.block_2``, ``conv_norm_out`` ``norm_out`` and a ResNet's
    1x1 shortcut ``nin_shortcut``. The mid-block attention (``mid.attn_1``) has ``norm`` /
    ``q`` / ``k`` / ``v`` / ``proj_out`` as 1x1 convolutions where diffusers has ``group_norm`` and
    linear ``to_q`` / ``to_k`` / ``to_v`` / ``to_out.0``: its linear weights get two unit axes.
    """
    levels = len(config["block_out_channels"])
    prefixes: dict[str, str] = {
        "quant_conv.": "quant_conv.",
        "post_quant_conv.": "post_quant_conv.",
    }
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.conv_in."] = f"{part}.conv_in."
        prefixes[f"{part}.conv_out."] = f"{part}.conv_out."
        prefixes[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        for k in range(2):
            prefixes[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
        for ours, theirs in _LDM_VAE_ATTENTION_NAMES.items():
            prefixes[f"{part}.mid_block.attentions.0.{ours}."] = f"{part}.mid.attn_1.{theirs}."
    for level in range(levels):
        prefixes[f"encoder.down_blocks.{level}.resnets."] = f"encoder.down.{level}.block."
        prefixes[f"encoder.down_blocks.{level}.downsamplers.0.conv."] = (
            f"encoder.down.{level}.downsample.conv."
        )
        ldm_level = levels - 1 - level
        prefixes[f"decoder.up_blocks.{level}.resnets."] = f"decoder.up.{ldm_level}.block."
        prefixes[f"decoder.up_blocks.{level}.upsamplers.0.conv."] = (
            f"decoder.up.{ldm_level}.upsample.conv."
        )
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in _rename_by_prefix(state, prefixes, {}, "VAE").items():
        if ".mid.attn_1." in key and key.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # linear -> 1x1 convolution
        # Inside "...block.{j}." only the shortcut is renamed (norm1/conv1/... keep their names).
        renamed[f"first_stage_model.{key.replace('.conv_shortcut.', '.nin_shortcut.')}"] = tensor
    return renamed


def _text_encoder_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPTextModel`` weights -> ``cond_stage_model.transformer.text_model.*``.

    SD 1.x stores the HF CLIP text model as is, under ``cond_stage_model.transformer.``; newer
    transformers save ``CLIPTextModel`` without its ``text_model.`` level, which is put back.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        inner = key.removeprefix("text_model.")
        renamed[f"cond_stage_model.transformer.text_model.{inner}"] = tensor
    return renamed


def make_tiny_single_file(
    model_dir: str | os.PathLike[str], path: str | os.PathLike[str]
) -> pathlib.Path:
    """Write a diffusers-format tiny model as one original-layout Stable Diffusion checkpoint.

    Converts the UNet, VAE and CLIP text encoder of a folder made by :func:`make_tiny_model` to
    the key layout of the original (CompVis) SD 1.x ``.ckpt`` / ``.safetensors`` files:
    ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE) and
    ``cond_stage_model.transformer.text_model.*`` (text encoder); tensors are unchanged (same
    shapes, dtypes and values). The file holds weights only, so loading it needs the folder's
    configs: ``RiffusionPipeline.from_single_file(path, config=model_dir)``. This is the inverse
    of diffusers' single-file conversion, written from the layout, for testing that path offline.

    Args:
        model_dir: A diffusers-format folder with ``unet/``, ``vae/`` and ``text_encoder/``
            safetensors weights and configs (as written by :func:`make_tiny_model`).
        path: The ``.safetensors`` file to write (its folder must exist).

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ParameterError: If ``path`` does not end with ``.safetensors``, a component's weights or
            config are missing, or the architecture has weights this SD 1.x layout has no place
            for.
    """
    from safetensors.torch import load_file, save_file

    root = pathlib.Path(model_dir)
    target = pathlib.Path(path)
    if target.suffix != ".safetensors":
        raise ParameterError(f"path={str(target)!r} must end with .safetensors")
    files = {
        "unet": root / "unet" / "diffusion_pytorch_model.safetensors",
        "vae": root / "vae" / "diffusion_pytorch_model.safetensors",
        "text_encoder": root / "text_encoder" / "model.safetensors",
    }
    for name, file in files.items():
        if not file.is_file() or not (root / name / "config.json").is_file():
            raise ParameterError(
                f"model_dir={str(root)!r} has no {name}/{file.name} and {name}/config.json"
            )

    def config(name: str) -> dict[str, Any]:
        return json.loads((root / name / "config.json").read_text(encoding="utf-8"))

    checkpoint: dict[str, torch.Tensor] = {}
    checkpoint.update(_unet_to_ldm(load_file(str(files["unet"])), config("unet")))
    checkpoint.update(_vae_to_ldm(load_file(str(files["vae"])), config("vae")))
    checkpoint.update(_text_encoder_to_ldm(load_file(str(files["text_encoder"]))))
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(target))
    return target
