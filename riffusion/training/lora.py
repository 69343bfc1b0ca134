"""LoRA fine-tuning of a Stable Diffusion 1.x checkpoint on spectrogram images.

The objective is Stable Diffusion's own: encode each image with the (frozen) VAE, draw a random
timestep and Gaussian noise, noise the latents with the checkpoint's noise schedule (a
``DDPMScheduler`` built from the checkpoint's scheduler config), let the UNet predict the noise
(or the velocity, when the config's ``prediction_type`` is ``"v_prediction"``) from the noisy
latents and the caption's CLIP embedding, and minimise the mean squared error. Only LoRA adapters
(``peft``) on the UNet's attention projections — and optionally the text encoder's — are
trained; ``accelerate`` places the models and runs mixed precision.

Every random draw is a pure function of ``(seed, step)``: the order of examples comes from a
per-epoch permutation, the noise and timesteps from a generator seeded with the step number. So
a run resumed from its saved state (LoRA weights, optimizer moments, step) continues exactly as
if it had never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from riffusion._checks import check_integer, finite_float
from riffusion._files import atomic_output
from riffusion.errors import ParameterError, RiffusionError, install_hint
from riffusion.training.data import ImageTextExamples, load_examples

__all__ = [
    "LOG_NAME",
    "LORA_WEIGHT_NAME",
    "PLOT_NAME",
    "STATE_DIR",
    "TEXT_ENCODER_TARGETS",
    "UNET_ALL_TARGETS",
    "UNET_TARGETS",
    "TrainingResult",
    "train_lora",
    "training_target",
]

#: Weights file, diffusers' LoRA format (what ``load_lora_weights`` reads from a folder).
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
#: Training log: one CSV row per optimizer step.
LOG_NAME = "training_log.csv"
#: Loss curve.
PLOT_NAME = "loss.png"
#: Folder of the resumable training state inside the output folder.
STATE_DIR = "training_state"
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

_PRECISIONS = ("no", "fp16", "bf16")
_ADAPTER = "default"


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train_lora` produced.

    Attributes:
        output_dir: the output folder.
        weights: the LoRA weights in diffusers format (``pytorch_lora_weights.safetensors``).
        log: the CSV log (``step, loss, learning_rate, elapsed_s``).
        loss_plot: the loss-curve PNG, or ``None`` when matplotlib is missing.
        step: optimizer steps done in total (including those before a resume).
        start_step: the step this call started from (0, or the resumed state's step).
        losses: the loss of every optimizer step this call ran, in order.
        validation: the validation files written (spectrogram PNGs and WAVs).
    """

    output_dir: Path
    weights: Path
    log: Path
    loss_plot: Path | None
    step: int
    start_step: int
    losses: tuple[float, ...]
    validation: tuple[Path, ...]


# ------------------------------------------------------------------------------ checks
def _check_positive_number(name: str, value: Any) -> float:
    number = finite_float(value)
    if number is None or number <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive finite number")
    return number


def _check_prompts(prompts: Any) -> tuple[str, ...]:
    if isinstance(prompts, str):
        prompts = (prompts,)
    if not isinstance(prompts, Sequence) or not all(
        isinstance(p, str) and p.strip() for p in prompts
    ):
        raise ParameterError(f"validation_prompts={prompts!r} must be a list of non-empty strings")
    return tuple(prompts)


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise RiffusionError(f"LoRA training needs {module}: {install_hint('train')}") from error


def training_target(
    scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet must predict: the noise, or the velocity for v-prediction checkpoints.

    Args:
        scheduler: a diffusers scheduler with the checkpoint's config (``prediction_type``
            ``"epsilon"`` or ``"v_prediction"``).
        latents: clean latents ``(batch, 4, h, w)``.
        noise: the Gaussian noise added, same shape.
        timesteps: ``(batch,)`` integer timesteps.

    Returns:
        ``noise`` for epsilon prediction; ``sqrt(ᾱ_t) · noise − sqrt(1 − ᾱ_t) · latents`` for
        v-prediction.
    """
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ParameterError(
        f"the scheduler's prediction_type={prediction_type!r} is not supported; expected "
        "'epsilon' or 'v_prediction'"
    )


# ------------------------------------------------------------------------------ randomness
def _seed_for(seed: int, *keys: int) -> int:
    """A 63-bit seed that depends on ``seed`` and ``keys`` only (no global state)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)[0] >> 1)


