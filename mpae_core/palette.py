"""Default part names and colours: one fixed palette, readable over photos, the same in the app and the exports."""
from __future__ import annotations

# Saturated, mutually distinct colours (a reordered Glasbey/Tableau-style set); none is near white, black or grey,
# so an overlay stays visible on bright skies and dark fur alike.
PART_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
    (0, 0, 128), (255, 99, 71), (46, 139, 87), (218, 165, 32), (65, 105, 225), (199, 21, 133),
    (127, 255, 0), (255, 140, 0), (0, 191, 255), (186, 85, 211), (152, 251, 152), (205, 92, 92),
)


def default_part_name(slot: int) -> str:
    """``part_01`` for slot 0: 1-based, zero-padded so that names sort in slot order."""
    return f"part_{slot + 1:02d}"


def default_part_color(slot: int) -> tuple[int, int, int]:
    """Palette colour of a slot; past the palette's end, colours repeat with a shifted brightness."""
    r, g, b = PART_PALETTE[slot % len(PART_PALETTE)]
    shift = (slot // len(PART_PALETTE)) * 37
    return tuple((c + shift) % 256 if c < 128 else (c - shift) % 256 for c in (r, g, b))  # type: ignore[return-value]


def color_to_hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def hex_to_color(text: str) -> tuple[int, int, int]:
    text = text.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"Not a #rrggbb colour: {text!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
