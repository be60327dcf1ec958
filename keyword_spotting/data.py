"""Speech Commands v0.02: download, TFDS-style splits, reading the clips, cache, tf.data pipelines.

Layout under a data directory:
  speech_commands_v0.02/            the train archive (it has no top folder): `<word>/*.wav`,
                                    `_background_noise_/*.wav`, validation_list.txt, testing_list.txt
  speech_commands_test_set_v0.02/   the official test archive: `<label>/*.wav` for the 12 labels,
                                    `_silence_` and `_unknown_` included. It has no top folder either
                                    (TFDS globs `<extracted>/*/*.wav`); an archive wrapping the label
                                    folders in one top folder is unwrapped on extraction.
  cache/                            written by `preprocess` (see there)

Splits follow TFDS `speech_commands` (builder 0.0.2), which the authors load: train 85,511,
validation 10,102 (its own files plus `_silence_` windows), test 4,890 (the test archive).

Clips are read and featurised by keyword_spotting/sound.py. One deliberate departure from the
authors' / MLPerf Tiny reference lives here: the reference's train augmentation is dead (no-op shift,
noise frozen at trace time); here every sample draws its own shift and noise (`augment_clips`).
"""

import concurrent.futures
import math
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from common import files
from common.download import check_split, extract, fetch, merge_tree
from common.errors import UserError
from common.progress import Progress
from common.tasks import LoadedSet
from keyword_spotting.sound import (
    CLIP_SAMPLES,
    FEATURE_SHAPE,
    INT16_FULL_SCALE,
    MFCC_CHUNK,
    SAMPLE_RATE,
    WavReadError,
    compute_mfcc,
    mfcc,
    normalize,
    peak_divisor,
    read_wav,
)

TRAIN_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
TEST_URL = "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"
# Both SHA-256 values (and sizes, 2,428,923,189 and 112,563,277 bytes) are published by TensorFlow
# Datasets in tensorflow_datasets/url_checksums/speech_commands.txt (tensorflow/datasets on GitHub);
# the train one also by torchaudio (torchaudio/datasets/speechcommands.py, _CHECKSUMS).
TRAIN_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
TEST_SHA256 = "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"

TRAIN_FOLDER = "speech_commands_v0.02"
TEST_FOLDER = "speech_commands_test_set_v0.02"
CACHE_FOLDER = "cache"

COMMAND_WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
LABELS = (*COMMAND_WORDS, SILENCE, UNKNOWN)
SILENCE_INDEX, UNKNOWN_INDEX = LABELS.index(SILENCE), LABELS.index(UNKNOWN)
BACKGROUND_NOISE = "_background_noise_"
VALIDATION_LIST, TESTING_LIST = "validation_list.txt", "testing_list.txt"
# TFDS adds this noise file to validation by hand; it is not in validation_list.txt.
VALIDATION_NOISE_FILES = ("running_tap.wav",)

WINDOW_HOP = SAMPLE_RATE // 2
MAX_SHIFT = SAMPLE_RATE // 10  # +-100 ms
NOISE_PROBABILITY = 0.8
NOISE_MAX_VOLUME = 0.1

READ_THREADS = 4  # threads overlap file I/O; parsing is GIL-bound, so more do not help
READ_BLOCK = 1024


@dataclass(frozen=True, order=True)
class Example:
    """One clip: `path` relative to its archive folder (posix), label index, and for a 1 s window
    cut out of a background-noise file its first sample (None for a whole clip)."""

    path: str
    label: int
    start: int | None = None

    @property
    def key(self) -> str:
        """`path`, or `path#start` for a background-noise window."""
        return self.path if self.start is None else f"{self.path}#{self.start}"


def label_index(word: str) -> int:
    """Label of a folder name as TFDS assigns it: a command word, `_silence_` (also for
    `_background_noise_`), or `_unknown_` for every other word."""
    if word in COMMAND_WORDS:
        return COMMAND_WORDS.index(word)
    if word in (SILENCE, BACKGROUND_NOISE):
        return SILENCE_INDEX
    return UNKNOWN_INDEX


def _download_hint(data_dir: Path) -> str:
    return f"run bash keyword_spotting/download.sh --data-dir {data_dir}"


