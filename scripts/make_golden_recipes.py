"""Record the golden clips of tests/test_golden_recipes.py (run from the repository root).

    python scripts/make_golden_recipes.py

Writes tests/golden/riffuser_v1.json (per case: the share strings, the SHA-256 of each clip's
audio and image, this machine's key) and the red channel of each clip image as a PNG. Run it
only when a change is meant to change the output: the test exists to prove that refactors do
not.
"""

from __future__ import annotations

import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root))

from tests.diffusion_fixtures import single_thread_riffuser  # noqa: E402
from tests.golden_cases import CASES, GOLDEN_FILE, audio_sha256, image_sha256, machine_key  # noqa: E402


def main() -> None:
    folder = root / "tests" / "golden"
    folder.mkdir(exist_ok=True)
    record: dict[str, object] = {"machine": machine_key(), "cases": {}}
    with single_thread_riffuser() as riffuser:
        for name, make in CASES.items():
            clips = make(riffuser)
            entries = []
            for index, clip in enumerate(clips):
                image_file = f"{name}_{index}.png"
                # The red channel is what a mono decode reads (the whole image's bits are in
                # image_sha256); it is what other machines compare within a tolerance.
                clip.image.getchannel("R").save(folder / image_file, optimize=True)
                entries.append(
                    {
                        "share": clip.recipe.to_url(),
                        "audio_sha256": audio_sha256(clip.audio),
                        "image_sha256": image_sha256(clip.image),
                        "image": image_file,
                    }
                )
                print(name, index, entries[-1]["audio_sha256"][:16], flush=True)
            record["cases"][name] = entries  # type: ignore[index]
    (folder / GOLDEN_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
