"""Synthetic Speech Commands, for tests and benchmarks without the dataset: clips whose MFCCs look like real
recordings' to the networks (labels meaningless), as a test folder in the official layout, and the two
official archives in their layouts.

Train archive (no top folder, members "./<word>/<speaker hash>_nohash_<n>.wav"): a few command words
and non-command words, validation_list.txt and testing_list.txt naming some files,
`_background_noise_/` with three noise files, README.md and LICENSE.
Test archive (no top folder either, members "./<label>/<file>.wav"): one folder per label, the 12
labels with `_silence_` and `_unknown_` included, as TFDS expects (it globs `<extracted>/*/*.wav`).
All clips are 16 kHz mono int16: a word-dependent tone plus noise.
"""

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io.wavfile

from keyword_spotting import data, sound

RATE = 16000
TRAIN_ARCHIVE = "speech_commands_v0.02.tar.gz"
TEST_ARCHIVE = "speech_commands_test_set_v0.02.tar.gz"
TEST_LABELS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_")

TRAIN_WORDS = ("yes", "no", "down", "marvin", "tree")  # three command words, two `_unknown_` words
SPEAKERS = ("0a1b2c3d", "4e5f6a7b", "8c9d0e1f", "a2b3c4d5")
UTTERANCES = (0, 1)
# speaker -> split assignment written into the list files
VALIDATION_SPEAKER, TESTING_SPEAKER = "4e5f6a7b", "8c9d0e1f"
# background noise: name -> samples. white_noise is a whole number of hops long (the boundary case of
# the real 60 s pink/white noise files); dude_miaowing is named in validation_list.txt; running_tap
# is not, but goes to validation as in TFDS.
NOISE_FILES = {"white_noise.wav": 48000, "dude_miaowing.wav": 59200, "running_tap.wav": 52800}
LISTED_NOISE = "dude_miaowing.wav"


@dataclass
class TrainLayout:
    """What write_train_tree wrote: clip paths (relative, posix) -> word; the listed paths; noise lengths."""

    files: dict[str, str] = field(default_factory=dict)
    validation: set[str] = field(default_factory=set)
    testing: set[str] = field(default_factory=set)
    noise: dict[str, int] = field(default_factory=dict)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write `samples` (int16, or any dtype scipy accepts) as a WAV file, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.wavfile.write(path, rate, samples)
    return path


def word_frequency(word: str) -> float:
    """A tone frequency (Hz) that depends on the word."""
    return 250.0 + 37.0 * (sum(ord(c) for c in word) % 60)


def tone_clip(rng: np.random.Generator, frequency: float, n_samples: int = RATE, rate: int = RATE) -> np.ndarray:
    """int16 clip: a sine of `frequency` with a random amplitude and phase, plus Gaussian noise."""
    t = np.arange(n_samples) / rate
    amplitude = rng.uniform(3000, 12000)
    signal = amplitude * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    signal += rng.normal(0, 300, n_samples)
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)


