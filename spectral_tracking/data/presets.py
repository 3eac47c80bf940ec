"""The benchmark's named sequences: a table shared by the generator, its CLI and the configs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    creature: str
    motion: str
    description: str


# The default benchmark: four distinct creature / motion pairs.
PRESETS: dict[str, Preset] = {
    "quadruped_walk": Preset("quadruped", "walk", "a striped fox walking in profile (legs swing in diagonal pairs, tail wags)"),
    "humanoid_wave": Preset("humanoid", "wave", "a person raising the right arm and waving, body swaying"),
    "hopper_jump": Preset("hopper", "jump", "a spotted frog hopping twice towards the front camera"),
    "flower_twist": Preset("flower", "twist", "a flower swaying on its stem, head twisting, petals opening and closing"),
}
# The real donut asset with procedural motion (needs ../shared/data/donut; see donut.py).
DONUT_PRESETS = ("donut_bend", "donut_twist", "donut_squash")
