"""A Grad-CAM overlay made readable on its own: enlarged by a whole factor (pixels kept square) with a band below it
naming the class and its probability and a colour bar from no evidence to the most."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_WIDTH = 320  # px: a 28 px scan is shown 12 times larger, so that the band's words fit under it
FONT_PX = 13


def with_legend(rgb: np.ndarray, name: str, probability: float, min_width: int = MIN_WIDTH) -> np.ndarray:
    """The (H, W, 3) uint8 overlay, nearest-neighbour enlarged to at least `min_width` px wide, above a white band
    naming the class explained and its probability, and the jet colour bar labelled low and high."""
    import matplotlib

    h, w = rgb.shape[:2]
    factor = max(1, math.ceil(min_width / w))
    scan = Image.fromarray(rgb).resize((w * factor, h * factor), Image.Resampling.NEAREST)
    font = ImageFont.load_default(size=FONT_PX)
    band = 3 * FONT_PX + 14
    canvas = Image.new("RGB", (scan.width, scan.height + band), "white")
    canvas.paste(scan, (0, 0))
    draw = ImageDraw.Draw(canvas)
    title = _title(draw, name, f"p = {probability:.3f}", font, scan.width - 12)
    draw.text((6, scan.height + 4), title, fill="black", font=font)
    y = scan.height + FONT_PX + 10
    low, high = "low", "high"
    x0 = 6 + draw.textlength(low, font=font) + 6
    x1 = scan.width - 6 - draw.textlength(high, font=font) - 6
    draw.text((6, y), low, fill="black", font=font)
    draw.text((x1 + 6, y), high, fill="black", font=font)
    steps = max(int(x1 - x0), 1)
    colours = (matplotlib.colormaps["jet"](np.linspace(0, 1, steps))[:, :3] * 255).round().astype(int)
    for i, (r, g, b) in enumerate(colours):
        draw.line([(x0 + i, y + 2), (x0 + i, y + FONT_PX)], fill=(int(r), int(g), int(b)))
    return np.asarray(canvas)


def _title(draw: ImageDraw.ImageDraw, name: str, p: str, font, width: float) -> str:
    """'Grad-CAM for NAME, p = ...' in `width` px; a long class name is cut with an ellipsis, never the probability."""
    cut = name
    while True:
        text = f"Grad-CAM for {cut}{'...' if cut != name else ''}, {p}"
        if draw.textlength(text, font=font) <= width or not cut:
            return text
        cut = cut[:-1]
