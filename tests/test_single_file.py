"""Single-file (original Stable Diffusion layout) checkpoints load offline and match the folder.

``riffusion.testing.make_tiny_single_file`` writes the tiny diffusers model in the CompVis key
layout; diffusers' own converter (behind ``RiffusionPipeline.from_single_file``) must map it back
to exactly the folder's weights, and the two pipelines must generate identical pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from riffusion import ParameterError
from riffusion.models.sd1 import RiffusionPipeline
from riffusion.riffuser import Riffuser
from riffusion.testing import SD15_ARCHITECTURE, make_tiny_model, make_tiny_single_file
from tests.diffusion_fixtures import _one_torch_thread, tiny_model_dir  # noqa: F401


@pytest.fixture(scope="module")
def single_file(tmp_path_factory):
    return make_tiny_single_file(
        tiny_model_dir(), tmp_path_factory.mktemp("single") / "tiny.safetensors"
    )


@pytest.fixture(scope="module")
def folder_pipe():
    pipe = RiffusionPipeline.from_pretrained(tiny_model_dir(), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _assert_same_weights(a, b):
    for name in ("unet", "vae", "text_encoder"):
        left, right = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert left.keys() == right.keys(), name
        for key in left:
            assert left[key].dtype == right[key].dtype, f"{name}.{key}"
            assert torch.equal(left[key], right[key]), f"{name}.{key}"


def test_file_has_the_original_layout(single_file):
    from safetensors.torch import load_file

    keys = set(load_file(str(single_file)))
    prefixes = {key.split(".")[0] for key in keys}
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    # Spot checks of the CompVis names: the cross-attention up level's upsampler sits in slot 2,
    # the VAE decoder levels are numbered in reverse, ResNets use in_layers / nin_shortcut.
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in keys
    assert "model.diffusion_model.input_blocks.2.0.op.weight" in keys
    assert "model.diffusion_model.input_blocks.1.0.in_layers.2.weight" in keys
    assert "model.diffusion_model.input_blocks.3.0.skip_connection.weight" in keys
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in keys
    assert "first_stage_model.encoder.down.2.block.0.nin_shortcut.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys


def test_single_file_loads_the_same_model(single_file, folder_pipe):
    loaded = RiffusionPipeline.from_single_file(
        single_file, config=tiny_model_dir(), device="cpu", local_files_only=True
    )
    loaded.set_progress_bar_config(disable=True)
    _assert_same_weights(loaded, folder_pipe)
    assert type(loaded.scheduler) is type(folder_pipe.scheduler)
    assert dict(loaded.scheduler.config) == dict(folder_pipe.scheduler.config)

    kwargs = dict(seed=3, num_inference_steps=2, width=64, height=64)
    from_file = loaded.text_to_image("lofi piano", **kwargs).image
    from_folder = folder_pipe.text_to_image("lofi piano", **kwargs).image
    pixels = np.asarray(from_file)
    assert pixels.std() > 1.0  # a real image, not a constant
    np.testing.assert_array_equal(pixels, np.asarray(from_folder))


def test_riffuser_from_single_file(single_file, folder_pipe):
    riffuser = Riffuser.from_single_file(
        single_file, config=tiny_model_dir(), device="cpu", local_files_only=True
    )
    assert riffuser.model == str(single_file.resolve())
    _assert_same_weights(riffuser.pipeline, folder_pipe)


def test_make_tiny_single_file_errors(tmp_path):
    with pytest.raises(ParameterError, match=r"\.safetensors"):
        make_tiny_single_file(tiny_model_dir(), tmp_path / "tiny.ckpt")
    with pytest.raises(ParameterError, match="unet/diffusion_pytorch_model.safetensors"):
        make_tiny_single_file(tmp_path, tmp_path / "tiny.safetensors")


def test_sd15_shaped_architecture_round_trips(tmp_path):
    """The SD 1.5 block structure (two layers per level, four levels, cross-attention in the
    first three, a VAE mid-block attention) at tiny widths: diffusers' converter gives back
    exactly the weights that were written."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = make_tiny_model(tmp_path / "sd15-shaped", seed=1)
    unet_shape = dict(SD15_ARCHITECTURE["unet"])
    unet_shape.update(block_out_channels=(8, 8, 16, 16), cross_attention_dim=32, norm_num_groups=4)
    vae_shape = dict(SD15_ARCHITECTURE["vae"])
    vae_shape.update(block_out_channels=(4, 4, 8, 8), norm_num_groups=4)
    torch.manual_seed(1)
    UNet2DConditionModel(**unet_shape).save_pretrained(folder / "unet")
    AutoencoderKL(**vae_shape).save_pretrained(folder / "vae")
    single = make_tiny_single_file(folder, tmp_path / "sd15-shaped.safetensors")

    from safetensors.torch import load_file

    tensors = load_file(str(single))
    # diffusers' marker of an SD 1.x checkpoint; the VAE attention as 1x1 convolutions (ldm).
    assert "model.diffusion_model.output_blocks.11.0.skip_connection.weight" in tensors
    assert tensors["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (8, 8, 1, 1)

    loaded = RiffusionPipeline.from_single_file(
        single, config=folder, device="cpu", local_files_only=True
    )
    plain = RiffusionPipeline.from_pretrained(folder, device="cpu")
    _assert_same_weights(loaded, plain)
