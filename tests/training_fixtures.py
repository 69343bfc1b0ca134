"""A tiny training set the training tests share: three 64x64 spectrogram windows of three tones."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from riffusion import Audio, SpectrogramParams
from riffusion.dataset import prepare

PARAMS = SpectrogramParams(num_frequencies=64)
WINDOW_PX = 64


def tone_dataset(root: Path) -> Path:
    """Three 64x64 spectrogram windows of three tones (220 Hz in ``low/``, 660 and 1320 Hz in
    ``high/``), prepared into ``root / "dataset"``, which is returned."""
    rate = PARAMS.sample_rate
    t = np.arange(PARAMS.samples_for_width(WINDOW_PX)) / rate
    for number, frequency in enumerate((220.0, 660.0, 1320.0)):
        folder = root / "audio" / ("low" if number == 0 else "high")
        folder.mkdir(parents=True, exist_ok=True)
        wave = 0.3 * np.sin(2 * np.pi * frequency * t)
        Audio(wave.astype(np.float32), rate).save(folder / f"tone{number}.wav")
    prepare(root / "audio", root / "dataset", params=PARAMS, window_px=WINDOW_PX, progress=False)
    return root / "dataset"
