"""Colours for the pictures: a fixed palette of well separated hues and a readable text colour.

The palette is hand-picked so that neighbouring indices differ strongly in hue and every colour
stays visible both on dark and on light photographs (no near-white or near-black entries).
"""

from __future__ import annotations

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (210, 245, 60),  # lime
    (0, 128, 128),  # teal
    (170, 110, 40),  # brown
    (255, 225, 25),  # yellow
    (128, 0, 0),  # maroon
    (170, 255, 195),  # mint
    (128, 128, 0),  # olive
    (0, 0, 128),  # navy
    (250, 190, 212),  # pink
    (220, 190, 255),  # lavender
    (255, 215, 180),  # apricot
)

# Fixed colours for CoLAD's two networks and for anchors that are candidates but not positives.
FIRST_NETWORK_COLOR: RGB = (0, 114, 255)  # network 1: blue
SECOND_NETWORK_COLOR: RGB = (255, 140, 0)  # network 2: orange
CANDIDATE_COLOR: RGB = (150, 150, 150)  # pre-positive that did not become a positive: grey
BACKGROUND_COLOR: RGB = (255, 255, 255)
TEXT_COLOR: RGB = (20, 20, 20)


def color_for_index(index: int) -> RGB:
    """Returns the palette colour of a class or GT index (cycling when the index is large)."""
    if index < 0:
        raise ValueError(f"colour index must be >= 0, got {index}")
    return PALETTE[index % len(PALETTE)]


def text_color_on(background: RGB) -> RGB:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    red, green, blue = background
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    return (0, 0, 0) if luma > 150 else (255, 255, 255)
