"""Unit tests of the diffusion layer's pure parts: interpolation math, prompt inputs, prompt
weighting, masks, devices, schedulers by name, periodic padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from riffusion.defaults import SCHEDULER_NAMES
from riffusion.errors import DeviceError, ParameterError
from riffusion.inputs import PromptInput
from riffusion.models.sd1 import (
    cpu_generator,
    is_periodic,
    lerp,
    make_scheduler,
    mask_to_latent,
    parse_prompt_weights,
    periodic_width,
    randn,
    resolve_device,
    slerp,
    time_range_mask,
)
from riffusion.models.sd1.prompt_weighting import pad_chunks, tokenize_weighted, weighted_embeddings

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

try:
    from diffusion_fixtures import _one_torch_thread, tiny_model
except ImportError:  # tests/ imported as a package
    from tests.diffusion_fixtures import _one_torch_thread, tiny_model  # noqa: F401


# ---------------------------------------------------------------------------- slerp / lerp


def test_slerp_endpoints_are_exact():
    g = cpu_generator(1)
    a, b = torch.randn(4, 8, 8, generator=g), torch.randn(4, 8, 8, generator=g)
    assert torch.equal(slerp(0.0, a, b), a)
    assert torch.equal(slerp(1.0, a, b), b)


def test_slerp_keeps_norm_of_equal_norm_inputs():
    g = cpu_generator(2)
    a = torch.randn(1, 4, 64, 64, generator=g)
    b = torch.randn(1, 4, 64, 64, generator=g)
    b = b * (a.norm() / b.norm())
    for alpha in (0.1, 0.25, 0.5, 0.9):
        mixed = slerp(alpha, a, b)
        assert mixed.shape == a.shape and mixed.dtype == a.dtype
        assert float(mixed.norm()) == pytest.approx(float(a.norm()), rel=1e-5)
    # lerp of independent noise shrinks the norm by ~1/sqrt(2) at the midpoint: slerp must not.
    assert float(lerp(0.5, a, b).norm()) < 0.75 * float(a.norm())


def test_slerp_orthogonal_midpoint():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    mid = slerp(0.5, e1, e2)
    assert torch.allclose(mid, torch.tensor([1.0, 1.0]) / math.sqrt(2), atol=1e-7)
    third = slerp(1 / 3, e1, e2)  # 30 degrees along the arc
    assert torch.allclose(third, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))


def test_slerp_nearly_parallel_falls_back_to_lerp():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([1.0, 1e-4, 0.0])
    assert torch.allclose(slerp(0.3, a, b), lerp(0.3, a, b))
    zero = torch.zeros(3)
    assert torch.allclose(slerp(0.5, zero, a), 0.5 * a)


def test_slerp_and_lerp_reject_bad_inputs():
    a = torch.ones(3)
    with pytest.raises(ParameterError, match=r"alpha=1\.5 must be .*\[0, 1\]"):
        slerp(1.5, a, a)
    with pytest.raises(ParameterError, match="alpha=nan"):
        lerp(float("nan"), 0.0, 1.0)
    with pytest.raises(ParameterError, match="shape"):
        slerp(0.5, a, torch.ones(4))
    with pytest.raises(ParameterError, match="NaN"):
        slerp(0.5, a, torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(ParameterError, match="floating-point tensor"):
        slerp(0.5, [1.0], a)


def test_lerp_numbers_and_endpoints():
    assert lerp(0.25, 2.0, 6.0) == pytest.approx(3.0)
    assert lerp(0.0, 2.0, 6.0) == 2.0 and lerp(1.0, 2.0, 6.0) == 6.0
    a, b = torch.randn(5), torch.randn(5)
    assert torch.equal(lerp(0.0, a, b), a) and torch.equal(lerp(1.0, a, b), b)


# ---------------------------------------------------------------------------- PromptInput


def test_prompt_input_defaults_and_json_round_trip():
    p = PromptInput(prompt="church bells")
    assert (p.seed, p.negative_prompt, p.denoising, p.guidance) == (0, None, 0.75, 7.0)
    data = {
        "prompt": "jazz",
        "seed": 42,
        "negative_prompt": "noise",
        "denoising": 0.5,
        "guidance": 3,
    }
    q = PromptInput.from_dict(data)
    assert q.guidance == 3.0 and isinstance(q.guidance, float)
    assert q.to_dict() == {**data, "guidance": 3.0}
    assert PromptInput.from_dict(q.to_dict()) == q
    with pytest.raises(AttributeError):
        q.seed = 1  # frozen


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"prompt": 3}, "prompt=3 must be a str"),
        ({"prompt": "x", "seed": -1}, r"seed=-1 must be an int in \[0, 2\*\*63\)"),
        ({"prompt": "x", "seed": 2**63}, "seed="),
        ({"prompt": "x", "seed": 1.0}, "seed=1.0"),
        ({"prompt": "x", "seed": True}, "seed=True"),
        ({"prompt": "x", "denoising": 1.2}, r"denoising=1\.2 must be .*\[0, 1\]"),
        ({"prompt": "x", "guidance": -1}, "guidance=-1 must be a finite number >= 0"),
        ({"prompt": "x", "guidance": float("inf")}, "guidance=inf"),
        ({"prompt": "x", "negative_prompt": 5}, "negative_prompt=5"),
    ],
)
def test_prompt_input_validation(kwargs, pattern):
    with pytest.raises(ParameterError, match=pattern):
        PromptInput(**kwargs)


def test_prompt_input_from_dict_rejects_unknown_and_missing_keys():
    with pytest.raises(ParameterError, match=r"unknown keys \['strength'\]"):
        PromptInput.from_dict({"prompt": "x", "strength": 0.5})
    with pytest.raises(ParameterError, match="'prompt'"):
        PromptInput.from_dict({"seed": 1})
    with pytest.raises(ParameterError, match="mapping"):
        PromptInput.from_dict(["prompt"])


# ---------------------------------------------------------------------------- prompt weights


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("a calm piano", [("a calm piano", 1.0)]),
        ("a (calm) piano", [("a ", 1.0), ("calm", 1.1), (" piano", 1.0)]),
        ("a [calm] piano", [("a ", 1.0), ("calm", 1 / 1.1), (" piano", 1.0)]),
        ("(calm:1.3) piano", [("calm", 1.3), (" piano", 1.0)]),
        ("((calm))", [("calm", 1.1 * 1.1)]),
        ("[(calm)]", [("calm", 1.0)]),
        ("(a (b) c:2)", [("a ", 2.0), ("b", 2.2), (" c", 2.0)]),
        ("(word:0.5) (other: 1.5 )", [("word", 0.5), (" ", 1.0), ("other", 1.5)]),
        (r"\(not weighted\) \[x\]", [("(not weighted) [x]", 1.0)]),
        ("smiley :)", [("smiley :)", 1.0)]),
        ("a (b c", [("a ", 1.0), ("b c", 1.1)]),
        ("(a:b)", [("a:b", 1.1)]),
        ("(x:1.0) y", [("x y", 1.0)]),
    ],
)
def test_parse_prompt_weights(text, expected):
    got = parse_prompt_weights(text)
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_parse_prompt_weights_rejects_non_str():
    with pytest.raises(ParameterError, match="prompt=None must be a str"):
        parse_prompt_weights(None)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(tiny_model, subfolder="tokenizer")


def test_tokenize_matches_plain_clip_encoding(tokenizer):
    tokens = tokenize_weighted(tokenizer, "the thing is ringing")
    plain = tokenizer("the thing is ringing", padding="max_length", max_length=77).input_ids
    assert tokens.num_chunks == 1
    assert tokens.input_ids[0].tolist() == plain
    assert torch.all(tokens.weights == 1.0)


def test_tokenize_weights_follow_tokens(tokenizer):
    tokens = tokenize_weighted(tokenizer, "a (bc:1.5) d")
    n = tokens.num_tokens
    assert n == 4  # "a", "b", "c</w>", "d": the tiny vocabulary has no "bc" merge
    assert tokens.weights[0, 1 : n + 1].tolist() == pytest.approx([1.0, 1.5, 1.5, 1.0])
    assert tokens.input_ids[0, 0] == tokenizer.bos_token_id
    assert tokens.input_ids[0, n + 1] == tokenizer.eos_token_id


def test_long_prompts_are_chunked_and_capped(tokenizer):
    words = " ".join(["q"] * 100)  # one token per word with this vocabulary
    tokens = tokenize_weighted(tokenizer, words)
    assert tokens.num_tokens == 100 and tokens.num_chunks == 2
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert tokens.input_ids[:, 0].tolist() == [bos, bos]
    assert tokens.input_ids[0, 76] == eos and tokens.input_ids[1, 26] == eos
    padded = pad_chunks(tokenize_weighted(tokenizer, ""), 2, tokenizer=tokenizer)
    assert padded.num_chunks == 2 and padded.input_ids[1, :2].tolist() == [bos, eos]
    assert pad_chunks(tokens, 1, tokenizer=tokenizer).num_chunks == 1
    assert tokenize_weighted(tokenizer, " ".join(["q"] * 225)).num_chunks == 3
    with pytest.raises(ParameterError, match="prompt is 226 tokens long; at most 225"):
        tokenize_weighted(tokenizer, " ".join(["q"] * 226))


def test_weighted_embeddings_keep_mean_and_emphasise():
    g = cpu_generator(3)
    emb = torch.randn(1, 77, 32, generator=g) + 0.5
    weights = torch.ones(1, 77)
    assert weighted_embeddings(emb, weights) is emb  # all ones: untouched
    weights[0, 3] = 2.0
    out = weighted_embeddings(emb, weights)
    assert float(out.mean()) == pytest.approx(float(emb.mean()), rel=1e-5)
    ratio = out[0, 3] / out[0, 4]
    assert torch.allclose(ratio, 2.0 * emb[0, 3] / emb[0, 4], rtol=1e-4)
    # A zero-mean embedding cannot be mean-renormalised: no blow-up, no NaN.
    centred = emb - emb.mean()
    out = weighted_embeddings(centred, weights)
    assert torch.isfinite(out).all() and float(out.abs().max()) < 10 * float(centred.abs().max())


# ---------------------------------------------------------------------------- masks


def test_time_range_mask_columns():
    mask = time_range_mask(width=64, height=16, keep_start_px=8, keep_end_px=40)
    assert mask.mode == "L" and mask.size == (64, 16)
    a = np.asarray(mask)
    assert (a[:, 8:40] == 0).all() and (a[:, :8] == 255).all() and (a[:, 40:] == 255).all()
    empty = np.asarray(time_range_mask(width=16, height=8, keep_start_px=5, keep_end_px=5))
    assert (empty == 255).all()


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"width": 0, "height": 8, "keep_start_px": 0, "keep_end_px": 0}, "width=0"),
        ({"width": 64, "height": 8, "keep_start_px": 10, "keep_end_px": 5}, "keep_start_px=10"),
        ({"width": 64, "height": 8, "keep_start_px": 0, "keep_end_px": 65}, "width=64"),
        ({"width": 64, "height": 8, "keep_start_px": 0.5, "keep_end_px": 8}, "keep_start_px=0.5"),
    ],
)
def test_time_range_mask_rejects_bad_ranges(kwargs, pattern):
    with pytest.raises(ParameterError, match=pattern):
        time_range_mask(**kwargs)


def test_mask_to_latent_box_average():
    mask = time_range_mask(width=64, height=32, keep_start_px=0, keep_end_px=20)
    latent = mask_to_latent(mask.convert("RGB"), latent_height=4, latent_width=8)
    assert latent.shape == (1, 1, 4, 8)
    row = latent[0, 0, 0].tolist()
    # columns 0-15 kept, 16-19 kept (half of cell 2), 20+ regenerated
    assert row == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0], abs=1e-6)
    with pytest.raises(ParameterError, match="mask_image=ndarray"):
        mask_to_latent(np.zeros((8, 8)), latent_height=1, latent_width=1)


# ---------------------------------------------------------------------------- devices


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == (torch.device("cpu"), torch.float32)
    assert resolve_device(torch.device("cpu"), "bf16") == (torch.device("cpu"), torch.bfloat16)
    device, dtype = resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda" and dtype == torch.float16
    elif not torch.backends.mps.is_available():
        assert (device, dtype) == (torch.device("cpu"), torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:3"])
def test_unavailable_cuda_raises(name):
    with pytest.raises(DeviceError, match=f"device='{name}' was requested but CUDA is not"):
        resolve_device(name)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_unavailable_mps_raises():
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize(
    ("device", "dtype", "pattern"),
    [
        ("gpu", None, "device='gpu' is not a valid device"),
        (3, None, "device=3 must be"),
        ("meta", None, "unsupported type 'meta'"),
        ("cpu", "int8", "torch_dtype='int8' is not a supported dtype"),
        ("cpu", torch.int64, "torch_dtype=torch.int64 is not supported"),
    ],
)
def test_resolve_device_rejects_bad_requests(device, dtype, pattern):
    with pytest.raises(DeviceError, match=pattern):
        resolve_device(device, dtype)


def test_noise_is_drawn_on_cpu_and_reproducible():
    a = randn((1, 4, 8, 8), generator=cpu_generator(7), dtype=torch.float16)
    b = randn((1, 4, 8, 8), generator=cpu_generator(7))
    assert a.dtype == torch.float16 and torch.equal(a, b.half())
    assert not torch.equal(b, randn((1, 4, 8, 8), generator=cpu_generator(8)))
    with pytest.raises(ParameterError, match="seed=-3"):
        cpu_generator(-3)


# ---------------------------------------------------------------------------- schedulers


def test_make_scheduler_by_name_keeps_schedule():
    from diffusers import DPMSolverMultistepScheduler, PNDMScheduler, SchedulerMixin

    from riffusion.testing import TINY_SCHEDULER_CONFIG

    base = PNDMScheduler(**TINY_SCHEDULER_CONFIG)
    dpm = make_scheduler("dpm++", base.config)
    assert isinstance(dpm, DPMSolverMultistepScheduler)
    assert dpm.config.algorithm_type == "dpmsolver++"
    assert dpm.config.beta_end == 0.012 and dpm.config.beta_schedule == "scaled_linear"
    assert "default" in SCHEDULER_NAMES and "euler_ancestral" in SCHEDULER_NAMES
    # Every name recipes and the CLI accept (riffusion.defaults, no diffusers) builds here.
    for name in set(SCHEDULER_NAMES) - {"default", "lms"}:  # lms needs scipy
        assert isinstance(make_scheduler(name, base.config), SchedulerMixin)
    with pytest.raises(ParameterError, match=r"scheduler='heun' is not a known scheduler.*'ddim'"):
        make_scheduler("heun", base.config)


# ---------------------------------------------------------------------------- periodic


def test_periodic_conv_is_circular_in_width_only_and_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1))
    x = torch.randn(1, 2, 6, 10)
    before = model(x)
    with periodic_width(model):
        assert is_periodic(model)
        y = model(x)
        # Circular in width: shifting the input along x shifts the output exactly.
        shifted = model(torch.roll(x, shifts=3, dims=3))
        assert torch.allclose(shifted, torch.roll(y, shifts=3, dims=3), atol=1e-6)
        # Not circular in height: a vertical roll is not equivariant at the borders.
        rolled_h = model(torch.roll(x, shifts=2, dims=2))
        assert not torch.allclose(rolled_h, torch.roll(y, shifts=2, dims=2), atol=1e-3)
    assert y.shape == before.shape
    # Interior columns are unaffected by the padding mode.
    assert torch.allclose(y[..., 1:-1], before[..., 1:-1], atol=1e-6)
    assert not torch.allclose(y[..., 0], before[..., 0])
    assert not is_periodic(model)
    assert "forward" not in vars(model[0])
    assert torch.equal(model(x), before)


def test_periodic_restores_after_an_error():
    model = nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(RuntimeError, match="boom"), periodic_width(model):
        raise RuntimeError("boom")
    assert not is_periodic(model)
    with periodic_width(model, enabled=False):
        assert not is_periodic(model)


def test_few_step_samplers_by_name_keep_the_checkpoints_noise_schedule():
    from diffusers import (
        DPMSolverMultistepScheduler,
        LCMScheduler,
        PNDMScheduler,
        TCDScheduler,
        UniPCMultistepScheduler,
    )

    from riffusion.testing import TINY_SCHEDULER_CONFIG

    base = PNDMScheduler(**TINY_SCHEDULER_CONFIG)
    expected = {
        "unipc": UniPCMultistepScheduler,
        "dpm++2m-karras": DPMSolverMultistepScheduler,
        "lcm": LCMScheduler,
        "tcd": TCDScheduler,
    }
    for name, cls in expected.items():
        built = make_scheduler(name, base.config)
        assert type(built) is cls, name
        # The checkpoint's noise schedule carries over; only the sampling algorithm changes.
        assert built.config.beta_start == base.config.beta_start
        assert built.config.beta_end == base.config.beta_end
        assert built.config.beta_schedule == base.config.beta_schedule
    karras = make_scheduler("dpm++2m-karras", base.config)
    assert karras.config.use_karras_sigmas is True and karras.config.solver_order == 2
    assert karras.config.algorithm_type == "dpmsolver++"
    assert make_scheduler("dpm++", base.config).config.use_karras_sigmas is False
