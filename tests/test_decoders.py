"""riffusion.decoders pinned down: the registry (names, replacement, refusals), the one
dispatch every decoder goes through (``decode_mel``: its checks, what a decoder is given and
what it must return), the built-in ``"fast"`` and ``"reference"`` decoders as ordinary
registered objects, and the decode memory budget. The decoders' audio itself is pinned in
tests/test_phase.py, tests/test_spectrogram_pins.py and tests/test_decoder_quality.py."""

from __future__ import annotations

import math

import pytest
import torch

from riffusion.decoders import (
    Decoder,
    FastDecoder,
    ReferenceDecoder,
    check_decode_size,
    check_decoder_name,
    decode_bytes,
    decode_mel,
    decoder_names,
    get_decoder,
    register_decoder,
    unregister_decoder,
)
from riffusion.decoders import registry as registry_module
from riffusion.limits import MAX_DECODE_BYTES
from riffusion.params import SpectrogramParams
from riffusion.spectrogram import SpectrogramConverter, get_converter, inverse_bytes_per_frame
from tests.errors import assert_refused, refused

# The decoders' output passes through CPU-dependent kernels: CI reruns it under other ones.
pytestmark = pytest.mark.numerics

# Small parameters keep the reference decoder fast: n_fft 800, window 400 (a zero-padding
# factor of 2, so the fast inverse has its fine grid), hop 80, 64 mel bands to 3 kHz.
SMALL = SpectrogramParams(
    sample_rate=8000,
    num_frequencies=64,
    padded_duration_ms=100.0,
    window_duration_ms=50.0,
    max_frequency_hz=3000.0,
)


# -------------------------------------------------------------------------------- registry
REGISTERED = ("must be a registered decoder", "'fast', 'reference'")


class _Zeros:
    supports_periodic = True

    def decode(self, mel, params, *, seed=0, periodic=False, num_iterations=None, device="cpu"):
        return torch.zeros(*mel.shape[:-2], params.samples_for_width(mel.shape[-1]))


def test_register_replace_and_unregister():
    first, second = _Zeros(), _Zeros()
    register_decoder("zz-pin_1.0", first)
    try:
        assert get_decoder("zz-pin_1.0") is first
        with refused(mentions="decoder named 'zz-pin_1.0'", phrase="already registered"):
            register_decoder("zz-pin_1.0", second)
        register_decoder("zz-pin_1.0", second, replace=True)
        assert get_decoder("zz-pin_1.0") is second
        register_decoder("aa-pin", first)
        try:
            assert decoder_names()[:2] == ("fast", "reference")
            names = decoder_names()
            assert names.index("aa-pin") < names.index("zz-pin_1.0")
        finally:
            unregister_decoder("aa-pin")
    finally:
        unregister_decoder("zz-pin_1.0")
    assert "zz-pin_1.0" not in decoder_names()
    unregister_decoder("zz-pin_1.0")  # removing a name that is not there is fine


def test_built_in_decoders_cannot_be_replaced_or_removed():
    fast = get_decoder("fast")
    register_decoder("fast", fast)  # the same object again: a no-op (module reloads)
    assert get_decoder("fast") is fast
    for replace in (False, True):
        with refused(mentions="decoder named 'fast'", phrase="already registered"):
            register_decoder("fast", _Zeros(), replace=replace)
    assert get_decoder("fast") is fast
    for name in ("fast", "reference"):
        assert_refused(
            unregister_decoder,
            name,
            mentions=f"built-in decoder {name!r}",
            phrase="cannot be removed",
        )
        assert name in decoder_names()


@pytest.mark.parametrize("name", ["", "a b", "x/y", 5, None])
def test_register_decoder_rejects_bad_names(name):
    with refused(named=f"decoder name {name!r}", phrase=("letters, digits", "'_', '-' or '.'")):
        register_decoder(name, _Zeros())
    assert name not in decoder_names()


def test_register_decoder_rejects_non_decoders():
    class NoFlag:
        def decode(self, mel, params, **options):
            return mel

    class TextFlag(NoFlag):
        supports_periodic = "yes"

    for decoder in (object(), NoFlag(), TextFlag()):
        expected = ("decode(mel, params, *, seed, periodic, num_iterations, device)", "bool")
        with refused(named=f"decoder {decoder!r}", phrase=(*expected, "supports_periodic")):
            register_decoder("pin-bad", decoder)
    assert "pin-bad" not in decoder_names()


@pytest.mark.parametrize("name", ["nope", 3, None, b"fast", ["fast"]])
def test_get_decoder_error_lists_the_registered_names(name):
    assert_refused(get_decoder, name, named=f"method={name!r}", phrase=REGISTERED)