def _preprocess_hint(data_dir: Path) -> str:
    return f"run bash keyword_spotting/preprocess.sh --data-dir {data_dir}"


# ------------------------------------------------------------------------------------------------
# Download


def _train_complete(folder: Path) -> bool:
    """Both list files, `_background_noise_/` and every word folder the lists name are there."""
    lists = [folder / name for name in (VALIDATION_LIST, TESTING_LIST)]
    if not all(path.is_file() for path in lists) or not (folder / BACKGROUND_NOISE).is_dir():
        return False
    words = {
        line.strip().replace("\\", "/").split("/")[0]
        for path in lists
        for line in path.read_text().splitlines()
        if line.strip()
    }
    return all((folder / word).is_dir() for word in words)


def _test_complete(folder: Path) -> bool:
    return all((folder / label).is_dir() for label in LABELS)


def _extract_into(archive: Path, folder: Path, complete: Callable[[Path], bool], force: bool = False) -> None:
    """Unpack `archive` into a temporary sibling and, once it is complete, rename it to `folder` (or, when
    `folder` exists, merge it in: see `merge_tree`), so `folder` never exists half-written. An archive
    holding one top folder is unwrapped."""
    staging = folder.with_name(f".{folder.name}.unpacking")
    if staging.exists():
        shutil.rmtree(staging)
    extract(archive, staging)
    root = staging
    entries = [entry for entry in staging.iterdir() if not entry.name.startswith(".")]
    if not complete(root) and len(entries) == 1 and entries[0].is_dir() and complete(entries[0]):
        root = entries[0]
    if not complete(root):
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"{archive} did not unpack to the expected Speech Commands layout "
            f"(label folders{' and list files' if complete is _train_complete else ''}); "
            "check the URL, delete the archive and download again"
        )
    try:
        if folder.exists():
            merge_tree(root, folder, force, str(archive))
        else:
            os.replace(root, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(
    data_dir: Path,
    train_url: str = TRAIN_URL,
    test_url: str = TEST_URL,
    train_sha256: str | None = TRAIN_SHA256,
    test_sha256: str | None = TEST_SHA256,
    split: str = "all",
    force: bool = False,
) -> Path:
    """Fetch the archives `split` needs into `data_dir` (resumable, SHA-256-checked, kept for re-runs) and
    unpack them: "train" the train archive to `data_dir`/speech_commands_v0.02, "test" the official test
    archive to `data_dir`/speech_commands_test_set_v0.02, "all" both.

    Each folder is skipped when already complete. Unpacking into an incomplete folder keeps its other
    files and never replaces one whose content differs unless `force`. Returns `data_dir`.
    """
    check_split(split)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    parts = {
        "train": (train_url, train_sha256, TRAIN_FOLDER, _train_complete),
        "test": (test_url, test_sha256, TEST_FOLDER, _test_complete),
    }
    for url, sha256, folder_name, complete in (parts[name] for name in parts if split in (name, "all")):
        folder = data_dir / folder_name
        if complete(folder):
            print(f"{folder} already present")
            continue
        archive_name = PurePosixPath(url.split("?")[0]).name or f"{folder_name}.tar.gz"
        archive = fetch(url, data_dir / archive_name, sha256=sha256)
        print(f"Extracting {archive} to {folder}")
        _extract_into(archive, folder, complete, force)
    return data_dir


# ------------------------------------------------------------------------------------------------
# Splits


def _read_list(path: Path, data_hint: str) -> set[str]:
    if not path.is_file():
        raise UserError(f"Speech Commands list {path} not found; the train folder is incomplete, {data_hint}")
    return {
        str(PurePosixPath(line.strip().replace("\\", "/"))) for line in path.read_text().splitlines() if line.strip()
    }


def _wav_names(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".wav") and entry.is_file())


def _word_folders(root: Path) -> list[Path]:
    return sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def noise_windows(n_samples: int) -> range:
    """Starts of the 1 s silence windows TFDS cuts from a background-noise file of `n_samples`:
    `range(0, n_samples - 16000, 8000)`. Note the exclusive end: a window ending exactly at the
    last sample is not taken, so a 60 s file (960,000 samples, as pink_noise.wav and
    white_noise.wav are) gives 118 windows, not 119. This is what makes train 85,511 clips."""
    return range(0, n_samples - CLIP_SAMPLES, WINDOW_HOP)


