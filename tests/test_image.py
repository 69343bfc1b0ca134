from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion import ImageFormatError, ParameterError, SpectrogramParams
from riffusion.image import (
    image_to_mel,
    load_image,
    mel_to_image,
    params_from_image,
    save_image,
)
from riffusion.params import ExifTag

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


def riffusion_reference_encoding(mel: np.ndarray, power: float) -> np.ndarray:
    """Riffusion's image encoding written out step by step in numpy (float32, truncating)."""
    data = mel.astype(np.float32) / np.max(mel)
    data = np.power(data, power)
    data = data * 255
    data = 255 - data
    data = data.astype(np.uint8)
    if data.shape[0] == 1:
        rgb = np.stack([data[0]] * 3, axis=-1)
    else:
        rgb = np.stack([np.zeros_like(data[0]), data[0], data[1]], axis=-1)
    return rgb[::-1]


def test_hand_computed_example():
    # Magnitudes chosen so that (m / max) ** 0.25 is exact in binary: 1, 1/2, 1/4, 1/8, 0.
    params = SpectrogramParams(num_frequencies=5)
    mel = torch.tensor([[[4096.0], [256.0], [16.0], [1.0], [0.0]]])  # (1, 5 bins, 1 frame)
    image = mel_to_image(mel, params)
    assert image.mode == "RGB" and image.size == (1, 5)
    pixels = np.asarray(image)[:, 0, 0]
    # 255 - 255 * [1, .5, .25, .125, 0] = [0, 127.5, 191.25, 223.125, 255], truncated, then the
    # rows are flipped so that the lowest bin (the loudest here) is the bottom row.
    assert pixels.tolist() == [255, 223, 191, 127, 0]
    assert np.asarray(image)[..., 0].tolist() == np.asarray(image)[..., 2].tolist()  # grey


def test_matches_riffusion_encoding_within_one_level():
    params = SpectrogramParams(num_frequencies=64)
    generator = torch.Generator().manual_seed(0)
    mel = torch.rand(1, 64, 200, generator=generator) ** 4 * 1e7
    ours = np.asarray(mel_to_image(mel, params)).astype(int)
    theirs = riffusion_reference_encoding(mel.numpy(), 0.25).astype(int)
    assert np.abs(ours - theirs).max() <= 1
    assert (ours == theirs).mean() > 0.999


def test_stereo_layout_r_zero_g_left_b_right():
    params = SpectrogramParams(num_frequencies=8, stereo=True)
    left = torch.zeros(8, 3)
    left[0] = 100.0  # loud lowest bin on the left only
    right = torch.full((8, 3), 100.0)
    image = np.asarray(mel_to_image(torch.stack([left, right]), params))
    assert (image[..., 0] == 0).all()
    assert image[-1, :, 1].tolist() == [0, 0, 0]  # bottom row = lowest bin, loud = dark
    assert (image[:-1, :, 1] == 255).all()
    assert (image[..., 2] == 0).all()
    decoded = image_to_mel(Image.fromarray(image), params)
    assert decoded.shape == (2, 8, 3)
    assert torch.equal(decoded[0] > 0, left > 0)


def test_silence_encodes_white_and_decodes_to_zero():
    params = SpectrogramParams(num_frequencies=16)
    image = mel_to_image(torch.zeros(1, 16, 10), params)
    assert (np.asarray(image) == 255).all()
    assert image.getexif()[int(ExifTag.MAX_VALUE)] == 0.0
    decoded = image_to_mel(image, params)
    assert torch.count_nonzero(decoded) == 0 and torch.isfinite(decoded).all()


def test_decode_inverts_encode_within_quantisation():
    params = SpectrogramParams(num_frequencies=32)
    mel = torch.rand(1, 32, 50, generator=torch.Generator().manual_seed(1)) + 0.01
    image = mel_to_image(mel, params)
    decoded = image_to_mel(image, params.replace(max_value=float(mel.max())))
    # One grey level of error in the 0.25-power domain: |Δ(x^0.25)| <= 1/255.
    error = (decoded / mel.max()) ** 0.25 - (mel / mel.max()) ** 0.25
    assert error.abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "RGB"])
def test_decode_reads_any_mode(mode):
    params = SpectrogramParams(num_frequencies=16)
    mel = torch.rand(1, 16, 20, generator=torch.Generator().manual_seed(2))
    image = mel_to_image(mel, params)
    expected = image_to_mel(image, params)
    # An adaptive palette holds every grey level exactly (the default web palette would not).
    converted = (
        image.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else image.convert(mode)
    )
    assert torch.equal(image_to_mel(converted, params), expected)


def test_exif_round_trip_through_png(tmp_path):
    params = SpectrogramParams(num_frequencies=16, stereo=True, sample_rate=32000)
    mel = torch.rand(2, 16, 20, generator=torch.Generator().manual_seed(3)) * 5
    path = save_image(mel_to_image(mel, params), tmp_path / "spec.png")
    loaded = load_image(path)
    assert params_from_image(loaded) == params
    assert float(loaded.getexif()[int(ExifTag.MAX_VALUE)]) == pytest.approx(float(mel.max()))
    assert np.array_equal(np.asarray(loaded), np.asarray(mel_to_image(mel, params)))


def test_params_from_image_without_exif_are_defaults():
    assert params_from_image(Image.new("RGB", (4, 512))) == SpectrogramParams()


def test_bad_images_raise_clear_errors(tmp_path):
    params = SpectrogramParams()
    with pytest.raises(ImageFormatError, match="height 256 must equal num_frequencies=512"):
        image_to_mel(Image.new("RGB", (512, 256)), params)
    with pytest.raises(ImageFormatError, match="empty"):
        image_to_mel(Image.new("RGB", (0, 512)), params)
    with pytest.raises(ImageFormatError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(ImageFormatError, match="cannot read image"):
        load_image(corrupt)
    with pytest.raises(ParameterError):
        image_to_mel(np.zeros((512, 512)), params)  # type: ignore[arg-type]


def test_bad_mel_raises():
    params = SpectrogramParams(num_frequencies=8)
    with pytest.raises(ParameterError, match="channel"):
        mel_to_image(torch.ones(2, 8, 4), params)  # stereo data, mono params
    with pytest.raises(ParameterError, match="bins"):
        mel_to_image(torch.ones(1, 9, 4), params)
    with pytest.raises(ParameterError, match="non-negative"):
        mel_to_image(torch.full((1, 8, 4), float("nan")), params)
    with pytest.raises(ParameterError, match="zero width"):
        mel_to_image(torch.ones(1, 8, 0), params)


def test_failed_save_leaves_no_file(tmp_path):
    image = Image.new("RGB", (4, 4))
    with pytest.raises(ImageFormatError):
        save_image(image, tmp_path / "spec.unknown")
    assert list(tmp_path.iterdir()) == []