def test_get_decoder_error_with_an_empty_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_DECODERS", {})
    # the built-ins' names, never an empty list
    assert_refused(get_decoder, "fast", named="method='fast'", phrase=REGISTERED)


def test_check_decoder_name(recorder):
    assert check_decoder_name("decode_method", "fast") == "fast"
    assert check_decoder_name("method", "reference") == "reference"
    assert check_decoder_name("method", "pins-recorder") == "pins-recorder"
    # every registered name, built-ins first
    listed = (*REGISTERED, "'fast', 'reference', 'pins-recorder'")
    assert_refused(
        check_decoder_name, "decode_method", "nope", named="decode_method='nope'", phrase=listed
    )
    assert_refused(check_decoder_name, "method", 3, named="method=3", phrase=listed)


# -------------------------------------------------------------------------------- dispatch
class _Recorder:
    """A plug-in decoder that records its arguments and returns what it is told to."""

    supports_periodic = True

    def __init__(self, output=None) -> None:
        self.output = output
        self.calls: list[dict] = []

    def decode(self, mel, params, *, seed=0, periodic=False, num_iterations=None, device="cpu"):
        self.calls.append(
            {
                "mel": mel,
                "params": params,
                "seed": seed,
                "periodic": periodic,
                "num_iterations": num_iterations,
                "device": device,
            }
        )
        if self.output is not None:
            return self.output
        length = params.samples_for_width(mel.shape[-1], periodic=periodic)
        return torch.ones(*mel.shape[:-2], length, dtype=torch.float64)


@pytest.fixture
def recorder():
    decoder = _Recorder()
    register_decoder("pins-recorder", decoder)
    yield decoder
    unregister_decoder("pins-recorder")


def test_plug_in_decoder_gets_the_arguments_and_its_output_is_float32(recorder):
    mel = torch.rand(2, 64, 10, dtype=torch.float64)
    decoded = decode_mel(mel, SMALL, method="pins-recorder", seed=9, periodic=True)
    assert decoded.dtype == torch.float32 and torch.equal(decoded, torch.ones(2, 800))
    (call,) = recorder.calls
    assert call["mel"].dtype == torch.float32 and torch.equal(call["mel"], mel.float())
    assert call["params"] is SMALL and call["seed"] == 9 and call["periodic"] is True
    # None stays None: the decoder picks its own default.
    assert call["num_iterations"] is None and call["device"] == torch.device("cpu")
    decode_mel(mel[0], SMALL, method="pins-recorder", num_iterations=3)
    assert recorder.calls[1]["num_iterations"] == 3 and recorder.calls[1]["periodic"] is False
    assert recorder.calls[1]["seed"] == 0


@pytest.mark.parametrize(
    ("output", "shown"),
    [(torch.zeros(3), "(3,)"), (torch.zeros(1, 721), "(1, 721)"), ([0.0], "[0.0]")],
)
def test_plug_in_decoder_with_the_wrong_output_is_refused(recorder, output, shown):
    recorder.output = output
    mel = torch.rand(1, 64, 10)
    # one channel of (10 − 1) · 80 samples
    assert_refused(
        decode_mel,
        mel,
        SMALL,
        method="pins-recorder",
        named="decoder 'pins-recorder'",
        mentions=f"returned {shown}",
        phrase=("expected a tensor", "shape (1, 720)"),
    )


def test_plug_in_decoder_without_a_circular_mode(recorder):
    recorder.supports_periodic = False
    mel = torch.rand(64, 10)
    assert_refused(
        decode_mel,
        mel,
        SMALL,
        method="pins-recorder",
        periodic=True,
        named="periodic=True",
        phrase=("method='fast'", "circular mode", "method='pins-recorder' has none"),
    )
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("mel", "named", "expected"),
    [
        ("mel", "mel", ("torch.Tensor", "got str")),
        (torch.ones(2, 63, 3), "mel of shape (2, 63, 3)", "(..., 64, frames)"),
        (torch.ones(64, 0), "mel of shape (64, 0)", "no frames"),
        (torch.full((64, 3), math.nan), "mel magnitudes", "finite and non-negative"),
        (
            torch.ones(64, 1),
            "mel with 1 frame",
            ("no samples", "at least 2 frames", "periodic=True"),
        ),
    ],
)
def test_dispatch_refuses_bad_mel(recorder, mel, named, expected):
    # The same checks as the converter's, for a plug-in as for a built-in.
    first = assert_refused(
        decode_mel, mel, SMALL, method="pins-recorder", named=named, phrase=expected
    )
    assert assert_refused(decode_mel, mel, SMALL, named=named, phrase=expected) == first
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("kwargs", "named", "expected"),
    [
        ({"method": "nope"}, "method='nope'", REGISTERED),
        ({"method": 3}, "method=3", REGISTERED),
        ({"num_iterations": 0}, "num_iterations=0", "must be a positive integer"),
        ({"num_iterations": True}, "num_iterations=True", "must be a positive integer"),
        ({"seed": 1.0}, "seed=1.0", "must be an integer"),
        ({"periodic": None}, "periodic=None", "True or False"),
        (
            {"method": "reference", "periodic": True},
            "periodic=True",
            ("method='fast'", "circular mode", "method='reference' has none"),
        ),
    ],
)
def test_dispatch_refuses_bad_arguments(kwargs, named, expected):
    assert_refused(decode_mel, torch.ones(64, 8), SMALL, **kwargs, named=named, phrase=expected)


