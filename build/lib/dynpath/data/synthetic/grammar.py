"""The grammar of the synthetic benchmark: colours, shapes, sub-actions, postures, sentence
templates, the query families and the motion constants the planner and renderer share
(docs/synthetic.md). ``GRAMMAR_VERSION`` changes whenever a generated dataset would.
"""

from __future__ import annotations

import math
import re

GRAMMAR_VERSION = 1


COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 35, 35),
    "green": (30, 205, 60),
    "blue": (45, 85, 250),
    "yellow": (245, 225, 30),
}


SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")


BACKGROUND: tuple[int, int, int] = (40, 40, 40)


# Sub-actions of the ordered (exploitation-type) family, with their verb phrase.
SUB_ACTIONS: dict[str, str] = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "grow": "grows",
    "shrink": "shrinks",
    "spin": "spins",
    "blink": "blinks",
}


# Held postures of the exploration-type family, with their verb phrase.
POSTURES: dict[str, str] = {
    "big": "stays big",
    "small": "stays small",
    "hollow": "is hollow",
    "striped": "is striped",
    "top_left": "rests in the top left corner",
    "top_right": "rests in the top right corner",
    "bottom_left": "rests in the bottom left corner",
    "bottom_right": "rests in the bottom right corner",
}


ORDERED_TEMPLATES: tuple[str, ...] = (
    "the {obj} {a} and then {b}",
    "the {obj} first {a} then {b}",
    "the {obj} {a} before it {b}",
)


POSTURE_TEMPLATES: tuple[str, ...] = (
    "the {obj} {p}",
    "the {obj} {p} for a while",
)


FAMILIES = {"ordered": "exploitation", "posture": "exploration"}


# Kinematics (units: frame sides and seconds): fast, coarse changes a random 3D-CNN can see.
OBJECT_RADIUS = 0.125  # base radius as a fraction of the frame side (diameter ~ 1/4 frame)


HOME_RING = 0.22  # homes sit on a ring around the centre, 120 degrees apart


MOVE_SPEED = 0.3  # frame sides per second, until the move's edge line is reached


MOVE_TO = {"left": (0, 0.18), "right": (0, 0.82), "up": (1, 0.18), "down": (1, 0.82)}  # axis, line


MIN_TRAVEL = 0.2  # a move must cover at least this much of the frame side (else not planned)


SPIN_SPEED = math.pi  # radians per second


BLINK_PERIOD = 1.0  # seconds; hidden for the first half of each period


GROW_FACTOR = 2.0  # scale multiplier over a whole "grows" sub-action


SHRINK_FACTOR = 0.4


POSTURE_SCALE = {"big": 1.9, "small": 0.5}


CORNER = 0.14  # corner-posture centre distance from the two edges, fraction of the side


MOMENT_FRACTION = (0.10, 0.45)  # moment length / video duration (Beta(2, 2.4) inside, mean 0.26)


MIN_GAP = 1.5  # seconds between two events (the reset must be visible)


SLACK = 0.2  # least share of the free time left between events for random placement


MIN_CLIPS = 3  # shortest moment, in feature clips (clip seconds come from the extract config)


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the GloVe file's rows)."""
    words: list[str] = []
    phrases = [*COLOURS, *SHAPES, *SUB_ACTIONS.values(), *POSTURES.values()]
    phrases += [*ORDERED_TEMPLATES, *POSTURE_TEMPLATES]
    for phrase in phrases:
        for w in re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", phrase)):
            if w not in words:
                words.append(w)
    return words
