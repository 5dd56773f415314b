"""Export-index map → one polygon per connected part instance, exact to the pixel (the polygon formats share it).

Why neither OpenCV nor scikit-image: ``cv2.findContours`` returns chains through the *centres* of the boundary
pixels, which COCO's and CVAT's rasteriser (a pixel is inside when its centre is) reads as a region half a pixel
smaller on every side: an 8x8 part comes back as 7x7 (IoU 0.77), a one-pixel-wide part as nothing. scikit-image's
marching squares cuts every corner by half a pixel, with the same kind of loss. Either would also be a new binary
dependency, and OpenCV's GUI build (which Ultralytics installs) points Qt at its own plugins when imported, which
breaks PySide6 in the same process. So the outlines are traced here, along the pixel edges, vectorised in NumPy
(every label of an image in one pass), and are exact by construction.

An instance is an 8-connected component of one export index (as OpenCV and Ultralytics' mask converter count
them). Its outline comes in two conventions, one per family of rasterisers:

* :attr:`PartPolygon.edges`: the pixel-edge outline in *corner* coordinates (pixel (x, y) is the square
  [x, x+1] x [y, y+1]); its area is the pixel count. Rasterisers that keep the pixels whose centres fall inside
  (pycocotools, CVAT's canvas) give back exactly the part. COCO and CVAT use it.
* :attr:`PartPolygon.centres`: the same outline moved half a pixel inwards, through the centres of the boundary
  pixels, in *centre* coordinates (pixel (x, y) is the point (x, y)). Rasterisers that fill a polygon and also draw
  its outline (PIL's ``ImageDraw.polygon(fill, outline)``, which labelme uses; OpenCV's ``fillPoly``, which
  Ultralytics uses) give back exactly the part, also where it is one pixel wide (there the polygon has no area,
  only outline; a one-pixel part is three copies of its centre). labelme and YOLO use it.

Holes: none of these formats has them, so each hole is joined to the outline by a zero-width cut along a pixel-grid
line through part pixels, from the hole's top-left corner up to the first outline above. Both kinds of rasteriser
leave a hole joined this way open, so holes survive. Diagonal neighbours belong to one instance, so an outline may
touch itself at a corner; both kinds of rasteriser handle that too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import EXPORT_IGNORE


@dataclass(frozen=True)
class PartPolygon:
    """One connected instance of one export index in one image."""

    index: int  # export index: 1..N, or EXPORT_IGNORE for the ignore regions
    edges: np.ndarray  # (K, 2) int64 x, y: pixel-edge outline in corner coordinates, holes joined by cuts
    centres: np.ndarray  # (M >= 3, 2) int64 x, y: the outline through boundary-pixel centres, centre coordinates
    area: int  # pixels
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels


def part_polygons(indices: np.ndarray, *, include_ignore: bool = False) -> list[PartPolygon]:
    """Every connected instance of every label (1..254, and 255 when ``include_ignore``) of an export-index map,
    ordered by label, then by the instance's first pixel in reading order."""
    if indices.ndim != 2 or indices.dtype != np.uint8:
        raise ValueError(f"An export-index map must be a 2-D uint8 array, got {indices.dtype} {indices.shape}.")
    values = np.full((indices.shape[0] + 2, indices.shape[1] + 2), -1, dtype=np.int16)  # a frame of "nothing"
    values[1:-1, 1:-1] = indices
    wanted = np.ones(256, dtype=bool)
    wanted[0] = False
    wanted[EXPORT_IGNORE] = include_ignore
    edges = _boundary_edges(values, wanted)
    if edges.x.size == 0:
        return []
    succ = _successors(edges)
    succ = _join_holes(values, edges, succ)
    return _polygons(values, edges, succ)