def _wav_length(path: Path) -> int:
    return len(read_wav(path))


def split_files(train_root: Path) -> dict[str, list[Example]]:
    """The TFDS `speech_commands` train and validation splits of the train archive folder.

    A `<word>/<file>.wav` goes to validation if validation_list.txt names it, is dropped if
    testing_list.txt names it (the test split is the separate test archive), else to train; its label
    is the word for the 10 command words and `_unknown_` otherwise. `_background_noise_/*.wav` files are
    cut into `_silence_` windows (`noise_windows`); a noise file goes to validation when
    validation_list.txt names it or it is running_tap.wav (as TFDS does), else to train.
    Returns {"train": [...], "validation": [...]}, each sorted by (path, start).
    """
    train_root = Path(train_root)
    hint = _download_hint(train_root.parent)
    if not train_root.is_dir():
        raise UserError(f"Speech Commands folder {train_root} not found; {hint}")
    validation = _read_list(train_root / VALIDATION_LIST, hint)
    testing = _read_list(train_root / TESTING_LIST, hint)
    splits: dict[str, list[Example]] = {"train": [], "validation": []}
    found: set[str] = set()
    for folder in _word_folders(train_root):
        for name in _wav_names(folder):
            path = f"{folder.name}/{name}"
            found.add(path)
            if folder.name == BACKGROUND_NOISE:
                split = "validation" if path in validation or name in VALIDATION_NOISE_FILES else "train"
                splits[split].extend(
                    Example(path, SILENCE_INDEX, start) for start in noise_windows(_wav_length(folder / name))
                )
            elif path in validation:
                splits["validation"].append(Example(path, label_index(folder.name)))
            elif path not in testing:
                splits["train"].append(Example(path, label_index(folder.name)))
    if not splits["train"] and not splits["validation"]:
        raise UserError(f"No .wav files under {train_root}/<word>/; {hint}")
    missing = len(validation - found)
    if missing:
        print(f"warning: {missing} files named in {train_root / VALIDATION_LIST} are missing", file=sys.stderr)
    return {split: sorted(examples) for split, examples in splits.items()}


def list_test_clips(test_root: Path) -> list[Example]:
    """Every `<label>/*.wav` of the official test archive folder, label = folder name, sorted by path.

    The folders holding .wav files must be the 12 labels themselves (`_unknown_` and `_silence_`
    included, as in the official test set); any other (e.g. `Yes/`) is a UserError naming it and listing
    the labels, rather than being scored as `_unknown_`.
    """
    test_root = Path(test_root)
    if not test_root.is_dir():
        raise UserError(f"Speech Commands test folder {test_root} not found; {_download_hint(test_root.parent)}")
    folders = [(folder, _wav_names(folder)) for folder in _word_folders(test_root)]
    unknown = [folder for folder, names in folders if names and folder.name not in LABELS]
    if unknown:
        raise UserError(
            f"Test folder {unknown[0]} is not one of the 12 labels"
            f"{f' (nor are {len(unknown) - 1} more)' if len(unknown) > 1 else ''}; label folders "
            f"under {test_root} must be named {', '.join(LABELS)}: rename or move it"
        )
    return sorted(
        Example(f"{folder.name}/{name}", LABELS.index(folder.name)) for folder, names in folders for name in names
    )


# ------------------------------------------------------------------------------------------------
# Reading many clips


