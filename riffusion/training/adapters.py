"""The LoRA adapters (``peft``): which modules get them, their seeded initialisation, and their
tensors and settings as they are saved."""

from __future__ import annotations

from typing import Any

import torch

from riffusion.training.randomness import ADAPTER_INIT, seed_for

__all__ = [
    "ADAPTER_NAME",
    "TEXT_ENCODER_TARGETS",
    "UNET_ALL_TARGETS",
    "UNET_TARGETS",
    "adapter_metadata",
    "adapter_state",
    "add_adapters",
]

#: UNet modules that get LoRA adapters: the attention projections (as diffusers' scripts).
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: A wider choice: attention, transformer projections and feed-forward, and the ResNet
#: convolutions. More capacity per rank (LoCon-style); diffusers loads these files too.
UNET_ALL_TARGETS = (
    *UNET_TARGETS,
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_in",
    "conv_out",
    "time_emb_proj",
)
#: Text encoder modules that get LoRA adapters with ``train_text_encoder=True``.
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: peft's name of the (only) adapter of each model.
ADAPTER_NAME = "default"


def add_adapters(
    unet: Any,
    text_encoder: Any | None,
    *,
    rank: int,
    lora_alpha: float,
    target_modules: tuple[str, ...],
    seed: int,
) -> None:
    """Put freshly initialised LoRA adapters on the UNet (and the text encoder), in place.

    The ``A`` matrices are Gaussian and the ``B`` matrices zero (so the models start out
    unchanged), drawn from a seed of the run's own; torch's global generator is restored after.

    Args:
        unet: the diffusers ``UNet2DConditionModel``.
        text_encoder: the CLIP text encoder, or ``None`` to leave it without adapters.
        rank: LoRA rank ``r``.
        lora_alpha: LoRA ``alpha`` (the adapters' output is scaled by ``alpha / rank``).
        target_modules: names of the UNet modules that get adapters.
        seed: the run's seed.
    """
    from peft import LoraConfig, inject_adapter_in_model

    def config(targets: tuple[str, ...]) -> Any:
        return LoraConfig(
            r=rank,
            lora_alpha=lora_alpha,
            init_lora_weights="gaussian",
            target_modules=list(targets),
        )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, ADAPTER_INIT))
        unet.add_adapter(config(target_modules))
        if text_encoder is not None:
            # peft directly: transformers' own add_adapter may demand a newer peft than exists.
            inject_adapter_in_model(
                config(TEXT_ENCODER_TARGETS), text_encoder, adapter_name=ADAPTER_NAME
            )


def adapter_state(model: Any) -> dict[str, torch.Tensor]:
    """The adapter tensors of ``model``: peft's names, detached contiguous CPU copies.

    peft's key names (``...to_q.lora_A.weight``) are what diffusers' loaders read as they are;
    its older ``lora.down`` names exist for attention layers only, not convolutions.
    """
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def adapter_metadata(model: Any) -> dict[str, Any]:
    """The adapter's ``LoraConfig`` as JSON values (sets become sorted lists)."""
    config = model.peft_config[ADAPTER_NAME].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
