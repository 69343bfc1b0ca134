"""Fine-tuning riffusion on your own music: LoRA adapters trained on spectrogram windows.

Make a dataset with :func:`riffusion.dataset.prepare`, then::

    from riffusion.training import train_lora

    result = train_lora("my_dataset", "riffusion/riffusion-model-v1", "my_lora", steps=2000)
    riffuser.load_lora(result.weights, scale=0.8)

Needs the ``[train]`` extra (``peft``, ``matplotlib``); importing this package does not import
them, :func:`train_lora` does.
"""

from riffusion.training.adapters import TEXT_ENCODER_TARGETS, UNET_ALL_TARGETS, UNET_TARGETS
from riffusion.training.checkpoint import CHECKPOINT_PREFIX, LORA_WEIGHT_NAME
from riffusion.training.data import ImageTextExamples, load_examples
from riffusion.training.interrupt import TrainingInterrupted
from riffusion.training.log import LOG_NAME, PLOT_NAME
from riffusion.training.loop import training_target
from riffusion.training.lora import TrainingResult, train_lora

__all__ = [
    "CHECKPOINT_PREFIX",
    "LOG_NAME",
    "LORA_WEIGHT_NAME",
    "PLOT_NAME",
    "TEXT_ENCODER_TARGETS",
    "UNET_ALL_TARGETS",
    "UNET_TARGETS",
    "ImageTextExamples",
    "TrainingInterrupted",
    "TrainingResult",
    "load_examples",
    "train_lora",
    "training_target",
]