# ----- tracing ------------------------------------------------------------------------------------------------------
@dataclass
class _Edges:
    """Directed unit edges between pixel corners (padded frame), the part on the right when y points down."""

    x: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    value: np.ndarray
    rows: int  # corner keys are (value * rows + y) * stride + x, so each label's corners are its own
    stride: int

    def key(self, x, y, value):
        return (value * self.rows + y) * self.stride + x

    def decode(self, key: int) -> tuple[int, int, int]:
        """(x, y, value) of a corner key."""
        rest, x = divmod(key, self.stride)
        value, y = divmod(rest, self.rows)
        return x, y, value

    @property
    def start(self) -> np.ndarray:
        return self.key(self.x, self.y, self.value)

    @property
    def end(self) -> np.ndarray:
        return self.key(self.x + self.dx, self.y + self.dy, self.value)

    def append(self, x, y, dx, dy, value) -> None:
        for name, more in zip(("x", "y", "dx", "dy", "value"), (x, y, dx, dy, value)):
            setattr(self, name, np.concatenate([getattr(self, name), np.asarray(more, dtype=np.int64)]))


def _boundary_edges(values: np.ndarray, wanted: np.ndarray) -> _Edges:
    """The sides of every wanted pixel whose neighbour there holds another value."""
    inner = values[1:-1, 1:-1]
    keep = wanted[np.clip(inner, 0, 255)] & (inner >= 0)
    sides = (  # (neighbour, start corner offset, direction)
        (values[:-2, 1:-1], (0, 0), (1, 0)),  # top side: left → right
        (values[1:-1, 2:], (1, 0), (0, 1)),  # right side: top → bottom
        (values[2:, 1:-1], (1, 1), (-1, 0)),  # bottom side: right → left
        (values[1:-1, :-2], (0, 1), (0, -1)),  # left side: bottom → top
    )
    parts = []
    for neighbour, (ox, oy), (dx, dy) in sides:
        ry, rx = np.divmod(np.flatnonzero(keep & (inner != neighbour)), inner.shape[1])
        n = rx.size
        parts.append((rx + 1 + ox, ry + 1 + oy, np.full(n, dx), np.full(n, dy), inner[ry, rx]))
    columns = [np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(5)]
    return _Edges(*columns, rows=values.shape[0] + 1, stride=values.shape[1] + 1)


def _successors(edges: _Edges) -> np.ndarray:
    """Next edge of each edge along its outline. Where two pixels of one label touch only diagonally, the outline
    turns so that they stay one instance (8-connectivity): it takes the turn with cross product -1."""
    start, end = edges.start, edges.end
    order = np.argsort(start, kind="stable")
    keys = start[order]
    lo = np.searchsorted(keys, end, side="left")
    two = np.searchsorted(keys, end, side="right") - lo == 2
    first = order[lo]
    second = order[np.minimum(lo + 1, order.size - 1)]
    first_turns_right = edges.dx * edges.dy[first] - edges.dy * edges.dx[first] == -1
    return np.where(two & ~first_turns_right, second, first)


