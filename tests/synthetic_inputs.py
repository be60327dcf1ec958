"""Synthetic model inputs in each task's real input range, for offline tests and benchmarks (not a test module).

Each generator gives float32 arrays of the task's input shape whose values look, to the networks, like
their real inputs, so that activation ranges (and hence int8 quantisation) are realistic:
- image classification: CIFAR-like 32x32 RGB in [0, 255], a class colour plus noise (`synthetic.random_batch`);
- keyword spotting: MFCCs (49, 10, 1) of 1 s clips holding a harmonic tone burst (a "word") of random
  pitch, length and position in faint noise, some zero-padded like recordings shorter than 1 s,
  computed by the project's own feature pipeline, so that quiet and padded frames reach the strongly
  negative values real recordings give;
- visual wake words: 96x96 RGB in [0, 1], smooth random colour fields (bilinear upsampling of a
  coarse random grid) with mild noise.
"""

import numpy as np

from tests import synthetic  # tests/ as a package: benchmarks import this module too

RATE = 16000


def cifar_images(rng, n):
    """float32 (n, 32, 32, 3) in [0, 255] and labels (n,)."""
    batch = synthetic.random_batch(rng, n, "synthetic")
    images = batch[b"data"].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images, dtype=np.float32), np.asarray(batch[b"labels"], np.int64)


def word_clips(rng, n):
    """float32 (n, 16000) in [-1, 1]: a tone burst with a smooth envelope in faint noise, or (1 in 12)
    noise alone; labels (n,) in 0..11 (the pitch band, meaningless to a trained model)."""
    labels = rng.integers(0, 12, n)
    t = np.arange(RATE) / RATE
    clips = rng.normal(0.0, 2e-4, (n, RATE))
    for row, label in enumerate(labels):
        if label == 10:  # "silence": background noise only
            clips[row] += rng.normal(0.0, 0.02, RATE)
            continue
        length = rng.uniform(0.25, 0.8)
        start = rng.uniform(0.0, 1.0 - length)
        inside = (t >= start) & (t < start + length)
        envelope = np.where(inside, np.sin(np.pi * (t - start) / length) ** 2, 0.0)
        pitch = 180.0 + 60.0 * label + rng.uniform(-20, 20)
        voice = sum(np.sin(2 * np.pi * k * pitch * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
        clips[row] += rng.uniform(0.2, 0.9) * envelope * voice + envelope * rng.normal(0.0, 0.03, RATE)
        if rng.random() < 0.3:  # a recording shorter than 1 s, zero-padded as the feature pipeline pads
            clips[row, int(RATE * max(start + length, rng.uniform(0.7, 0.95))) :] = 0.0
    return np.clip(clips, -1.0, 1.0).astype(np.float32), labels.astype(np.int64)


def mfcc_features(rng, n):
    """float32 (n, 49, 10, 1) MFCCs of `word_clips`, and their labels."""
    from keyword_spotting import sound

    clips, labels = word_clips(rng, n)
    return sound.compute_mfcc(sound.normalize_and_pad(clips)), labels


def smooth_images(rng, n, size=96, grid=6):
    """float32 (n, size, size, 3) in [0, 1]: bilinear upsampling of a (grid, grid, 3) random field plus
    noise; labels (n,) in {0, 1} (meaningless to a trained model)."""
    coarse = rng.uniform(0.0, 1.0, (n, grid, grid, 3))
    position = np.linspace(0, grid - 1, size)
    low = np.minimum(position.astype(int), grid - 2)
    frac = (position - low)[None, :, None, None]
    rows = coarse[:, low] * (1 - frac) + coarse[:, low + 1] * frac
    frac = frac.reshape(1, 1, size, 1)
    images = rows[:, :, low] * (1 - frac) + rows[:, :, low + 1] * frac
    images += rng.normal(0.0, 0.03, images.shape)
    return np.clip(images, 0.0, 1.0).astype(np.float32), rng.integers(0, 2, n).astype(np.int64)


GENERATORS = {
    "image_classification": cifar_images,
    "keyword_spotting": mfcc_features,
    "visual_wake_words": smooth_images,
}


def model_inputs(task, n, seed=0):
    """(inputs float32 (n, *input shape), labels int64 (n,)) for `task`, reproducible from `seed`."""
    return GENERATORS[task](np.random.default_rng(seed), n)
