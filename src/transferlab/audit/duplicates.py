"""Near-duplicate images: pairs whose features are nearly parallel, confirmed by a perceptual hash.

Cosine similarity of the (cached) features finds candidate pairs among all images at once; imagehash's
pHash (a DCT of the grey image) confirms that the two are the same photo, re-encoded, resized or cropped,
and not two similar photos. Pairs within a split and across splits are both reported; a test image with a
duplicate in training inflates test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

SAME_PICTURE_COSINE = 0.999  # with equal pHashes: the same picture saved twice (Flowers-17 holds 60 such pairs)


@dataclass
class DuplicatePair:
    first: int
    second: int
    cosine: float
    hash_distance: int  # bits of the 64-bit pHash that differ
    exact: bool  # the same picture: the same file content, or equal pHashes at cosine >= SAME_PICTURE_COSINE

    def splits(self, split_of: list[str]) -> tuple[str, str]:
        return split_of[self.first], split_of[self.second]


def candidate_pairs(features: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Index pairs (i < j) whose feature cosine is at least ``threshold``, most similar first."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    pairs = []
    for start in range(0, len(unit), 512):  # a block of rows at a time: memory stays O(512 N)
        block = unit[start:start + 512] @ unit.T
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows, cols):
            i = start + int(r)
            if i < c:
                pairs.append((i, int(c), float(block[r, c])))
    return sorted(pairs, key=lambda p: -p[2])


def perceptual_hashes(paths: list[Path]):
    """pHash of each image (None where it cannot be read)."""
    try:
        import imagehash
    except ImportError:
        raise UserError("audit confirms duplicates with a perceptual hash: pip install 'transferlab[audit]' "
                        "(imagehash)") from None
    from PIL import Image

    hashes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                hashes.append(imagehash.phash(image))
        except OSError:
            hashes.append(None)
    return hashes


def find_duplicates(features: np.ndarray, paths: list[Path], digests: list[str | None], cosine: float,
                    max_distance: int) -> list[DuplicatePair]:
    """Pairs at feature cosine >= ``cosine`` whose pHashes differ in at most ``max_distance`` bits."""
    candidates = candidate_pairs(features, cosine)
    involved = sorted({i for pair in candidates for i in pair[:2]})
    hashes = dict(zip(involved, perceptual_hashes([paths[i] for i in involved])))
    found = []
    for i, j, similarity in candidates:
        if hashes[i] is None or hashes[j] is None:
            continue
        distance = int(hashes[i] - hashes[j])
        if distance <= max_distance:
            same_file = digests[i] is not None and digests[i] == digests[j]
            same_picture = distance == 0 and similarity >= SAME_PICTURE_COSINE
            found.append(DuplicatePair(i, j, similarity, distance, same_file or same_picture))
    return found