def noise_clip(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """int16 Gaussian noise."""
    return np.clip(np.rint(rng.normal(0, 2000, n_samples)), -32768, 32767).astype(np.int16)


def write_train_tree(root: Path, seed: int = 0) -> TrainLayout:
    """Write an extracted train archive into `root`; returns what it holds.

    Every word has len(SPEAKERS) * len(UTTERANCES) clips; clips of VALIDATION_SPEAKER are named in
    validation_list.txt, those of TESTING_SPEAKER in testing_list.txt; utterance 1 clips are 0.8 s long.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    layout = TrainLayout()
    for word in TRAIN_WORDS:
        for speaker in SPEAKERS:
            for n in UTTERANCES:
                path = f"{word}/{speaker}_nohash_{n}.wav"
                write_wav(root / path, tone_clip(rng, word_frequency(word), RATE if n == 0 else 12800))
                layout.files[path] = word
                if speaker == VALIDATION_SPEAKER:
                    layout.validation.add(path)
                elif speaker == TESTING_SPEAKER:
                    layout.testing.add(path)
    for name, n_samples in NOISE_FILES.items():
        write_wav(root / "_background_noise_" / name, noise_clip(rng, n_samples))
        layout.noise[name] = n_samples
    (root / "_background_noise_" / "README.md").write_text("Synthetic background noise.\n")
    layout.validation.add(f"_background_noise_/{LISTED_NOISE}")
    (root / "validation_list.txt").write_text("".join(f"{p}\n" for p in sorted(layout.validation)))
    (root / "testing_list.txt").write_text("".join(f"{p}\n" for p in sorted(layout.testing)))
    (root / "README.md").write_text("Synthetic Speech Commands v0.02 train archive for tests.\n")
    (root / "LICENSE").write_text("CC BY 4.0 (synthetic stand-in)\n")
    return layout


def write_test_tree(root: Path, per_label: int = 2, seed: int = 1) -> list[tuple[str, str]]:
    """Write an extracted test archive into `root`: `per_label` 1 s clips in each of the 12 label
    folders. Returns (relative path, label) pairs sorted by path."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    written = []
    for label in TEST_LABELS:
        for i in range(per_label):
            if label == "_silence_":
                name, samples = f"{1000 + i}.wav", noise_clip(rng, RATE)
            elif label == "_unknown_":
                word = ("marvin", "tree", "three")[i % 3]
                name, samples = f"{word}_{i:08x}_nohash_0.wav", tone_clip(rng, word_frequency(word))
            else:
                name, samples = f"{i:08x}_nohash_{i % 3}.wav", tone_clip(rng, word_frequency(label))
            write_wav(root / label / name, samples)
            written.append((f"{label}/{name}", label))
    return sorted(written)


def tar_folder(folder: Path, archive: Path) -> Path:
    """Tar.gz the contents of `folder` with "./"-prefixed member names (no top folder)."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(Path(folder).rglob("*")):
            tar.add(path, arcname=f"./{path.relative_to(folder).as_posix()}", recursive=False)
    return archive


def make_archives(root: Path, per_label: int = 2) -> tuple[Path, Path, TrainLayout, list[tuple[str, str]]]:
    """Write both synthetic trees under `root`/source_* and archive them as `root`/<official names>.

    Returns (train archive, test archive, train layout, test (path, label) pairs).
    """
    root = Path(root)
    layout = write_train_tree(root / "source_train")
    test = write_test_tree(root / "source_test", per_label=per_label)
    return (
        tar_folder(root / "source_train", root / TRAIN_ARCHIVE),
        tar_folder(root / "source_test", root / TEST_ARCHIVE),
        layout,
        test,
    )


def synthetic_clips(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 (n, 16000) in [-1, 1]: a tone burst with a smooth envelope in faint noise, or (1 in 12)
    noise alone; labels (n,) in 0..11 (the pitch band)."""
    rate = sound.SAMPLE_RATE
    labels = rng.integers(0, 12, n)
    t = np.arange(rate) / rate
    clips = rng.normal(0.0, 2e-4, (n, rate))
    for row, label in enumerate(labels):
        if label == 10:  # "silence": background noise only
            clips[row] += rng.normal(0.0, 0.02, rate)
            continue
        length = rng.uniform(0.25, 0.8)
        start = rng.uniform(0.0, 1.0 - length)
        inside = (t >= start) & (t < start + length)
        envelope = np.where(inside, np.sin(np.pi * (t - start) / length) ** 2, 0.0)
        pitch = 180.0 + 60.0 * label + rng.uniform(-20, 20)
        voice = sum(np.sin(2 * np.pi * k * pitch * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
        clips[row] += rng.uniform(0.2, 0.9) * envelope * voice + envelope * rng.normal(0.0, 0.03, rate)
        if rng.random() < 0.3:  # a recording shorter than 1 s, zero-padded as the feature pipeline pads
            clips[row, int(rate * max(start + length, rng.uniform(0.7, 0.95))) :] = 0.0
    return np.clip(clips, -1.0, 1.0).astype(np.float32), labels.astype(np.int64)


def synthetic_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(MFCCs float32 (n, 49, 10, 1), labels (n,)) of `synthetic_clips`, through the project's own feature
    pipeline, so that quiet and padded frames reach the strongly negative values real recordings give."""
    clips, labels = synthetic_clips(np.random.default_rng(seed), n)
    return sound.compute_mfcc(sound.normalize_and_pad(clips)), labels


def write_synthetic_test_set(folder: str | os.PathLike, n: int, seed: int = 0) -> Path:
    """`synthetic_clips` as 16-bit WAV files in `folder`/speech_commands_test_set_v0.02/<label>/, the
    official test archive's layout (label = the clip's pitch band); returns the folder test.sh reads."""
    clips, labels = synthetic_clips(np.random.default_rng(seed), n)
    for i, (clip, label) in enumerate(zip(clips, labels)):
        path = Path(folder) / data.TEST_FOLDER / data.LABELS[label] / f"synthetic{i:05d}_nohash_0.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.wavfile.write(path, sound.SAMPLE_RATE, np.round(clip * 32767).astype(np.int16))
    return Path(folder)


def write_synthetic_archives(folder: str | os.PathLike) -> Path:
    """A mirror of the official archives, tiny, in `folder`; returns it."""
    make_archives(folder, per_label=1)
    return Path(folder)
