"""Rebuild the built-in seed images and masks in riffusion/assets from their synthesis code.

Usage: python scripts/make_seed_images.py
"""

from __future__ import annotations

from pathlib import Path

from riffusion.image import save_image
from riffusion.seeds import make_mask, make_seed_image, mask_images, seed_images

ASSETS = Path(__file__).resolve().parents[1] / "riffusion" / "assets"


def main() -> None:
    for seed in seed_images():
        path = save_image(make_seed_image(seed.name), ASSETS / "seed_images" / f"{seed.name}.png")
        print(f"wrote {path}")
    for mask in mask_images():
        path = ASSETS / "masks" / f"{mask.name}.png"
        make_mask(mask.name).save(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