def _cycles(succ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cycle id = smallest edge of the cycle, position along the cycle from that edge) of a permutation, by
    pointer doubling: O(n log n) NumPy work instead of a Python walk over every edge."""
    n = succ.size
    ids = np.arange(n)
    head, jump = ids.copy(), succ.copy()
    steps = int(np.ceil(np.log2(max(n, 2)))) + 1
    for _ in range(steps):
        head = np.minimum(head, head[jump])
        jump = jump[jump]
    is_head = head == ids
    nxt = np.where(is_head, ids, succ)  # cut each cycle before its head, then count the steps to reach it
    dist = (~is_head).astype(np.int64)
    for _ in range(steps):
        dist = dist + dist[nxt]
        nxt = nxt[nxt]
    length = np.bincount(head, minlength=n)[head]
    return head, np.where(is_head, 0, length - dist)


def _join_holes(values: np.ndarray, edges: _Edges, succ: np.ndarray) -> np.ndarray:
    """Splice every hole into the outline above it with a zero-width cut (cut edges are appended to ``edges``);
    returns the new successors. Each cut ends on an outline whose top is higher, so every hole ends up in its
    instance's one outline whatever the order, and no two cuts share a corner."""
    head, _ = _cycles(succ)
    signed = np.bincount(head, weights=edges.x * edges.dy - edges.dx * edges.y, minlength=succ.size)
    holes = np.flatnonzero(signed < 0)  # outer outlines run clockwise on screen, holes the other way
    if holes.size == 0:
        return succ
    start, end = edges.start, edges.end
    by_head = np.argsort(head, kind="stable")
    bounds = np.flatnonzero(np.r_[True, np.diff(head[by_head]) != 0])
    corner = np.minimum.reduceat(start[by_head], bounds)  # top-left corner of each outline
    corner_of = dict(zip(head[by_head][bounds].tolist(), corner.tolist()))
    end_order = np.argsort(end, kind="stable")
    end_keys = end[end_order]

    def arriving(key: int) -> list[int]:
        lo, hi = np.searchsorted(end_keys, key, "left"), np.searchsorted(end_keys, key, "right")
        return end_order[lo:hi].tolist()

    links: list[tuple[int, int]] = []  # (edge, new successor), applied once every cut is known
    cut_edges = []
    next_id = succ.size
    for hole in holes.tolist():
        key = corner_of[hole]
        x, top, value = edges.decode(key)
        into = arriving(key)
        (a_v0,) = [e for e in into if edges.dx[e] == -1]  # along the bottom of the part pixel above the hole
        both = (values[:top, x - 1] == value) & (values[:top, x] == value)
        stop = int(np.flatnonzero(~both)[-1]) + 1  # the frame row is never part, so the line always stops
        if stop == top:  # the hole's corner touches another outline diagonally: swap the two turns there
            (other,) = [e for e in into if e != a_v0]
            links += [(a_v0, int(succ[other])), (other, int(succ[a_v0]))]
            continue
        (a_q,) = arriving(edges.key(x, stop, value))
        length = top - stop
        down, up = next_id + np.arange(length), next_id + length + np.arange(length)
        next_id += 2 * length
        ys = np.arange(stop, top)
        cut_edges.append((np.full(2 * length, x), np.concatenate([ys, ys[::-1] + 1]), np.zeros(2 * length),
                          np.repeat([1, -1], length), np.full(2 * length, value)))
        links += [(a_q, int(down[0])), (int(down[-1]), int(succ[a_v0])),
                  (a_v0, int(up[0])), (int(up[-1]), int(succ[a_q]))]
        links += list(zip(down[:-1].tolist(), down[1:].tolist())) + list(zip(up[:-1].tolist(), up[1:].tolist()))
    if cut_edges:
        edges.append(*(np.concatenate([c[i] for c in cut_edges]) for i in range(5)))
        succ = np.concatenate([succ, np.zeros(next_id - succ.size, dtype=succ.dtype)])
    else:
        succ = succ.copy()
    for edge, nxt in links:
        succ[edge] = nxt
    return succ


def _polygons(values: np.ndarray, edges: _Edges, succ: np.ndarray) -> list[PartPolygon]:
    """Each outline (one per instance now) as corner and centre polygons, in label then reading order."""
    head, position = _cycles(succ)
    order = np.lexsort((position, head))
    head = head[order]
    x, y, dx, dy = edges.x[order], edges.y[order], edges.dx[order], edges.dy[order]
    value = edges.value[order]
    first = np.flatnonzero(np.r_[True, head[1:] != head[:-1]])  # each outline's first edge
    last = np.r_[first[1:], head.size] - 1
    prev = np.arange(head.size) - 1
    prev[first] = last  # the edge arriving at each edge's start corner
    pdx, pdy = dx[prev], dy[prev]
    if np.any((pdx == -dx) & (pdy == -dy)):
        raise RuntimeError("Outline tracing produced a U-turn; please report the label map that caused it.")
    turn = (pdx != dx) | (pdy != dy)
    outline = np.cumsum(np.r_[0, np.diff(head) != 0])  # outline number of each edge
    area = np.bincount(outline, weights=x * dy - dx * y) // 2  # shoelace over unit edges: twice the pixel count
    corner_key = edges.key(x, y, value)
    reading = np.argsort(np.minimum.reduceat(corner_key, first), kind="stable")  # label, then first pixel

    t_outline, tx, ty = outline[turn], x[turn], y[turn]
    centres, c_outline = _centre_points(values, tx, ty, pdx[turn], pdy[turn], dx[turn], dy[turn], value[turn],
                                        t_outline)
    corner_split = np.flatnonzero(np.diff(t_outline)) + 1
    corners = np.split(np.stack([tx - 1, ty - 1], axis=1), corner_split)  # back from the padded frame
    centre_split = np.flatnonzero(np.diff(c_outline)) + 1
    centre_lists = np.split(centres - 1, centre_split)
    polygons = []
    for k in reading.tolist():
        c = corners[k]
        x0, y0 = c.min(axis=0)
        x1, y1 = c.max(axis=0)
        polygons.append(PartPolygon(int(value[first[k]]), c, _at_least_three(centre_lists[k]), int(area[k]),
                                    (int(x0), int(y0), int(x1 - x0), int(y1 - y0))))
    return polygons