def _read_segments(
    root: Path, examples: Sequence[Example], label: str, consume: Callable[[int, np.ndarray], None]
) -> list[tuple[int, str]]:
    """Read the 1 s segment of every example (whole clips: the first 16,000 samples; windows:
    [start, start + 16000)) and call consume(row, float32 samples) in the calling thread.

    Each file is read once (a noise file serves all its windows). An unreadable or empty file is
    reported on stderr and its rows are skipped; returns the skipped (row, reason) pairs.
    """
    rows_of: dict[str, list[int]] = {}
    for row, example in enumerate(examples):
        rows_of.setdefault(example.path, []).append(row)

    def load(path: str) -> tuple[str, np.ndarray | WavReadError]:
        try:
            return path, read_wav(root / path)
        except WavReadError as err:
            return path, err

    skipped: list[tuple[int, str]] = []
    paths = list(rows_of)
    progress = Progress(label, len(examples))
    with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
        for begin in range(0, len(paths), READ_BLOCK):  # blocks bound the clips held in memory
            for path, samples in pool.map(load, paths[begin : begin + READ_BLOCK]):
                rows = rows_of[path]
                if isinstance(samples, WavReadError):
                    sys.stderr.write(f"\nskipping {root / path}: {samples}\n")
                    skipped.extend((row, samples.reason) for row in rows)
                else:
                    for row in rows:
                        start = examples[row].start or 0
                        consume(row, samples[start : start + CLIP_SAMPLES])
                progress.advance(len(rows))
    progress.finish()
    return skipped


def _report_skipped(skipped: list[tuple[int, str]], what: str) -> np.ndarray:
    """Print how many `what` files were skipped (stderr); return the skipped rows."""
    if skipped:
        print(
            f"Skipped {len(skipped)} unreadable, damaged or empty {what} file{'s' if len(skipped) != 1 else ''}",
            file=sys.stderr,
        )
    return np.array([row for row, _ in skipped], dtype=np.int64)


def _test_root(data_dir: Path) -> Path:
    """`data_dir`/speech_commands_test_set_v0.02; UserError when it is not there, saying what to pass instead
    when `data_dir` is that folder itself, or another one holding the label folders."""
    data_dir = Path(data_dir)
    root = data_dir / TEST_FOLDER
    labelled = [label for label in LABELS if (data_dir / label).is_dir()]
    if not root.is_dir() and data_dir.name == TEST_FOLDER:
        raise UserError(
            f"--data-dir {data_dir} is the test folder itself; pass the folder holding it: --data-dir {data_dir.parent}"
        )
    if not root.is_dir() and labelled:
        raise UserError(
            f"--data-dir {data_dir} holds the label folders ({', '.join(f'{label}/' for label in labelled[:3])}...) "
            f"themselves; the test set is read from DIR/{TEST_FOLDER}/<label>/: move them into "
            f"{root} and pass --data-dir {data_dir}"
        )
    if not root.is_dir():
        raise UserError(
            f"Speech Commands test folder {root} not found; {_download_hint(data_dir)} "
            f"or point --data-dir at a folder holding {TEST_FOLDER}/"
        )
    return root


def load_test(data_dir: Path) -> LoadedSet:
    """The test split read from `data_dir`/speech_commands_test_set_v0.02/<label>/*.wav.

    Returns a LoadedSet of features float32 (N, 49, 10, 1), labels int64 (N,), ids (N,) str = path
    relative to `data_dir` (e.g. "speech_commands_test_set_v0.02/yes/abc.wav"), sorted by path, and the
    skipped clips as (id, reason). Other sample rates are resampled, short clips padded, long ones cut;
    an empty, unreadable or truncated file, or one holding NaN or infinite samples, is named on stderr,
    skipped and counted. A folder that is not one of the 12 labels is a UserError. Needs no preprocessing.
    """
    root = _test_root(data_dir)
    examples = list_test_clips(root)
    if not examples:
        raise UserError(f"No .wav files under {root}/<label>/; {_download_hint(Path(data_dir))}")
    audio = np.zeros((len(examples), CLIP_SAMPLES), np.float32)

    def consume(row: int, segment: np.ndarray) -> None:
        audio[row, : len(segment)] = normalize(segment)

    skipped = sorted(_read_segments(root, examples, "Reading test clips", consume))
    keep = np.setdiff1d(np.arange(len(examples)), _report_skipped(skipped, "test"))
    if not keep.size:
        raise UserError(
            f"None of the {len(examples)} .wav files under {root} could be read; "
            f"delete {root} and {_download_hint(Path(data_dir))}"
        )
    labels = np.array([examples[i].label for i in keep], dtype=np.int64)
    ids = np.array([f"{TEST_FOLDER}/{examples[i].key}" for i in keep], dtype=str)
    return LoadedSet(
        compute_mfcc(audio[keep]),
        labels,
        ids,
        [(f"{TEST_FOLDER}/{examples[row].key}", reason) for row, reason in skipped],
    )