class _Order:
    """Which example sits at each position of the endless, epoch-shuffled stream."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._epochs: dict[int, list[int]] = {}

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(_seed_for(self.seed, 0, epoch))
            self._epochs = {epoch: torch.randperm(self.size, generator=generator).tolist()}
        return self._epochs[epoch][offset]


# ------------------------------------------------------------------------------ state I/O
def _state_config(**values: Any) -> dict[str, Any]:
    return json.loads(json.dumps(values))


def _save_state(
    output_dir: Path,
    *,
    step: int,
    config: dict[str, Any],
    unet: Any,
    text_encoder: Any | None,
    optimizer: Any,
    scaler: Any | None,
) -> None:
    """Write the training state to ``STATE_DIR`` atomically (new folder, then swap)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = output_dir / STATE_DIR
    partial = output_dir / f".{STATE_DIR}.partial"
    old = output_dir / f".{STATE_DIR}.old"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    tensors = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    save_file(tensors, partial / "unet_lora.safetensors")
    if text_encoder is not None:
        tensors = {
            k: v.detach().cpu().contiguous()
            for k, v in get_peft_model_state_dict(text_encoder).items()
        }
        save_file(tensors, partial / "text_encoder_lora.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), partial / "scaler.pt")
    (partial / "state.json").write_text(
        json.dumps({"step": step, "config": config}, indent=1, sort_keys=True) + "\n"
    )
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def _find_state(output_dir: Path) -> Path | None:
    for candidate in (output_dir / STATE_DIR, output_dir / f".{STATE_DIR}.old"):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def _read_state(state_dir: Path) -> dict[str, Any]:
    """``state.json`` of a saved training state: ``{"step": int, "config": dict}``."""
    path = state_dir / "state.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _corrupt_state(state_dir, "state.json", error) from None
    if (
        not isinstance(saved, dict)
        or isinstance(saved.get("step"), bool)
        or not isinstance(saved.get("step"), int)
        or saved["step"] < 0
        or not isinstance(saved.get("config"), dict)
    ):
        raise _corrupt_state(state_dir, "state.json", "no step count and settings in it")
    return saved


def _load_state_file(state_dir: Path, name: str, load: Callable[[Path], Any]) -> Any:
    """``load(state_dir / name)``; a missing or damaged file is a clear error, not a traceback."""
    try:
        return load(state_dir / name)
    except Exception as error:  # safetensors, torch.load and peft each raise their own types
        raise _corrupt_state(state_dir, name, error) from None


def _corrupt_state(state_dir: Path, name: str, error: object) -> RiffusionError:
    reason = " ".join(str(error).split())[:300]
    return RiffusionError(
        f"the training state in {str(state_dir)!r} is damaged ({name}: {reason}); delete that "
        "folder to start over, or use a new output_dir"
    )


def _read_log(path: Path, up_to_step: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["step", "loss", "learning_rate", "elapsed_s"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(path) as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")


def _plot_loss(path: Path, rows: list[dict[str, Any]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn(
            f"matplotlib is not installed, so no loss plot was drawn: {install_hint('train')}",
            stacklevel=3,
        )
        return None
    steps = np.array([int(r["step"]) for r in rows])
    losses = np.array([float(r["loss"]) for r in rows])
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.subplots()
    axes.plot(steps, losses, lw=0.8, alpha=0.45, label="loss per step")
    window = max(1, min(50, len(losses) // 10))
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes.plot(steps[window - 1 :], smooth, lw=1.8, label=f"mean of {window} steps")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("MSE loss")
    axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def _save_weights(output_dir: Path, unet: Any, text_encoder: Any | None) -> Path:
    """Write the adapters in diffusers' LoRA format, atomically."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft.utils import get_peft_model_state_dict

    def layers(model: Any) -> dict[str, torch.Tensor]:
        # peft's key names (``...to_q.lora_A.weight``), which diffusers' loaders read as they
        # are; its older ``lora.down`` names exist for attention layers only, not convolutions.
        state = get_peft_model_state_dict(model)
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def metadata(model: Any) -> dict[str, Any]:
        config = model.peft_config[_ADAPTER].to_dict()
        return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}

    target = output_dir / LORA_WEIGHT_NAME
    partial_name = f".{LORA_WEIGHT_NAME}.partial"
    kwargs: dict[str, Any] = {
        "unet_lora_layers": layers(unet),
        "unet_lora_adapter_metadata": metadata(unet),
    }
    if text_encoder is not None:
        kwargs["text_encoder_lora_layers"] = layers(text_encoder)
        kwargs["text_encoder_lora_adapter_metadata"] = metadata(text_encoder)
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        output_dir, weight_name=partial_name, safe_serialization=True, **kwargs
    )
    os.replace(output_dir / partial_name, target)
    return target


def _make_accelerator(accelerate: Any, mixed_precision: str, cpu: bool) -> Any:
    """An ``Accelerator`` on the device asked for; a later training in the same process may
    change the precision or the device.

    accelerate keeps its state in process-wide singletons: the mixed-precision setting (a
    different one later is refused: "restart your runtime") and the device of the first
    ``Accelerator`` (a later ``Accelerator(cpu=False)`` after ``cpu=True`` silently stays on the
    CPU: a CUDA training after a CPU one ran on the CPU). A library function called twice must
    do neither, so when the state disagrees with the request it is cleared and the accelerator
    built again.
    """
    from accelerate.state import AcceleratorState

    try:
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    except ValueError as error:
        if "already been initialized" not in str(error):
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    if (accelerator.device.type == "cpu") != cpu:
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    return accelerator


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "prompt"


# ------------------------------------------------------------------------------ training
def train_lora(
    dataset: Any,
    model: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    rank: int = 4,
    target_modules: Sequence[str] = UNET_TARGETS,
    lora_alpha: float | None = None,
    learning_rate: float = 1e-4,
    lr_warmup_steps: int = 0,
    steps: int = 1000,
    batch_size: int = 1,
    gradient_accumulation: int = 1,
    max_grad_norm: float = 1.0,
    mixed_precision: str = "no",
    gradient_checkpointing: bool = False,
    seed: int = 0,
    train_text_encoder: bool = False,
    validation_prompts: Sequence[str] = (),
    validate_every: int | None = None,
    validation_steps: int = 20,
    checkpoint_every: int | None = None,
    resume: bool = False,
    device: str = "auto",
    local_files_only: bool = False,
    progress: bool = True,
) -> TrainingResult:
    """Fine-tune LoRA adapters on spectrogram images with the Stable Diffusion objective.

    Args:
        dataset: a folder from :func:`riffusion.dataset.prepare` (``metadata.jsonl`` + PNGs),
            or a sequence of ``{"image": PIL image or path, "text": caption}`` rows (a Hugging
            Face ``datasets.Dataset`` works). All images the same size, sides multiples of 8.
        model: the base checkpoint: hub id or diffusers folder (Stable Diffusion 1.x).
        output_dir: where weights, log, plot, validation clips and the training state go.
        rank: LoRA rank ``r`` of every adapter.
        target_modules: names of the UNet modules that get adapters: :data:`UNET_TARGETS`
            (attention projections, the default) or :data:`UNET_ALL_TARGETS` (also projections,
            feed-forward and ResNet convolutions), or your own list.
        lora_alpha: LoRA ``alpha`` (adapter output scaled by ``alpha / rank``); default ``rank``.
        learning_rate: AdamW learning rate (constant after the warm-up).
        lr_warmup_steps: linear warm-up of the learning rate over this many steps.
        steps: total optimizer steps (a resumed run stops at the same total).
        batch_size: examples per micro-batch.
        gradient_accumulation: micro-batches per optimizer step (effective batch
            ``batch_size * gradient_accumulation``).
        max_grad_norm: gradient clipping norm.
        mixed_precision: ``"no"``, ``"fp16"`` (CUDA only) or ``"bf16"``: the frozen weights are
            cast to it and the forward pass runs under autocast; the adapters stay float32.
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        seed: seeds the adapters' initialisation, the example order, noise and timesteps.
        train_text_encoder: also put adapters on the CLIP text encoder's attention.
        validation_prompts: prompts rendered (spectrogram PNG + WAV) every ``validate_every``
            steps and at the end, into ``output_dir/validation/step_NNNNNN/``.
        validate_every: steps between validations (``None``: only at the end).
        validation_steps: sampler steps of each validation image.
        checkpoint_every: steps between saves of the training state and weights (``None``:
            only at the end).
        resume: continue from ``output_dir/training_state`` if it exists (same settings
            required; ``steps`` may grow). Without ``resume``, an output folder that holds a
            state is refused.
        device: ``"auto"`` (accelerate's choice: CUDA when available), ``"cpu"`` or
            ``"cuda"``.
        local_files_only: never download the model.
        progress: show a progress bar with the running loss.

    Returns:
        A :class:`TrainingResult`.

    Raises:
        ParameterError: a bad argument, dataset or mismatched resume state.
        ModelLoadError: the model cannot be loaded.
        RiffusionError: a missing optional dependency (the ``train`` extra:
            ``pip install -e ".[train]"``), or a loss that became NaN/inf.
    """
    # ---------------------------------------------------------------- arguments
    rank = check_integer("rank", rank)
    lora_alpha = (
        float(rank) if lora_alpha is None else _check_positive_number("lora_alpha", lora_alpha)
    )
    learning_rate = _check_positive_number("learning_rate", learning_rate)
    lr_warmup_steps = check_integer("lr_warmup_steps", lr_warmup_steps, minimum=0)
    steps = check_integer("steps", steps)
    batch_size = check_integer("batch_size", batch_size)
    gradient_accumulation = check_integer("gradient_accumulation", gradient_accumulation)
    max_grad_norm = _check_positive_number("max_grad_norm", max_grad_norm)
    seed = check_integer("seed", seed, minimum=0)
    validation_steps = check_integer("validation_steps", validation_steps)
    if validate_every is not None:
        validate_every = check_integer("validate_every", validate_every)
    if checkpoint_every is not None:
        checkpoint_every = check_integer("checkpoint_every", checkpoint_every)
    prompts = _check_prompts(validation_prompts)
    if mixed_precision not in _PRECISIONS:
        raise ParameterError(
            f"mixed_precision={mixed_precision!r} must be one of {', '.join(_PRECISIONS)}"
        )
    for name, flag in (
        ("gradient_checkpointing", gradient_checkpointing),
        ("train_text_encoder", train_text_encoder),
        ("resume", resume),
    ):
        if not isinstance(flag, bool):
            raise ParameterError(f"{name}={flag!r} must be True or False")
    if device not in ("auto", "cpu", "cuda"):
        raise ParameterError(
            f"device={device!r} must be 'auto', 'cpu' or 'cuda' (pick the GPU with "
            "CUDA_VISIBLE_DEVICES or `accelerate launch`)"
        )
    if (
        isinstance(target_modules, str)
        or not isinstance(target_modules, Sequence)
        or not target_modules
        or not all(isinstance(name, str) and name for name in target_modules)
    ):
        raise ParameterError(
            f"target_modules={target_modules!r} must be a non-empty list of module names"
        )
    use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device={device!r}: CUDA is not available")
    if mixed_precision == "fp16" and use_cpu:
        raise ParameterError(
            "mixed_precision='fp16' needs a CUDA GPU; use 'bf16' or 'no' on the CPU"
        )
    _require("peft")
    accelerate = _require("accelerate")

    examples = load_examples(dataset)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config = _state_config(
        model=os.fspath(model),
        rank=rank,
        target_modules=list(target_modules),
        lora_alpha=lora_alpha,
        learning_rate=learning_rate,
        lr_warmup_steps=lr_warmup_steps,
        batch_size=batch_size,
        gradient_accumulation=gradient_accumulation,
        max_grad_norm=max_grad_norm,
        mixed_precision=mixed_precision,
        seed=seed,
        train_text_encoder=train_text_encoder,
        num_examples=len(examples),
    )
    state_dir = _find_state(output)
    start_step = 0
    if state_dir is not None and not resume:
        raise ParameterError(
            f"output_dir={str(output)!r} already holds a training state (step "
            f"{_read_state(state_dir)['step']}); pass resume=True to continue it, or use a "
            "new folder"
        )
    if state_dir is not None:
        saved = _read_state(state_dir)
        differences = {
            key: (saved["config"].get(key), value)
            for key, value in config.items()
            if saved["config"].get(key) != value
        }
        if differences:
            described = ", ".join(
                f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in differences.items()
            )
            raise ParameterError(f"cannot resume: the settings differ ({described})")
        start_step = int(saved["step"])
        if start_step > steps:
            raise ParameterError(
                f"steps={steps} is below the saved state's step {start_step}; a resumed run "
                "needs the total number of steps"
            )

    # ---------------------------------------------------------------- models
    from diffusers import DDPMScheduler
    from peft import LoraConfig, inject_adapter_in_model

    from riffusion.diffusion import RiffusionPipeline, resolve_model_folder
    from riffusion.diffusion.loading import load_components

    folder = resolve_model_folder(model, local_files_only=local_files_only)
    parts = load_components(folder, model=os.fspath(model), dtype=torch.float32)
    unet, vae, text_encoder, tokenizer = (
        parts.unet,
        parts.vae,
        parts.text_encoder,
        parts.tokenizer,
    )
    noise_scheduler = DDPMScheduler.from_config(parts.scheduler.config)
    if noise_scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise ParameterError(
            f"model={os.fspath(model)!r}: prediction_type="
            f"{noise_scheduler.config.prediction_type!r} is not supported (epsilon, v_prediction)"
        )

    accelerator = _make_accelerator(accelerate, mixed_precision, use_cpu)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        mixed_precision
    ]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_for(seed, 1))
        unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=lora_alpha,
                init_lora_weights="gaussian",
                target_modules=list(target_modules),
            )
        )
        if train_text_encoder:
            # peft directly: transformers' own add_adapter may demand a newer peft than exists.
            inject_adapter_in_model(
                LoraConfig(
                    r=rank,
                    lora_alpha=lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=list(TEXT_ENCODER_TARGETS),
                ),
                text_encoder,
                adapter_name=_ADAPTER,
            )
    if state_dir is not None:
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        _load_state_file(
            state_dir,
            "unet_lora.safetensors",
            lambda path: set_peft_model_state_dict(unet, load_file(path)),
        )
        if train_text_encoder:
            _load_state_file(
                state_dir,
                "text_encoder_lora.safetensors",
                lambda path: set_peft_model_state_dict(text_encoder, load_file(path)),
            )

    target = accelerator.device
    for module in (unet, vae, text_encoder):
        module.to(target, dtype=weight_dtype)
    trained = [unet, *([text_encoder] if train_text_encoder else [])]
    for module in trained:
        for name, parameter in module.named_parameters():
            if "lora_" in name:
                parameter.data = parameter.data.float()  # adapters train in float32
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    parameters = [p for module in trained for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise RiffusionError("internal: the LoRA adapters have no trainable parameters")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate)
    if state_dir is not None:
        _load_state_file(
            state_dir,
            "optimizer.pt",
            lambda path: optimizer.load_state_dict(
                torch.load(path, map_location="cpu", weights_only=True)
            ),
        )
    prepared = accelerator.prepare(*trained, optimizer)
    optimizer = prepared[-1]
    scaler = getattr(accelerator, "scaler", None)
    if state_dir is not None and scaler is not None and (state_dir / "scaler.pt").is_file():
        _load_state_file(
            state_dir,
            "scaler.pt",
            lambda path: scaler.load_state_dict(torch.load(path, weights_only=True)),
        )

    # A pipeline over the same modules: the library's image encoder and the validation sampler.
    pipeline = RiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=parts.scheduler,
    )
    pipeline.set_progress_bar_config(disable=True)

    # ---------------------------------------------------------------- data
    latents_cache: dict[int, torch.Tensor] = {}
    embedding_cache: dict[str, torch.Tensor] = {}

    def latents_of(index: int) -> torch.Tensor:
        if index not in latents_cache:
            # VAE posterior mean, scaled like the pipeline (deterministic, encoded one by one).
            latents_cache[index] = pipeline.encode_image(examples.image(index))[0].float().cpu()
        return latents_cache[index]

    def token_ids(texts: list[str]) -> torch.Tensor:
        return tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(target)

    def embeddings_of(texts: list[str]) -> torch.Tensor:
        if train_text_encoder:
            return text_encoder(token_ids(texts))[0]
        for text in texts:
            if text not in embedding_cache:
                with torch.no_grad():
                    embedding_cache[text] = text_encoder(token_ids([text]))[0][0]
        return torch.stack([embedding_cache[text] for text in texts])

    order = _Order(len(examples), seed)
    first_size = examples.size(0)
    params = _spectrogram_params(examples)

    # ---------------------------------------------------------------- loop
    log_path = output / LOG_NAME
    rows: list[dict[str, Any]] = _read_log(log_path, start_step) if start_step else []
    elapsed_before = float(rows[-1]["elapsed_s"]) if rows else 0.0
    losses: list[float] = []
    validation_files: list[Path] = []
    started = time.perf_counter()
    _write_args(output, config, steps, prompts, validate_every, checkpoint_every)

    def save(step: int) -> None:
        unwrapped_unet = accelerator.unwrap_model(unet)
        unwrapped_te = accelerator.unwrap_model(text_encoder) if train_text_encoder else None
        _save_state(
            output,
            step=step,
            config=config,
            unet=unwrapped_unet,
            text_encoder=unwrapped_te,
            optimizer=optimizer,
            scaler=scaler,
        )
        _save_weights(output, unwrapped_unet, unwrapped_te)
        _write_log(log_path, rows)

    def validate(step: int) -> None:
        folder = output / "validation" / f"step_{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for module in trained:
            module.eval()
        try:
            for number, prompt in enumerate(prompts):
                with accelerator.autocast():
                    result = pipeline.text_to_image(
                        prompt,
                        seed=seed,
                        num_inference_steps=validation_steps,
                        width=first_size[0],
                        height=first_size[1],
                    )
                validation_files.extend(
                    _save_clip(result.image, params, folder / f"{number:02d}_{_slug(prompt)}")
                )
        finally:
            for module in trained:
                module.train()

    from tqdm.auto import tqdm

    bar = tqdm(
        total=steps, initial=start_step, desc="train-lora", unit="step", disable=not progress
    )
    for module in trained:
        module.train()
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)
    try:
        for step in range(start_step, steps):
            learning = (
                learning_rate * min(1.0, (step + 1) / lr_warmup_steps)
                if (lr_warmup_steps)
                else learning_rate
            )
            for group in optimizer.param_groups:
                group["lr"] = learning
            step_loss = 0.0
            for micro in range(gradient_accumulation):
                first = (step * gradient_accumulation + micro) * batch_size
                indices = [order[first + j] for j in range(batch_size)]
                latents = torch.stack([latents_of(i) for i in indices]).to(target, weight_dtype)
                generator = torch.Generator().manual_seed(_seed_for(seed, 2, step, micro))
                noise = torch.randn(latents.shape, generator=generator).to(target, weight_dtype)
                timesteps = torch.randint(0, num_timesteps, (batch_size,), generator=generator).to(
                    target
                )
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                goal = training_target(noise_scheduler, latents, noise, timesteps)
                with accelerator.autocast():
                    embeddings = embeddings_of([examples.texts[i] for i in indices])
                    prediction = unet(noisy, timesteps, encoder_hidden_states=embeddings).sample
                loss = torch.nn.functional.mse_loss(prediction.float(), goal.float())
                if not torch.isfinite(loss):
                    raise RiffusionError(
                        f"the loss became {float(loss)} at step {step + 1}; lower learning_rate="
                        f"{learning_rate} or use mixed_precision='no'"
                    )
                accelerator.backward(loss / gradient_accumulation)
                step_loss += float(loss.detach()) / gradient_accumulation
            accelerator.clip_grad_norm_(parameters, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            losses.append(step_loss)
            rows.append(
                {
                    "step": done,
                    "loss": f"{step_loss:.6g}",
                    "learning_rate": f"{learning:.6g}",
                    "elapsed_s": f"{elapsed_before + time.perf_counter() - started:.3f}",
                }
            )
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
            if checkpoint_every and done % checkpoint_every == 0 and done < steps:
                save(done)
            if prompts and validate_every and done % validate_every == 0 and done < steps:
                validate(done)
    finally:
        bar.close()

    final = max(start_step, steps)
    save(final)
    if prompts:
        validate(final)
    plot = _plot_loss(output / PLOT_NAME, rows) if rows else None
    return TrainingResult(
        output_dir=output,
        weights=output / LORA_WEIGHT_NAME,
        log=log_path,
        loss_plot=plot,
        step=final,
        start_step=start_step,
        losses=tuple(losses),
        validation=tuple(validation_files),
    )


def _spectrogram_params(examples: ImageTextExamples) -> Any:
    """The spectrogram parameters in the first image's EXIF (Riffusion's when absent)."""
    from riffusion.image import load_image, params_from_image

    return params_from_image(load_image(examples.images[0]))


def _save_clip(image: Any, params: Any, stem: Path) -> list[Path]:
    """The validation image as a spectrogram PNG (with EXIF) and its decoded audio."""
    from riffusion.convert import image_to_audio
    from riffusion.image import save_image

    exif = image.getexif()
    for tag, value in params.to_exif().items():
        exif[int(tag)] = value
    png = save_image(image, stem.with_suffix(".png"))
    wav = image_to_audio(image, params).save(stem.with_suffix(".wav"))
    return [png, wav]


def _write_args(
    output: Path,
    config: dict[str, Any],
    steps: int,
    prompts: tuple[str, ...],
    validate_every: int | None,
    checkpoint_every: int | None,
) -> None:
    arguments = {
        **config,
        "steps": steps,
        "validation_prompts": list(prompts),
        "validate_every": validate_every,
        "checkpoint_every": checkpoint_every,
    }
    with atomic_output(output / "training_args.json") as temporary:
        temporary.write_text(json.dumps(arguments, indent=1, sort_keys=True) + "\n")