def _interior_pixel(x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The part pixel beside the unit edge that starts at corner (x, y) with direction (dx, dy)."""
    return x - ((dy > 0) | (dx < 0)), y - ((dx < 0) | (dy < 0))


def _centre_points(values: np.ndarray, x, y, pdx, pdy, dx, dy, value, outline) -> tuple[np.ndarray, np.ndarray]:
    """The outline's corners moved half a pixel inwards (centre coordinates, padded frame), simplified, with the
    outline number of each point.

    At an ordinary corner the two edges' inward shifts meet at one pixel centre: the corner pixel, or the pixel
    diagonally inside a concave corner. Where two part pixels only touch diagonally, that diagonal pixel is not part:
    there the outline goes straight from one pixel's centre to the other's.
    """
    cx = x + (-pdy - dy - 1) // 2  # the interior normal of direction (dx, dy) is (-dy, dx) with y pointing down
    cy = y + (pdx + dx - 1) // 2
    concave = pdx * dy - pdy * dx == -1
    pinch = concave & (values[cy, cx] != value)
    ax, ay = _interior_pixel(x - pdx, y - pdy, pdx, pdy)  # the pixel the arriving edge runs along
    bx, by = _interior_pixel(x, y, dx, dy)  # the pixel the leaving edge runs along
    both = np.stack([np.stack([np.where(pinch, ax, cx), np.where(pinch, ay, cy)], axis=1),
                     np.stack([bx, by], axis=1)], axis=1).reshape(-1, 2)
    keep = np.stack([np.ones_like(pinch), pinch], axis=1).ravel()
    points, owner = both[keep], np.repeat(outline, 2)[keep]
    # drop repeats, then points in the middle of a straight run (reversals stay: a one-pixel-wide part goes out
    # and back); neighbours wrap around within each outline
    for straight_only in (False, True):
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        last = np.r_[first[1:], owner.size] - 1
        prev = np.arange(owner.size) - 1
        prev[first] = last
        before = points - points[prev]
        if not straight_only:
            drop = ~np.any(before != 0, axis=1)
            kept = np.bincount(owner[~drop], minlength=int(owner[-1]) + 1)
            drop[first[kept[owner[first]] == 0]] = False  # a one-pixel part keeps one point
        else:
            nxt = np.arange(owner.size) + 1
            nxt[last] = first
            after = points[nxt] - points
            drop = (before[:, 0] * after[:, 1] == before[:, 1] * after[:, 0]) & (np.sum(before * after, axis=1) > 0)
        points, owner = points[~drop], owner[~drop]
    return points, owner


def _at_least_three(points: np.ndarray) -> np.ndarray:
    """labelme and Ultralytics need three points; a one- or two-point outline repeats its last point."""
    if len(points) >= 3:
        return points
    return np.concatenate([points, np.repeat(points[-1:], 3 - len(points), axis=0)])