# ------------------------------------------------------------------------------------------------
# Cache


CACHE_FILES = {
    "train": ("train_audio.npy", "train_divisor.npy", "train_labels.npy", "train_ids.npy"),
    "validation": (
        "validation_audio.npy",
        "validation_divisor.npy",
        "validation_labels.npy",
        "validation_ids.npy",
        "validation_mfcc.npy",
    ),
    "noise": ("noise.npz",),
}


def _tree_mtime(root: Path) -> float:
    """Latest modification time of `root`, its sub-folders and the files directly in them."""
    latest = root.stat().st_mtime
    with os.scandir(root) as entries:
        for entry in entries:
            latest = max(latest, entry.stat().st_mtime)
            if entry.is_dir():
                with os.scandir(entry.path) as inner:
                    for item in inner:
                        latest = max(latest, item.stat().st_mtime)
    return latest


def _npy_rows(path: Path) -> int:
    """Rows of the .npy file at `path` after checking that it holds exactly the bytes its header's shape
    and dtype need; ValueError saying what is wrong (a truncated or damaged file) otherwise."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        expected = f.tell() + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(
            f"its header declares {dtype} {shape}, {expected} bytes, but it holds {size}"
            f"{': truncated' if size < expected else ''}"
        )
    return shape[0] if shape else 0


def _cache_problem(cache: Path, group: str) -> str | None:
    """None when every file of the cache `group` is whole (sizes as their headers say; the noise archive
    readable) and the files of a split hold the same number of rows; else what is wrong, naming the file."""
    rows: dict[int, str] = {}
    for name in CACHE_FILES[group]:
        path = cache / name
        try:
            if name.endswith(".npz"):
                with zipfile.ZipFile(path) as archive:
                    damaged = archive.testzip()
                if damaged is not None:
                    raise ValueError(f"member {damaged} is damaged")
            else:
                rows.setdefault(_npy_rows(path), name)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            return f"cache file {path} is damaged ({err})"
    if len(rows) > 1:
        return f"cache files {' and '.join(cache / name for name in rows.values())} hold different numbers of rows"
    return None


def _cache_fresh(cache: Path, group: str, source_mtime: float) -> bool:
    """Whether the files of `group` exist, are newer than the source and are whole (`_cache_problem`)."""
    paths = [cache / name for name in CACHE_FILES[group]]
    if not all(p.is_file() for p in paths) or min(p.stat().st_mtime for p in paths) <= source_mtime:
        return False
    problem = _cache_problem(cache, group)
    if problem:
        print(f"{problem}; rebuilding it")
    return problem is None


def _cache_split(train_root: Path, cache: Path, split: str, examples: list[Example]) -> None:
    """Write <split>_audio.npy int16 (N, 16000) (cut/zero-padded raw samples), <split>_divisor.npy
    float32 (N,), labels int64, ids str; for validation also its MFCCs. The audio is written last."""
    with files.atomic_output(cache / f"{split}_audio.npy") as tmp_audio:
        audio = np.lib.format.open_memmap(tmp_audio, mode="w+", dtype=np.int16, shape=(len(examples), CLIP_SAMPLES))
        divisor = np.ones(len(examples), np.float32)

        def consume(row: int, segment: np.ndarray) -> None:
            rounded = np.clip(np.rint(segment), -32768, 32767).astype(np.int16)
            audio[row, : len(rounded)] = rounded
            divisor[row] = peak_divisor(rounded.astype(np.float32))

        skipped = _read_segments(train_root, examples, f"Reading {split} clips", consume)
        keep = np.setdiff1d(np.arange(len(examples)), _report_skipped(skipped, split))
        if len(keep) < len(examples):  # rare: rewrite without the unreadable rows
            audio = audio[keep]  # an in-memory copy; the memory map is closed
            files.save_npy(tmp_audio, audio)
        else:
            audio.flush()
        labels = np.array([examples[i].label for i in keep], dtype=np.int64)
        ids = np.array([f"{TRAIN_FOLDER}/{examples[i].key}" for i in keep], dtype=str)
        divisor = divisor[keep]
        if split == "validation":
            print(f"Computing MFCCs of {len(keep)} validation clips")
            features = np.empty((len(keep), *FEATURE_SHAPE), np.float32)
            for begin in range(0, len(keep), MFCC_CHUNK):
                block = (
                    np.asarray(audio[begin : begin + MFCC_CHUNK], dtype=np.float32)
                    / divisor[begin : begin + MFCC_CHUNK, None]
                )
                features[begin : begin + MFCC_CHUNK] = compute_mfcc(block)
            files.save_npy(cache / "validation_mfcc.npy", features)
        for name, array in (("divisor", divisor), ("labels", labels), ("ids", ids)):
            files.save_npy(cache / f"{split}_{name}.npy", array)
        audio = None  # drops the memory map before its file is moved into place


def _cache_noise(train_root: Path, cache: Path) -> None:
    """noise.npz: names (K,), audio float32 (total,) = the background-noise clips concatenated,
    each as int16 / 32768 (the [-1, 1) scale tf.audio.decode_wav gives the reference), lengths (K,)."""
    folder = train_root / BACKGROUND_NOISE
    names, clips = [], []
    for name in _wav_names(folder) if folder.is_dir() else []:
        try:
            samples = read_wav(folder / name)
        except WavReadError as err:
            print(f"skipping {folder / name}: {err}", file=sys.stderr)
            continue
        if len(samples) < CLIP_SAMPLES:
            print(f"skipping {folder / name}: shorter than 1 s", file=sys.stderr)
            continue
        names.append(name)
        clips.append(samples / np.float32(INT16_FULL_SCALE))
    files.save_npz(
        cache / "noise.npz",
        names=np.array(names, dtype=str),
        audio=np.concatenate(clips) if clips else np.zeros(0, np.float32),
        lengths=np.array([len(c) for c in clips], dtype=np.int64),
    )
    print(f"Cached {len(names)} background-noise clips")


def preprocess(data_dir: Path) -> Path:
    """Build the splits, read every clip and write `data_dir`/cache/ (each file atomically):

      train_audio.npy int16 (N, 16000), train_divisor.npy float32 (N,), train_labels.npy int64,
      train_ids.npy str; the same four for validation plus validation_mfcc.npy float32 (N, 49, 10, 1);
      noise.npz (background noise for augmentation).

    Audio is stored as the raw int16 samples (cut to / zero-padded to 1 s) plus the per-clip
    normalising divisor, so normalised audio = int16 / divisor exactly, at 2 bytes per sample:
    train 85,511 clips = 2.7 GB, validation 0.3 GB (memory-mapped when read). Ids are paths relative
    to `data_dir`, `path#start` for silence windows. A group whose files exist, are newer than the
    train folder and are whole (sizes as their headers declare, see `_cache_problem`) is skipped; a
    damaged one is rebuilt. The test split is not cached: `load_test` reads it. Returns the cache folder.
    """
    data_dir = Path(data_dir)
    train_root = data_dir / TRAIN_FOLDER
    if not train_root.is_dir():
        raise UserError(f"Speech Commands folder {train_root} not found; {_download_hint(data_dir)}")
    cache = data_dir / CACHE_FOLDER
    cache.mkdir(parents=True, exist_ok=True)
    train_mtime = _tree_mtime(train_root)
    stale = [group for group in CACHE_FILES if not _cache_fresh(cache, group, train_mtime)]
    if not stale:
        print(f"Cache {cache} is complete and up to date; nothing to do")
        return cache
    print(f"Building cache for {', '.join(stale)} in {cache}")
    if "train" in stale or "validation" in stale:
        splits = split_files(train_root)
        for split in ("train", "validation"):
            if split in stale:
                print(f"{split}: {len(splits[split])} clips")
                _cache_split(train_root, cache, split, splits[split])
    if "noise" in stale:
        _cache_noise(train_root, cache)
    print(f"Cache {cache} complete")
    return cache


def _cache_path(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / CACHE_FOLDER / name
    if not path.is_file():
        raise UserError(f"Keyword-spotting cache file {path} not found; {_preprocess_hint(Path(data_dir))}")
    return path


def _damaged_cache(path: Path, data_dir: Path, err: Exception) -> UserError:
    return UserError(
        f"Keyword-spotting cache file {path} is damaged ({err}); "
        f"{_preprocess_hint(Path(data_dir))} again, which rebuilds it"
    )


def _load_cached(data_dir: Path, name: str, mmap: bool = False) -> np.ndarray:
    """The cached array `name`, memory-mapped with `mmap`; UserError when missing, truncated or damaged."""
    path = _cache_path(data_dir, name)
    try:
        _npy_rows(path)
        return np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError, EOFError) as err:
        raise _damaged_cache(path, data_dir, err) from err


def load_cached_audio(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached normalised, padded audio float32 (N, 16000), labels int64 and ids of "train" or
    "validation". (Train is 5.5 GB as float32; train_dataset reads the int16 cache instead.)"""
    audio = _load_cached(data_dir, f"{split}_audio.npy", mmap=True)
    divisor = _load_cached(data_dir, f"{split}_divisor.npy")
    labels = _load_cached(data_dir, f"{split}_labels.npy")
    ids = _load_cached(data_dir, f"{split}_ids.npy")
    return np.asarray(audio, dtype=np.float32) / divisor[:, None], labels, ids