def test_dispatch_refuses_bad_params_and_devices():
    mel = torch.ones(64, 8)
    assert_refused(
        decode_mel,
        mel,
        {},
        named="params",
        phrase=("riffusion.SpectrogramParams or None", "got dict"),
    )
    assert_refused(decode_mel, mel, SMALL, device="nope", named="device='nope'", phrase="'cpu'")
    # The default parameters are Riffusion's: 512 mel bands.
    assert_refused(decode_mel, mel, named="mel of shape (64, 8)", phrase="(..., 512, frames)")


def test_the_dispatch_refuses_a_decode_too_large_before_the_decoder_runs(recorder):
    per_frame = 1 << 20
    recorder.bytes_per_frame = lambda params: per_frame
    frames = MAX_DECODE_BYTES // per_frame + 1
    mel = torch.zeros(1, 64, frames)
    assert_refused(
        decode_mel,
        mel,
        SMALL,
        method="pins-recorder",
        named="mel",
        mentions=(f"({frames} columns", ", 1 channel", "method='pins-recorder'"),
        # the estimate, the limit (and where it is set) and the widest mel that fits
        phrase=("about 8.0 GiB", "at most 8 GiB", "MAX_DECODE_BYTES", f" {frames - 1} columns"),
    )
    assert recorder.calls == []
    # Every leading dimension is a channel: two channels of half as many columns are as much.
    half = MAX_DECODE_BYTES // per_frame // 2 + 1
    assert_refused(
        decode_mel,
        torch.zeros(2, 64, half),
        SMALL,
        method="pins-recorder",
        named="mel",
        mentions=(f"({half} columns", ", 2 channel"),
        phrase=("about 8.0 GiB", f" {half - 1} columns"),
    )
    assert recorder.calls == []


