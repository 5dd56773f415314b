"""The benchmark images' pixels exactly as the reference's loaders make them: decoded, and for CelebA squashed, by
OpenCV (docs/mpae-reference.md §2, §5).

Every reference loader (CUB, CelebA, PartImageNet OOD/Seg) reads its image with ``cv2.imread`` and swaps the channel
order; CelebA then squashes it to S×S with ``cv2.resize`` (INTER_LINEAR) before its torchvision transform.  This
module calls OpenCV itself (the ``opencv-python-headless`` dependency) instead of reproducing it, because measured
against it (OpenCV 5.0, Pillow 13, on generated JPEGs of many sizes and subsamplings and the demo images):

* the squash is OpenCV's fixed-point arithmetic (11-bit weights, integer rounding), not a float bilinear: the float
  version this project used before differed by 1 on 12.5 % of the values of a 178×218 face and 10.6 % over all
  sizes tried, and any reproduction would have to follow OpenCV's coefficient and SIMD code paths as they evolve;
* the decode equals Pillow's for ordinary RGB and grayscale JPEGs, but not for CMYK JPEGs (ImageNet, hence
  PartImageNet, has some: ±1 on 99.7 % of the values), PNGs with alpha (OpenCV drops it, the project's loader
  composites over white) or 16-bit PNGs (OpenCV keeps the high byte, the project's loader rounds).

Like ``cv2.imread``, EXIF orientation is applied.  Files are read as bytes and decoded with ``cv2.imdecode`` (the same
decoder) so that paths OpenCV cannot open on Windows (non-ASCII) still work.  Images that OpenCV cannot decode raise
:class:`~mpae_core.images.ImageLoadError` with the project loader's reason when Pillow cannot read them either.
"""
from __future__ import annotations

import os

import numpy as np

from mpae_core.images import ImageLoadError, load_image
from mpae_core.opencv import import_opencv


cv2 = import_opencv()
# DataLoader worker processes are the parallelism here; OpenCV's own thread pool would oversubscribe the cores and
# is not meant to be alive across the fork that starts those workers.
cv2.setNumThreads(0)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of ``path`` as ``cv2.cvtColor(cv2.imread(path), COLOR_BGR2RGB)`` gives them."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        data = None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if bgr is None:
        load_image(path)  # raises ImageLoadError saying why (missing, empty, not an image, ...)
        raise ImageLoadError(path, "OpenCV cannot decode it, and the benchmark datasets are read with OpenCV as the "
                                   "reference reads them", "convert it to JPEG or PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def squash_rgb(pixels: np.ndarray, size: int) -> np.ndarray:
    """``pixels`` squashed to size×size by ``cv2.resize(..., INTER_LINEAR)`` (no antialias; uint8 fixed point)."""
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
