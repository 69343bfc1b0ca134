"""Pins for riffusion.image: hand-computed pixels and magnitudes, refused inputs, size limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from riffusion import ImageFormatError, SpectrogramParams
from riffusion.image import (
    check_image_size,
    image_to_mel,
    load_image,
    mel_to_image,
    params_from_image,
    save_image,
    to_rgb_array,
)
from riffusion.params import ExifTag
from tests.errors import assert_refused, refused

# Compares floats that pass through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics


# ------------------------------------------------------------------------------ mel_to_image
def test_encoding_with_power_one_half_by_hand():
    params = SpectrogramParams(num_frequencies=4, power_for_image=0.5)
    # (m / 100) ** 0.5 = [1, 0.5, 0.3, 0]: 255 − 255·x = [0, 127.5, 178.5, 255] → truncated.
    mel = np.array([[[100.0, 0.0], [25.0, 0.0], [9.0, 0.0], [0.0, 0.0]]], dtype=np.float64)
    image = mel_to_image(mel, params)
    assert image.mode == "RGB" and image.size == (2, 4)
    pixels = np.asarray(image)
    # Row 0 of the image is the highest bin.
    assert pixels[:, 0, 0].tolist() == [255, 178, 127, 0]
    assert pixels[:, 1, 0].tolist() == [255, 255, 255, 255]
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    exif = image.getexif()
    assert exif[int(ExifTag.MAX_VALUE)] == 100.0
    assert {tag: exif[tag] for tag in range(11000, 11080, 5) if tag in exif} == {
        int(tag): value for tag, value in params.to_exif().items()
    }


def test_stereo_encoding_by_hand():
    params = SpectrogramParams(num_frequencies=2, stereo=True)
    # Max over both channels is 16: left (1, 1/16) → x = (1, 1/2); right (0, 1) → x = (0, 1).
    mel = torch.tensor([[[16.0], [1.0]], [[0.0], [16.0]]])
    pixels = np.asarray(mel_to_image(mel, params))
    assert pixels[:, 0].tolist() == [[0, 127, 0], [0, 0, 255]]
    assert mel_to_image(mel, params).getexif()[int(ExifTag.MAX_VALUE)] == 16.0


def test_quiet_input_below_one_is_still_normalised():
    # Max 0.5 (not silence): (m / 0.5) ** 0.25 = (1, 0.5) → pixels (0, 127).
    mel = torch.tensor([[[0.5, 0.03125]]])
    pixels = np.asarray(mel_to_image(mel, SpectrogramParams(num_frequencies=1)))
    assert pixels[0, :, 0].tolist() == [0, 127]


def test_float64_input_is_encoded_in_float32_like_riffusion():
    # (2865.810716044043 / 1e6) ** 0.25 · 255 lands on 59.0 in float32 but 58.99… in float64.
    mel = np.array([[[1e6, 2865.810716044043]]], dtype=np.float64)
    pixels = np.asarray(mel_to_image(mel, SpectrogramParams(num_frequencies=1)))
    assert pixels[0, :, 0].tolist() == [0, 196]


_SHAPE = ("must be (channels, n_mels, frames)", "1 or 2 channels")


@pytest.mark.parametrize(
    ("mel", "params", "named", "expected"),
    [
        (torch.ones(8, 4), SpectrogramParams(num_frequencies=8), "mel of shape (8, 4)", _SHAPE),
        (
            torch.ones(3, 8, 4),
            SpectrogramParams(num_frequencies=8),
            "mel of shape (3, 8, 4)",
            _SHAPE,
        ),
        (
            torch.ones(0, 8, 4),
            SpectrogramParams(num_frequencies=8),
            "mel of shape (0, 8, 4)",
            _SHAPE,
        ),
        (
            torch.ones(2, 8, 4),
            SpectrogramParams(num_frequencies=8),
            "mel has 2 channel(s)",
            "params.stereo=False expects 1",
        ),
        (
            torch.ones(1, 8, 4),
            SpectrogramParams(num_frequencies=8, stereo=True),
            "mel has 1 channel(s)",
            "params.stereo=True expects 2",
        ),
        (
            torch.ones(1, 7, 4),
            SpectrogramParams(num_frequencies=8),
            "mel has 7 bins",
            "params.num_frequencies=8",
        ),
        (torch.ones(1, 8, 0), SpectrogramParams(num_frequencies=8), "mel", "no frames"),
        (
            torch.tensor([[[1.0, -1e-6]]]),
            SpectrogramParams(num_frequencies=1),
            "mel",
            "must be finite and non-negative",
        ),
        (
            torch.tensor([[[1.0, float("inf")]]]),
            SpectrogramParams(num_frequencies=1),
            "mel",
            "must be finite and non-negative",
        ),
    ],
)
def test_bad_mel_is_refused(mel, params, named, expected):
    assert_refused(mel_to_image, mel, params, named=named, phrase=expected)


# ------------------------------------------------------------------------------ image_to_mel
def test_decoding_by_hand_mono_reads_red_bottom_up():
    params = SpectrogramParams(num_frequencies=3, power_for_image=0.5, max_value=1000.0)
    # Pixel p → ((255 − p) / 255) ** 2 · 1000: 0 → 1000, 204 → 40, 255 → 0. Top row = top bin.
    rgb = np.array([[[255, 0, 0]], [[204, 9, 9]], [[0, 255, 255]]], dtype=np.uint8)
    mel = image_to_mel(Image.fromarray(rgb), params)
    assert mel.dtype == torch.float32 and mel.shape == (1, 3, 1)
    np.testing.assert_allclose(mel[0, :, 0].numpy(), [1000.0, 40.0, 0.0], rtol=1e-6)


def test_decoding_by_hand_stereo_reads_green_and_blue():
    params = SpectrogramParams(num_frequencies=2, stereo=True, power_for_image=0.25, max_value=16)
    # ((255 − p) / 255) ** 4 · 16: 0 → 16, 255 → 0, 51 → 0.8 ** 4 · 16 = 6.5536.
    rgb = np.array([[[9, 51, 255]], [[9, 0, 51]]], dtype=np.uint8)
    mel = image_to_mel(Image.fromarray(rgb), params)
    assert mel.shape == (2, 2, 1)
    np.testing.assert_allclose(mel[:, :, 0].numpy(), [[16.0, 6.5536], [6.5536, 0.0]], rtol=1e-6)


def test_image_to_mel_refuses_wrong_types_and_heights():
    params = SpectrogramParams(num_frequencies=4)
    assert_refused(
        image_to_mel,
        np.zeros((4, 4)),
        params,
        named="image",
        phrase=("must be a PIL.Image.Image", "got ndarray"),
    )
    assert_refused(
        image_to_mel,
        Image.new("L", (2, 4)),
        {"stereo": False},
        named="params",
        phrase=("must be a SpectrogramParams", "got dict"),
    )
    assert_refused(
        image_to_mel,
        Image.new("L", (2, 5)),
        params,
        error=ImageFormatError,
        named="image height 5",
        phrase="must equal num_frequencies=4",
    )
    assert_refused(
        image_to_mel,
        Image.new("L", (0, 4)),
        params,
        error=ImageFormatError,
        named="image of size 0×4",
        phrase="is empty",
    )


# -------------------------------------------------------------------------- check_image_size
def test_size_limits_are_inclusive():
    check_image_size(Image.new("1", (65_536, 1)))
    check_image_size(Image.new("1", (1, 2048)))
    for size, expected in [
        ((65_537, 1), "exceeds the limit of 65536×2048 pixels"),
        ((1, 2049), "exceeds the limit of 65536×2048 pixels"),
        ((3, 0), "is empty"),
        ((0, 3), "is empty"),
    ]:
        assert_refused(
            check_image_size,
            Image.new("1", size),
            error=ImageFormatError,
            named=f"image of size {size[0]}×{size[1]}",
            phrase=expected,
        )


# ------------------------------------------------------------------------------ to_rgb_array
def _grey(array: np.ndarray) -> list[int]:
    assert array.dtype == np.uint8 and array.shape[-1] == 3
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    return array[..., 0].ravel().tolist()


def test_sixteen_bit_grey_is_scaled_and_rounded():
    values = np.array([[0, 128, 129, 385, 386, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    # v / 257 rounded: 0, 0.498, 0.502, 1.498, 1.502, 255.
    assert _grey(to_rgb_array(image)) == [0, 0, 1, 1, 2, 255]
    assert to_rgb_array(image).shape == (1, 6, 3)
    # I;16 is always 16-bit, even when every value is small.
    small = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint16))
    assert _grey(to_rgb_array(small)) == [0, 0, 1]


def test_mode_i_is_eight_bit_unless_it_exceeds_255():
    eight = Image.fromarray(np.array([[-5, 0, 100, 255]], dtype=np.int32), mode="I")
    assert _grey(to_rgb_array(eight)) == [0, 0, 100, 255]
    sixteen = Image.fromarray(np.array([[-600, 256, 514, 65535, 70000]], dtype=np.int32), mode="I")
    assert _grey(to_rgb_array(sixteen)) == [0, 1, 2, 255, 255]
    # 256 is already 16-bit: 256 / 257 rounds to 1 (not clipped to 255).
    just_over = Image.fromarray(np.array([[0, 256]], dtype=np.int32), mode="I")
    assert _grey(to_rgb_array(just_over)) == [0, 1]
    empty = Image.new("I", (0, 3))
    assert to_rgb_array(empty).shape == (3, 0, 3)


def test_mode_f_is_rounded_and_clipped():
    values = np.array([[-3.0, 0.4, 0.6, 254.5, 300.0]], dtype=np.float32)
    assert _grey(to_rgb_array(Image.fromarray(values, mode="F"))) == [0, 0, 1, 254, 255]
    bad = Image.fromarray(np.array([[1.0, np.nan]], dtype=np.float32), mode="F")
    assert_refused(
        to_rgb_array,
        bad,
        error=ImageFormatError,
        named="image in mode 'F'",
        phrase="NaN or infinite",
    )


def test_alpha_modes_drop_alpha():
    la = Image.fromarray(np.array([[[100, 0], [200, 255]]], dtype=np.uint8), mode="LA")
    assert _grey(to_rgb_array(la)) == [100, 200]
    rgba = Image.fromarray(np.array([[[10, 20, 30, 0]]], dtype=np.uint8), mode="RGBA")
    assert to_rgb_array(rgba).tolist() == [[[10, 20, 30]]]
    palette = Image.new("PA", (1, 1))
    palette.putpalette([0, 0, 0, 40, 50, 60])
    palette.putpixel((0, 0), (1, 255))
    assert to_rgb_array(palette).tolist() == [[[40, 50, 60]]]


@pytest.mark.parametrize("failure", [ValueError("bad palette"), OSError("truncated data")])
def test_conversion_failures_are_named(failure):
    image = Image.new("P", (2, 2))

    def refuse(*args, **kwargs):
        raise failure

    image.convert = refuse  # type: ignore[method-assign]
    with refused(
        ImageFormatError, mentions="mode 'P'", phrase=("cannot convert", f"to RGB: {failure}")
    ) as info:
        to_rgb_array(image)
    assert info.value.__cause__ is failure


# --------------------------------------------------------------------------- files and EXIF
def test_params_from_image_uses_the_given_default():
    default = SpectrogramParams(num_frequencies=64)
    image = Image.new("RGB", (4, 64))
    assert params_from_image(image, default) == default
    image.getexif()[int(ExifTag.SAMPLE_RATE)] = 22050
    assert params_from_image(image, default) == default.replace(sample_rate=22050)
    assert params_from_image(image) == SpectrogramParams(sample_rate=22050)


def test_save_and_load_keep_pixels_mode_and_exif(tmp_path):
    params = SpectrogramParams(num_frequencies=3, sample_rate=16000, max_frequency_hz=8000)
    image = mel_to_image(np.array([[[4.0, 1.0], [0.0, 2.0], [3.0, 0.5]]]), params)
    path = save_image(image, tmp_path / "spec.PNG")
    assert path == tmp_path / "spec.PNG"
    with Image.open(path) as raw:
        assert raw.format == "PNG"
    loaded = load_image(str(path))
    assert loaded.mode == "RGB" and loaded.size == (2, 3)
    assert np.array_equal(np.asarray(loaded), np.asarray(image))
    assert dict(loaded.getexif()) == dict(image.getexif())
    assert params_from_image(loaded) == params
    jpeg = save_image(image, tmp_path / "spec.jpg")
    with Image.open(jpeg) as raw:
        assert raw.format == "JPEG"


def test_load_image_passes_images_through_and_names_bad_sources(tmp_path):
    image = Image.new("L", (2, 2))
    assert load_image(image) is image
    assert_refused(
        load_image, 5, named="image", phrase=("must be a PIL image or a path", "got int")
    )
    assert_refused(
        load_image,
        "a\x00b.png",
        error=ImageFormatError,
        named="image file name 'a\\x00b.png'",
        phrase="NUL byte",
    )
    assert_refused(
        load_image,
        tmp_path,
        error=ImageFormatError,
        named=f"image file {str(tmp_path)!r}",
        phrase="is a folder",
    )
    assert_refused(
        load_image,
        tmp_path / "missing.png",
        error=ImageFormatError,
        named=f"image file {str(tmp_path / 'missing.png')!r}",
        phrase="does not exist",
    )
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert_refused(
        load_image,
        junk,
        error=ImageFormatError,
        named=f"cannot read image {str(junk)!r}",
        phrase="cannot read image",
    )


def test_load_image_refuses_oversized_images_with_the_size_message(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("1", (65_537, 1)).save(path)
    assert_refused(
        load_image,
        path,
        error=ImageFormatError,
        named="image of size 65537×1",
        phrase="exceeds the limit of 65536×2048 pixels",
    )


def test_failed_image_write_is_an_image_format_error(tmp_path, monkeypatch):
    def refuse(self, fp, format=None, **params):
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", refuse)
    target = tmp_path / "spec.png"
    assert_refused(
        save_image,
        Image.new("L", (1, 1)),
        target,
        error=ImageFormatError,
        named=f"cannot write {str(target)!r}",
        phrase="No space left on device",
    )
    assert list(tmp_path.iterdir()) == []


def test_save_image_refuses_non_images_and_unknown_extensions(tmp_path):
    assert_refused(
        save_image,
        "x",
        tmp_path / "a.png",
        named="image",
        phrase=("must be a PIL.Image.Image", "got str"),
    )
    target = tmp_path / "spec.unknown"
    assert_refused(
        save_image,
        Image.new("L", (1, 1)),
        target,
        error=ImageFormatError,
        mentions=repr(str(target)),
        phrase=("cannot tell the image format", "use .png"),
    )
    assert_refused(
        save_image,
        Image.new("L", (1, 1)),
        tmp_path,
        error=ImageFormatError,
        named=f"image path {str(tmp_path)!r}",
        phrase="is a folder",
    )
    assert list(tmp_path.iterdir()) == []


def test_premultiplied_grey_alpha_decodes():
    image = Image.new("La", (1, 1), (100, 255))
    assert to_rgb_array(image).tolist() == [[[100, 100, 100]]]
