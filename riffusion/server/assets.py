"""The seed images and masks a server offers, by id: built-ins, PNGs of a folder, uploads.

Ids are checked against these tables before use; nothing a request sends is used as a path.
"""

from __future__ import annotations

import collections
import logging
import os
from pathlib import Path
from typing import Any

from riffusion.errors import ParameterError
from riffusion.inputs import ASSET_ID_PATTERN, InputError, check_asset_id
from riffusion.server import media

__all__ = ["MAX_UPLOADS", "Assets"]

logger = logging.getLogger("riffusion.server")

MAX_UPLOADS = 16
"""Uploaded audio files kept as seed images (oldest dropped first)."""


class Assets:
    """Seed images and masks by id: built-ins, PNGs of ``seed_image_dir``, uploaded audio.

    Args:
        seed_image_dir: folder whose ``*.png`` files are offered by file stem, or ``None``.

    Raises:
        ParameterError: ``seed_image_dir`` is not a folder.
    """

    def __init__(self, seed_image_dir: str | os.PathLike[str] | None) -> None:
        from riffusion.seeds import RIFFUSION_ALIASES, mask_images, seed_images

        self.seeds: dict[str, dict[str, Any]] = {
            s.name: {"id": s.name, "description": s.description, "bpm": s.bpm, "source": "built-in"}
            for s in seed_images()
        }
        masks = {m.name: m for m in mask_images()}
        # The original web app's ids (og_beat, mask_top_third_75, ...) are served by the
        # library's alias table; a PNG of the same name in seed_image_dir overrides them below.
        alias_masks: dict[str, dict[str, Any]] = {}
        for alias, target in RIFFUSION_ALIASES.items():
            if target in self.seeds:
                self.seeds[alias] = {
                    **self.seeds[target],
                    "id": alias,
                    "description": f"Riffusion's id, served by our {target}: "
                    + self.seeds[target]["description"],
                    "source": "riffusion-alias",
                }
            elif target in masks:
                alias_masks[alias] = {
                    "id": alias,
                    "description": f"Riffusion's id, served by our {target}: "
                    + masks[target].description,
                    "source": "riffusion-alias",
                }
        self._files: dict[str, Path] = {}
        if seed_image_dir is not None:
            folder = Path(seed_image_dir)
            if not folder.is_dir():
                raise ParameterError(f"seed_image_dir={str(folder)!r} is not a folder")
            for path in sorted(folder.glob("*.png")):
                if not ASSET_ID_PATTERN.fullmatch(path.stem):
                    logger.warning("skipping seed image %s: its name is not a valid id", path)
                    continue
                self._files[path.stem] = path.resolve()
                self.seeds[path.stem] = {
                    "id": path.stem,
                    "description": f"{path.name} from the seed image folder",
                    "bpm": None,
                    "source": "seed-image-dir",
                }
        self.masks = {
            m.name: {"id": m.name, "description": m.description, "source": "built-in"}
            for m in masks.values()
        }
        self.masks.update(alias_masks)
        self.uploads: collections.OrderedDict[str, Any] = collections.OrderedDict()
        # Recipe identity ("custom:<fingerprint>") -> the picture or audio it came from, so a
        # recipe made from a folder image or an upload can be rendered again.
        self.custom: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._thumbnails: dict[tuple[str, str], str] = {}

    def seed_ids(self) -> list[str]:
        """Every seed image id on offer, uploads last."""
        return [*self.seeds, *self.uploads]

    def seed_source(self, seed_id: Any, field: str = "seed_image_id") -> Any:
        """What to pass as ``seed_image=`` for an id (checked; never a path from the request)."""
        check_asset_id(seed_id, field, self.seed_ids())
        upload = self.uploads.get(seed_id)  # .get: an upload may be dropped meanwhile
        if upload is not None:
            return upload
        if seed_id.startswith("upload-"):
            raise InputError(field, f"{seed_id!r} was dropped (only the last uploads are kept)")
        if seed_id in self._files:
            from riffusion.image import load_image

            return load_image(self._files[seed_id]).convert("RGB")
        return seed_id

    def mask_source(self, mask_id: Any, field: str = "mask_image_id") -> Any:
        """What to pass as ``mask_image=`` for an id (checked); ``None`` or ``""`` for none."""
        if mask_id is None or mask_id == "":
            return None
        return check_asset_id(mask_id, field, self.masks)

    def remember(self, identity: str | None, source: Any) -> None:
        """Keep the source of a recipe's ``custom:`` seed image, for rendering it again."""
        if identity is not None and identity.startswith("custom:"):
            self.custom[identity] = source
            self.custom.move_to_end(identity)
            while len(self.custom) > 4 * MAX_UPLOADS:
                self.custom.popitem(last=False)

    def add_upload(self, upload_id: str, audio: Any) -> None:
        """Offer uploaded audio as seed image ``upload_id``, dropping the oldest beyond
        :data:`MAX_UPLOADS`."""
        self.uploads[upload_id] = audio
        self.uploads.move_to_end(upload_id)
        while len(self.uploads) > MAX_UPLOADS:
            dropped, _ = self.uploads.popitem(last=False)
            self._thumbnails.pop(("seed", dropped), None)

    def upload_thumbnail(self, upload_id: str, audio: Any, riffuser: Any) -> str:
        """The thumbnail of an upload not yet registered (cached for when it is)."""
        from riffusion.convert import audio_to_image

        image = audio_to_image(audio, riffuser.params)
        thumbnail = self._small(image)
        self._thumbnails[("seed", upload_id)] = thumbnail
        return thumbnail

    @staticmethod
    def _small(image: Any) -> str:
        small = image.convert("RGB").resize((128, 128))
        return media.data_url("image/jpeg", media.image_bytes(small, "JPEG"))

    def thumbnail(self, kind: str, asset_id: str, riffuser: Any) -> str:
        """A 128×128 JPEG data URL of seed image or mask ``asset_id`` (``kind`` ``"seed"`` or
        ``"mask"``), made once; ``riffuser`` turns uploaded audio into a picture."""
        key = (kind, asset_id)
        if key not in self._thumbnails:
            if kind == "mask":
                from riffusion.seeds import load_mask_image

                image = load_mask_image(asset_id)
            else:
                source = self.seed_source(asset_id)
                if isinstance(source, str):
                    from riffusion.seeds import load_seed_image

                    image = load_seed_image(source)
                elif hasattr(source, "waveform"):
                    from riffusion.convert import audio_to_image

                    image = audio_to_image(source, riffuser.params)
                else:
                    image = source
            self._thumbnails[key] = self._small(image)
        return self._thumbnails[key]
