"""A deterministic CIFAR-shaped dataset with class structure, for offline runs and tests.

Each class has a fixed blocky colour pattern. A sample is its class's pattern, faded towards a
second random class's and circularly shifted by a few pixels, plus pixel noise: learnable well
above chance, far from trivially. Sample i of a split depends only on the seed and i, so a
smaller dataset is exactly the first samples of a larger one.
"""

import numpy as np
import torch

from server.core.experiment import CLASSES, DATASET_SIZES, IMAGE_SHAPE
from worker.engine.dataset import Dataset, Split

_CHUNK = 1000  # samples drawn per generator, so sample i does not depend on the split's size
_BLOCKS = 8  # pattern resolution: 8 x 8 blocks of 4 x 4 pixels
_CONTRAST = 60.0
_NOISE = 50.0
_SHIFT = 2  # largest shift, pixels, each direction


TRAIN_SIZE, TEST_SIZE = DATASET_SIZES["synthetic"]


def synthetic(train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE, seed: int = 0) -> Dataset:
    patterns = _patterns(seed)
    return Dataset(
        train=_split(patterns, [seed, 1], train_size), test=_split(patterns, [seed, 2], test_size)
    )


def _patterns(seed: int) -> np.ndarray:
    """One 3 x 32 x 32 pattern per class: blocks of random colour in [-1, 1]."""
    coarse = np.random.default_rng([seed, 0]).uniform(-1, 1, (CLASSES, 3, _BLOCKS, _BLOCKS))
    scale = 32 // _BLOCKS
    return coarse.repeat(scale, axis=2).repeat(scale, axis=3).astype(np.float32)


def _split(patterns: np.ndarray, key: list[int], size: int) -> Split:
    images = np.empty((size, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(size, dtype=np.int64)
    pixel = np.arange(32)
    channel = np.arange(3)[None, :, None, None]
    for start in range(0, size, _CHUNK):
        rng = np.random.default_rng([*key, start // _CHUNK])
        label, other = rng.integers(0, CLASSES, (2, _CHUNK))
        share = rng.uniform(0.5, 1.0, (_CHUNK, 1, 1, 1)).astype(np.float32)
        shift = rng.integers(-_SHIFT, _SHIFT + 1, (2, _CHUNK, 1))
        rows = ((pixel + shift[0]) % 32)[:, None, :, None]
        cols = ((pixel + shift[1]) % 32)[:, None, None, :]
        mixed = share * patterns[label] + (1 - share) * patterns[other]
        shifted = mixed[np.arange(_CHUNK)[:, None, None, None], channel, rows, cols]
        noise = rng.standard_normal((_CHUNK, *IMAGE_SHAPE), dtype=np.float32)
        pixels = 127.5 + _CONTRAST * shifted + _NOISE * noise
        n = min(_CHUNK, size - start)
        images[start : start + n] = np.clip(np.rint(pixels[:n]), 0, 255)
        labels[start : start + n] = label[:n]
    return Split(torch.from_numpy(images), torch.from_numpy(labels))