def load_noise(data_dir: Path) -> list[np.ndarray]:
    """The cached background-noise clips, float32 on the [-1, 1) scale."""
    path = _cache_path(data_dir, "noise.npz")
    try:
        with np.load(path) as noise:
            audio, lengths = noise["audio"], noise["lengths"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise _damaged_cache(path, data_dir, err) from err
    return np.split(audio, np.cumsum(lengths)[:-1]) if len(lengths) else []


# ------------------------------------------------------------------------------------------------
# Augmentation and pipelines


class NoiseBank(NamedTuple):
    """Background-noise clips packed for tf: concatenated samples and each clip's start and length."""

    audio: np.ndarray  # float32 (total,)
    starts: np.ndarray  # int64 (K,)
    lengths: np.ndarray  # int64 (K,)

    @classmethod
    def from_clips(cls, clips: Iterable[np.ndarray]) -> "NoiseBank":
        """Pack clips of at least 1 s each (shorter ones are left out)."""
        clips = [np.asarray(c, np.float32).reshape(-1) for c in clips]
        clips = [c for c in clips if len(c) >= CLIP_SAMPLES]
        lengths = np.array([len(c) for c in clips], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if clips else np.zeros(0, np.int64)
        return cls(np.concatenate(clips) if clips else np.zeros(0, np.float32), starts, lengths)


def augment_clips(audio: tf.Tensor, noise_clips: NoiseBank | Sequence[np.ndarray], seed: tf.Tensor) -> tf.Tensor:
    """Train augmentation of a batch of normalised audio (B, 16000), every sample drawing its own values.

    Each sample is shifted in time by a uniform integer in [-1600, 1600] samples (positive = later),
    the gap filled with zeros; with probability 0.8 a uniformly placed 1 s window of a uniformly chosen
    noise clip is added at volume U(0, 0.1) (else volume 0); the sum is clipped to [-1, 1].
    `noise_clips`: a NoiseBank (numpy arrays or tensors) or a list of 1-D float32 clips of >= 1 s.
    `seed` is a stateless-RNG seed, shape (2,) int: the same seed gives the same draws.
    """
    bank = noise_clips if isinstance(noise_clips, NoiseBank) else NoiseBank.from_clips(noise_clips)
    audio = tf.convert_to_tensor(audio, tf.float32)
    batch = tf.shape(audio)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    shift = tf.random.stateless_uniform([batch], seeds[0], -MAX_SHIFT, MAX_SHIFT + 1, dtype=tf.int32)
    positions = tf.range(CLIP_SAMPLES, dtype=tf.int32)[None, :] - shift[:, None]
    inside = (positions >= 0) & (positions < CLIP_SAMPLES)
    shifted = tf.where(inside, tf.gather(audio, tf.clip_by_value(positions, 0, CLIP_SAMPLES - 1), batch_dims=1), 0.0)
    n_clips = int(bank.lengths.shape[0])
    if n_clips == 0:
        return tf.clip_by_value(shifted, -1.0, 1.0)
    which = tf.random.stateless_uniform([batch], seeds[1], 0, n_clips, dtype=tf.int32)
    span = tf.gather(tf.convert_to_tensor(bank.lengths, tf.int64), which) - CLIP_SAMPLES + 1  # window starts
    offset = tf.cast(
        tf.floor(tf.random.stateless_uniform([batch], seeds[2], dtype=tf.float64) * tf.cast(span, tf.float64)), tf.int64
    )
    first = tf.gather(tf.convert_to_tensor(bank.starts, tf.int64), which) + tf.minimum(offset, span - 1)
    noise = tf.gather(
        tf.convert_to_tensor(bank.audio, tf.float32), first[:, None] + tf.range(CLIP_SAMPLES, dtype=tf.int64)[None, :]
    )
    mixed = tf.random.stateless_uniform([batch], seeds[3]) < NOISE_PROBABILITY
    volume = tf.where(mixed, tf.random.stateless_uniform([batch], seeds[4], 0.0, NOISE_MAX_VOLUME), 0.0)
    return tf.clip_by_value(shifted + volume[:, None] * noise, -1.0, 1.0)


def train_dataset(
    data_dir: Path, batch_size: int, augment: bool, seed: int, shuffle: bool = True, drop_remainder: bool = False
) -> tf.data.Dataset:
    """Batches of (MFCC float32 (B, 49, 10, 1), label int64 (B,)) from the cached train audio.

    Reshuffled every epoch (with `shuffle`); with `augment`, each sample gets its own random
    shift and background noise (`augment_clips`), new every epoch, before the features are computed.
    """
    data_dir = Path(data_dir)
    audio = _load_cached(data_dir, "train_audio.npy", mmap=True)
    divisor = _load_cached(data_dir, "train_divisor.npy")
    labels = _load_cached(data_dir, "train_labels.npy")
    if len(audio) != len(labels) or len(divisor) != len(labels):
        raise UserError(
            f"Keyword-spotting train cache in {data_dir / CACHE_FOLDER} is inconsistent; "
            f"delete it and {_preprocess_hint(data_dir)}"
        )
    # eager tensors, so the map function captures the noise instead of embedding it as a constant
    bank = NoiseBank(*(tf.constant(a) for a in NoiseBank.from_clips(load_noise(data_dir)))) if augment else None
    rows = tf.data.Dataset.range(len(labels))
    if shuffle:
        rows = rows.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    rows = rows.batch(batch_size, drop_remainder=drop_remainder)
    randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((rows, randoms))
    labels_t, divisor_t = tf.constant(labels), tf.constant(divisor)

    def gather_rows(indices: np.ndarray) -> np.ndarray:
        order = np.argsort(indices)  # sorted reads are kinder to the memory map
        out = np.empty((len(indices), CLIP_SAMPLES), np.int16)
        out[order] = audio[indices[order]]
        return out

    def to_features(indices: tf.Tensor, random: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        raw = tf.numpy_function(gather_rows, [indices], tf.int16, stateful=False)
        raw = tf.ensure_shape(raw, [None, CLIP_SAMPLES])
        clips = tf.cast(raw, tf.float32) / tf.gather(divisor_t, indices)[:, None]
        if augment:
            clips = augment_clips(clips, bank, tf.stack([random, tf.constant(seed, tf.int64)]))
        return mfcc(clips), tf.gather(labels_t, indices)

    return dataset.map(to_features, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def validation_dataset(data_dir: Path, batch_size: int) -> tf.data.Dataset:
    """Batches of (cached validation MFCC float32 (B, 49, 10, 1), label int64 (B,)) in cache order,
    last partial batch kept."""
    features = _load_cached(data_dir, "validation_mfcc.npy")
    labels = _load_cached(data_dir, "validation_labels.npy")
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
