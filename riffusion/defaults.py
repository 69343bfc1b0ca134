"""Defaults of the front door and its apps, in one torch-free place.

Every module that needs the default model, the width of one model window or the share-string
prefix reads it from here (apps included: reading this module costs nothing at start-up).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SEED_IMAGE",
    "LR_SCHEDULERS",
    "MAX_CLIP_DURATION_S",
    "MAX_INFERENCE_STEPS",
    "OPTIMIZERS",
    "RECIPE_URL_PREFIX",
    "REPORT_TO",
    "SCHEDULER_NAMES",
    "WINDOW_WIDTH",
]

#: The public Riffusion checkpoint (Stable Diffusion 1.5 fine-tuned on 512×512 spectrograms).
DEFAULT_MODEL = "riffusion/riffusion-model-v1"

#: Columns of one model window: (512 − 1) · hop = 225,351 samples = 5.11 s at the defaults.
WINDOW_WIDTH = 512

#: The seed image of text_to_audio, riffuse and loop when none is named.
DEFAULT_SEED_IMAGE = "straight_beat"

#: Share strings start with this prefix; the digit is the recipe format's version.
RECIPE_URL_PREFIX = "riffusion:1:"

#: Longest clip (in seconds) one call generates or one recipe describes.
MAX_CLIP_DURATION_S = 600.0

#: Schedulers by short name (``riffusion.models.sd1.schedulers`` builds them): "default" is the
#: checkpoint's own. A recipe, the CLI and the server check names against this tuple without
#: loading diffusers.
SCHEDULER_NAMES: tuple[str, ...] = (
    "default",
    "ddim",
    "dpm++",
    "euler",
    "euler_ancestral",
    "lms",
    "pndm",
    # Few-step samplers: UniPC and DPM-Solver++ 2M with Karras sigmas run well in 10-20 steps;
    # LCM and TCD are the samplers of the LCM- and TCD-LoRAs (about 4 steps, guidance <= 1).
    "unipc",
    "dpm++2m-karras",
    "lcm",
    "tcd",
)

#: Most scheduler steps of a full run: the checkpoint has 1,000 training timesteps.
MAX_INFERENCE_STEPS = 1000

#: Training's ``lr_scheduler`` values: the names of ``diffusers.optimization.get_scheduler``
#: that need no more than the warm-up and the number of steps.
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)

#: Training's ``optimizer`` values: ``torch.optim.AdamW``, or bitsandbytes' ``AdamW8bit``.
OPTIMIZERS = ("adamw", "adamw8bit")

#: Training's ``report_to`` values: where the metrics go besides the CSV log (always written).
REPORT_TO = ("csv", "tensorboard", "wandb")
