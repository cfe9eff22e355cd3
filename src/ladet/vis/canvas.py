"""Small drawing helpers shared by the detection and the assignment pictures.

Text uses PIL's built-in scalable font (``ImageFont.load_default(size=...)``, Pillow >= 10.1 with
FreeType), so nothing is downloaded; with an older Pillow the fixed bitmap font is used.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ladet.vis.colors import RGB, text_color_on

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def load_font(size: int) -> Font:
    """PIL's default font at ``size`` pixels (falls back to the fixed bitmap font)."""
    try:
        return ImageFont.load_default(size=max(size, 8))
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or built without FreeType
        return ImageFont.load_default()


def font_size_for(
    width: int, height: int, fraction: float = 0.028, minimum: int = 12, maximum: int = 40
) -> int:
    """A font size proportional to the picture's shorter side, clamped to stay readable."""
    return int(min(max(round(min(width, height) * fraction), minimum), maximum))


def line_width_for(width: int, height: int) -> int:
    """Box outline width proportional to the picture size (at least 2 pixels)."""
    return max(2, round(max(width, height) / 320))


def text_size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn with ``font``."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - min(top, 0))


def draw_tag(
    draw: ImageDraw.ImageDraw,
    anchor_xy: tuple[float, float],
    text: str,
    background: RGB,
    font: Font,
    canvas_size: tuple[int, int],
) -> None:
    """Draws ``text`` on a filled rectangle whose bottom-left corner sits at ``anchor_xy``.

    The tag is moved inside the canvas: below the point when there is no room above it, and
    left when it would run past the right edge.
    """
    canvas_width, canvas_height = canvas_size
    text_width, text_height = text_size(draw, text, font)
    padding = max(2, text_height // 5)
    tag_width, tag_height = text_width + 2 * padding, text_height + 2 * padding
    x = min(max(anchor_xy[0], 0), max(canvas_width - tag_width, 0))
    y = anchor_xy[1] - tag_height
    if y < 0:
        y = min(anchor_xy[1], max(canvas_height - tag_height, 0))
    draw.rectangle((x, y, x + tag_width, y + tag_height), fill=background)
    draw.text((x + padding, y + padding), text, fill=text_color_on(background), font=font)


def draw_tag_at(
    draw: ImageDraw.ImageDraw,
    rectangle: tuple[float, float, float, float],
    text: str,
    background: RGB,
    font: Font,
    padding: int,
) -> None:
    """Draws ``text`` on a filled ``rectangle`` (x1, y1, x2, y2), ``padding`` pixels from its corner."""
    x, y = rectangle[0], rectangle[1]
    draw.rectangle(rectangle, fill=background)
    draw.text((x + padding, y + padding), text, fill=text_color_on(background), font=font)


def draw_text_lines(
    draw: ImageDraw.ImageDraw,
    origin: tuple[int, int],
    lines: list[tuple[str, RGB | None]],
    font: Font,
    text_color: RGB,
    line_spacing: float = 1.35,
) -> int:
    """Writes one line of text per entry, each preceded by a colour swatch when given.

    Returns:
        The y coordinate just below the last line.
    """
    x, y = origin
    _, line_height = text_size(draw, "Ag", font)
    step = round(line_height * line_spacing)
    for text, swatch in lines:
        text_x = x
        if swatch is not None:
            draw.rectangle((x, y + 1, x + line_height - 1, y + line_height), fill=swatch, outline=(0, 0, 0))
            text_x = x + round(line_height * 1.4)
        draw.text((text_x, y), text, fill=text_color, font=font)
        y += step
    return y


def measure_text_lines(
    lines: list[tuple[str, RGB | None]], font: Font, line_spacing: float = 1.35
) -> tuple[int, int]:
    """(width, height) that ``draw_text_lines`` needs for ``lines``."""
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    _, line_height = text_size(scratch, "Ag", font)
    width = 0
    for text, swatch in lines:
        swatch_width = round(line_height * 1.4) if swatch is not None else 0
        width = max(width, swatch_width + text_size(scratch, text, font)[0])
    return width, round(line_height * line_spacing) * len(lines)
