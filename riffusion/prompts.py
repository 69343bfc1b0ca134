"""A curated list of prompts that suit the Riffusion model, and :func:`random_prompt`.

The list is written by this project: genres, instruments and moods the model responds to, in
the short "genre + instrument + mood" style its training captions used.
"""

from __future__ import annotations

import random

from riffusion._checks import check_integer

__all__ = ["PROMPTS", "random_prompt"]

PROMPTS: tuple[str, ...] = (
    "funky bass groove with slap bass and clavinet",
    "lo-fi hip hop beat with dusty vinyl crackle",
    "jazz piano trio, brushed drums, walking upright bass",
    "church organ playing a slow chorale",
    "reggae skank guitar with deep dub bass",
    "acoustic folk guitar fingerpicking",
    "synthwave arpeggio with gated reverb drums",
    "techno kick and rolling hi-hats, hypnotic",
    "deep house chords with a shuffled beat",
    "drum and bass breakbeat with a reese bassline",
    "smooth saxophone solo over a soft groove",
    "bossa nova guitar and light percussion",
    "heavy metal guitar riff with double kick drums",
    "punk rock power chords, fast and loud",
    "blues harmonica over a shuffle rhythm",
    "string quartet playing a gentle waltz",
    "cinematic orchestral strings, building tension",
    "solo cello, melancholic and slow",
    "ragtime piano, bouncy stride left hand",
    "classical harpsichord baroque counterpoint",
    "marimba and kalimba playing a calm pattern",
    "steel drums on a sunny beach",
    "flamenco guitar with hand claps",
    "afrobeat horns and polyrhythmic percussion",
    "k-pop synth hook with punchy drums",
    "trap hi-hats with a booming 808",
    "boom bap drums with a jazzy sample",
    "chillwave synth pads, dreamy and hazy",
    "ambient drone with shimmering textures",
    "dubstep wobble bass drop",
    "disco strings and four on the floor",
    "gospel choir with hammond organ",
    "country banjo and fiddle hoedown",
    "irish tin whistle jig",
    "sitar raga with tabla",
    "japanese koto melody, peaceful",
    "chiptune 8-bit video game melody",
    "music box lullaby",
    "surf rock guitar with spring reverb",
    "psychedelic rock with wah guitar",
    "motown soul with tambourine and bass",
    "latin salsa piano montuno with congas",
    "tango bandoneon and violin",
    "mariachi trumpets and guitars",
    "celtic harp arpeggios",
    "new age piano with soft rain",
    "industrial drums, metallic and harsh",
    "minimal house with clicky percussion",
    "garage rock drums with fuzz bass",
    "vaporwave slowed-down smooth jazz",
    "epic taiko drums",
    "didgeridoo drone with clapsticks",
    "acid house squelchy bassline",
    "trumpet fanfare, bright and triumphant",
    "glitch hop with chopped vocals",
    "indie pop with jangly guitars",
    "opera soprano with orchestra",
    "electric piano neo soul chords",
    "accordion french cafe waltz",
    "uplifting trance supersaw chords",
)


def random_prompt(seed: int | None = None) -> str:
    """A prompt from :data:`PROMPTS`, chosen at random (reproducibly when ``seed`` is given).

    Args:
        seed: seed of the choice (any int); ``None`` draws from the operating system.
    """
    if seed is not None:
        check_integer("seed", seed, minimum=None)
    return random.Random(seed).choice(PROMPTS)