def test_built_ins_go_through_the_same_dispatch(monkeypatch):
    # No special case: decode_mel calls the registered object's decode, as for a plug-in.
    seen: list[dict] = []
    real = FastDecoder.decode

    def spy(self, mel, params, **options):
        seen.append({"decoder": self, "mel": mel, **options})
        return real(self, mel, params, **options)

    monkeypatch.setattr(FastDecoder, "decode", spy)
    mel = torch.rand(1, 64, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    decoded = decode_mel(mel * 1e4, SMALL, num_iterations=2, seed=5)
    (call,) = seen
    assert call["decoder"] is get_decoder("fast") and call["mel"].dtype == torch.float32
    assert call["num_iterations"] == 2 and call["seed"] == 5 and call["periodic"] is False
    assert call["device"] == torch.device("cpu")
    expected = SpectrogramConverter(SMALL).mel_to_waveform(mel * 1e4, num_iterations=2, seed=5)
    assert torch.equal(decoded, expected)


def test_the_converter_decodes_only_its_own_methods(recorder):
    converter = SpectrogramConverter(SMALL)
    assert_refused(
        converter.mel_to_waveform,
        torch.ones(64, 8),
        method="pins-recorder",
        named="method='pins-recorder'",
        phrase=("'fast' or 'reference'", "riffusion.decoders.decode_mel"),
    )
    assert recorder.calls == []


# ---------------------------------------------------------------------- built-in decoders
@pytest.mark.parametrize("name", ["fast", "reference"])
def test_built_in_decoders_decode_like_the_converter(name):
    decoder = get_decoder(name)
    assert isinstance(decoder, Decoder)
    assert repr(decoder) == f"<riffusion decoder {name!r}>"
    assert decoder.supports_periodic is (name == "fast")
    assert decoder.bytes_per_frame(SMALL) == inverse_bytes_per_frame(SMALL, name)
    mel = torch.rand(1, 64, 8, generator=torch.Generator().manual_seed(4)) * 1e4
    decoded = decoder.decode(mel, SMALL, seed=7, num_iterations=2, device="cpu")
    expected = SpectrogramConverter(SMALL).mel_to_waveform(
        mel, method=name, seed=7, num_iterations=2
    )
    assert torch.equal(decoded, expected)
    assert torch.equal(decode_mel(mel, SMALL, method=name, seed=7, num_iterations=2), expected)


def test_built_in_decoders_use_the_shared_converter():
    # One converter per parameters and device, shared with the encoder: the fast inverse's
    # operators (costly) are built once and kept.
    converter = get_converter(SMALL)
    mel = torch.rand(64, 8, generator=torch.Generator().manual_seed(9)) * 1e4
    get_decoder("fast").decode(mel, SMALL, num_iterations=1)
    operators = converter._inverse
    assert operators is not None
    get_decoder("fast").decode(mel, SMALL, num_iterations=1, device=torch.device("cpu"))
    assert get_converter(SMALL, device="cpu") is converter and converter._inverse is operators


def test_built_in_fast_decoder_defaults_and_periodic():
    decoder = get_decoder("fast")
    mel = torch.rand(64, 8, generator=torch.Generator().manual_seed(5)) * 1e4
    converter = SpectrogramConverter(SMALL)
    assert torch.equal(decoder.decode(mel, SMALL), converter.mel_to_waveform(mel))
    looped = decoder.decode(mel, SMALL, periodic=True, num_iterations=2)
    assert torch.equal(looped, converter.mel_to_waveform(mel, periodic=True, num_iterations=2))


def test_built_in_decoder_objects_of_their_own():
    # The classes are ordinary decoders: a fresh, unregistered one decodes like the registered.
    mel = torch.rand(64, 8, generator=torch.Generator().manual_seed(9)) * 1e4
    for decoder, name in ((FastDecoder(), "fast"), (ReferenceDecoder(), "reference")):
        assert decoder is not get_decoder(name)
        first = decoder.decode(mel, SMALL, seed=2, num_iterations=2)
        expected = get_decoder(name).decode(mel, SMALL, seed=2, num_iterations=2)
        assert torch.equal(first, expected)
    assert_refused(
        ReferenceDecoder().decode,
        mel,
        SMALL,
        periodic=True,
        named="periodic=True",
        phrase=("method='fast'", "circular mode", "method='reference' has none"),
    )


# ---------------------------------------------------------------------- decode memory budget
def test_decode_bytes_asks_the_decoder(recorder):
    params = SpectrogramParams()
    # The built-ins' estimates at Riffusion's parameters: 381.6 KiB and 551.3 KiB per column.
    assert decode_bytes(1, 1, params, "fast") == 20 * 8 * 2001 + 16 * 4410 == 390_720
    assert decode_bytes(1, 1, params, "reference") == 8 * 8 * 8821 == 564_544
    assert decode_bytes(512, 2, params, "fast") == 512 * 2 * 390_720
    # A decoder without its own estimate is assumed to cost what the reference does.
    assert decode_bytes(3, 2, SMALL, "pins-recorder") == 3 * 2 * 8 * 8 * 401
    recorder.bytes_per_frame = lambda params: 1000.7
    assert decode_bytes(3, 2, SMALL, "pins-recorder") == 6000
    assert_refused(decode_bytes, 1, 1, SMALL, "nope", named="method='nope'", phrase=REGISTERED)


def test_check_decode_size_refuses_past_the_budget():
    params = SpectrogramParams()
    # 8 GiB holds 21984 columns of one channel at 390720 bytes each: accepted, one more refused
    assert MAX_DECODE_BYTES // 390_720 == 21_984
    check_decode_size(21_984, 1, params, "fast")
    for columns in (21_985, 22_000):
        assert_refused(
            check_decode_size,
            columns,
            1,
            params,
            "fast",
            named="mel",
            mentions=(f"({columns} columns", ", 1 channel"),
            phrase=("about 8.0 GiB", " 21984 columns"),
        )
    # 65536 columns × 2 channels × 390720 bytes = 47.7 GiB; 8 GiB holds 10992 such columns
    assert_refused(
        check_decode_size,
        65_536,
        2,
        params,
        "fast",
        what="an image 65536 columns wide",
        named="an image 65536 columns wide",
        mentions=("(65536 columns", ", 2 channel", "method='fast'"),
        phrase=("about 47.7 GiB", "at most 8 GiB", "MAX_DECODE_BYTES", " 10992 columns"),
    )
