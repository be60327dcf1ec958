"""Tests for keyword_spotting/data.py: golden MFCCs, TFDS-style splits, download, cache, pipelines, augmentation."""

import math
import os
import shutil
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from common.download import sha256sum
from common.errors import UserError
from keyword_spotting import data, sound
from keyword_spotting.synthetic import (
    LISTED_NOISE,
    NOISE_FILES,
    TEST_LABELS,
    make_archives,
    tone_clip,
    write_test_tree,
    write_train_tree,
    write_wav,
)

GOLDEN_DIR = Path(__file__).parent / "data" / "kws_golden"
SHARED_GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "kws_golden"
SILENCE, UNKNOWN = data.SILENCE_INDEX, data.UNKNOWN_INDEX
N_TEST_PER_LABEL = 2


def _golden_features(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    golden = np.load(folder / "golden_mfcc.npz")
    clips = [sound.read_wav(folder / "wav" / name) for name in golden["names"]]
    return sound.compute_mfcc(sound.normalize_and_pad(clips)), golden["mfcc"]


def test_committed_golden_clips_match_reference_mfcc() -> None:
    features, golden = _golden_features(GOLDEN_DIR)
    assert features.shape == golden.shape == (4, 49, 10, 1) and features.dtype == np.float32
    assert np.abs(features - golden).max() < 1e-4


@pytest.mark.skipif(not (SHARED_GOLDEN_DIR / "golden_mfcc.npz").is_file(), reason="shared golden set not present")
def test_all_shared_golden_clips_match_reference_mfcc() -> None:
    features, golden = _golden_features(SHARED_GOLDEN_DIR)
    assert features.shape == golden.shape == (24, 49, 10, 1)
    assert np.abs(features - golden).max() < 1e-4


def test_mfcc_is_batch_independent() -> None:
    clips = sound.normalize_and_pad([tone_clip(np.random.default_rng(i), 300.0 + 100 * i) for i in range(3)])
    together = sound.mfcc(clips).numpy()
    alone = np.concatenate([sound.mfcc(clips[i : i + 1]).numpy() for i in range(3)])
    assert together.shape == (3, 49, 10, 1)
    np.testing.assert_allclose(together, alone, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# normalisation and reading


def test_normalize_and_pad_divides_by_positive_peak_and_pads() -> None:
    clip = np.array([1.0, -8.0, 4.0, 2.0], np.float32)
    out = sound.normalize_and_pad([clip])
    assert out.shape == (1, 16000) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :4], [0.25, -2.0, 1.0, 0.5])  # max, not max|x|: like the reference
    assert not out[0, 4:].any()


def test_normalize_and_pad_fixes_non_positive_clips() -> None:
    out = sound.normalize_and_pad([np.array([-2.0, -4.0, 0.0], np.float32), np.zeros(100, np.float32)])
    np.testing.assert_array_equal(out[0, :3], [-0.5, -1.0, 0.0])
    assert np.isfinite(out).all() and not out[1].any()


def test_normalize_and_pad_cuts_long_clips_before_normalising() -> None:
    clip = np.zeros(24000, np.float32)
    clip[100], clip[20000] = 50.0, 1000.0  # the global peak lies past 1 s
    out = sound.normalize_and_pad([clip])
    assert out.shape == (1, 16000) and out[0, 100] == 1.0


def test_normalize_and_pad_array_and_list_agree() -> None:
    rng = np.random.default_rng(0)
    batch = rng.normal(0, 1000, (5, 17000)).astype(np.float32)
    batch[2] = -np.abs(batch[2])
    batch[3] = 0.0
    np.testing.assert_array_equal(sound.normalize_and_pad(batch), sound.normalize_and_pad(list(batch)))


def test_read_wav_keeps_int16_values_and_first_channel(tmp_path) -> None:
    stereo = np.stack([np.arange(-500, 500, dtype=np.int16), np.full(1000, 7, np.int16)], axis=1)
    samples = sound.read_wav(write_wav(tmp_path / "stereo.wav", stereo))
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, np.arange(-500, 500))


def test_read_wav_resamples_other_rates(tmp_path) -> None:
    clip = tone_clip(np.random.default_rng(1), 440.0, n_samples=8000, rate=8000)
    samples = sound.read_wav(write_wav(tmp_path / "8k.wav", clip, rate=8000))
    assert samples.shape == (16000,)
    np.testing.assert_allclose(samples, scipy.signal.resample_poly(clip.astype(np.float64), 2, 1), atol=1e-2)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "Cannot read"),
        (b"this is not a wav file at all, just text", "Cannot read"),
        (None, "holds no samples"),
    ],
)
def test_read_wav_rejects_bad_files_naming_them(tmp_path, content, message) -> None:
    path = tmp_path / "bad.wav"
    if content is None:
        write_wav(path, np.zeros(0, np.int16))
    else:
        path.write_bytes(content)
    with pytest.raises(sound.WavReadError, match=message) as raised:
        sound.read_wav(path)
    assert "bad.wav" in str(raised.value) and isinstance(raised.value, UserError)


# ------------------------------------------------------------------------------------------------
# splits


@pytest.fixture(scope="module")
def train_tree(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("train") / data.TRAIN_FOLDER
    return root, write_train_tree(root)


def test_noise_windows_follow_tfds() -> None:
    assert list(data.noise_windows(40000)) == [0, 8000, 16000]
    assert list(data.noise_windows(32000)) == [0, 8000]  # a window ending at the last sample is not taken
    assert len(data.noise_windows(960000)) == 118  # the real 60 s pink/white noise files
    assert len(data.noise_windows(16000)) == 0
    for n in (40001, 59200, 52800, 978488):  # where (n - 16000) is not a whole number of hops
        assert len(data.noise_windows(n)) == (n - 16000) // 8000 + 1


def test_split_files_counts_labels_and_lists(train_tree) -> None:
    root, layout = train_tree
    splits = data.split_files(root)
    assert set(splits) == {"train", "validation"}
    counts = {split: Counter(data.LABELS[e.label] for e in examples) for split, examples in splits.items()}
    # 4 speakers x 2 utterances per word: 2 speakers train, 1 validation, 1 testing (dropped)
    assert counts["train"] == {"yes": 4, "no": 4, "down": 4, "_unknown_": 8, "_silence_": 4}
    assert counts["validation"] == {"yes": 2, "no": 2, "down": 2, "_unknown_": 4, "_silence_": 6 + 5}

    for split, examples in splits.items():
        for example in examples:
            word = example.path.split("/")[0]
            if word == "_background_noise_":
                assert example.label == SILENCE and example.start is not None
            elif word in data.COMMAND_WORDS:
                assert data.LABELS[example.label] == word and example.start is None
            else:
                assert word in ("marvin", "tree") and example.label == UNKNOWN
            if example.start is None:
                assert (example.path in layout.validation) == (split == "validation")
        assert examples == sorted(examples)

    train_paths = {e.path for e in splits["train"]}
    validation_paths = {e.path for e in splits["validation"]}
    assert not train_paths & validation_paths
    assert not (train_paths | validation_paths) & layout.testing
    assert train_paths | validation_paths | layout.testing == set(layout.files) | {
        f"_background_noise_/{name}" for name in NOISE_FILES
    }


def test_split_files_cuts_background_noise_into_windows(train_tree) -> None:
    root, _ = train_tree
    splits = data.split_files(root)
    windows = {
        split: Counter(e.path.split("/")[1] for e in examples if e.label == SILENCE)
        for split, examples in splits.items()
    }
    assert windows["train"] == {"white_noise.wav": 4}  # 48000 samples: TFDS gives 4, not 5
    assert windows["validation"] == {LISTED_NOISE: 6, "running_tap.wav": 5}  # listed; TFDS's hand-added file
    for name, n in (("dude_miaowing.wav", 59200), ("running_tap.wav", 52800)):
        assert windows["validation"][name] == math.floor((n - 16000) / 8000) + 1
    starts = [e.start for e in splits["validation"] if e.path.endswith(LISTED_NOISE)]
    assert starts == [0, 8000, 16000, 24000, 32000, 40000]
    assert all(
        e.start + 16000 <= NOISE_FILES[e.path.split("/")[1]]
        for examples in splits.values()
        for e in examples
        if e.label == SILENCE
    )
    window = next(e for e in splits["train"] if e.label == SILENCE and e.start == 8000)
    assert window.key == "_background_noise_/white_noise.wav#8000"
    clip = next(e for e in splits["train"] if e.label != SILENCE)
    assert clip.key == clip.path and "#" not in clip.key


def test_split_files_missing_inputs_are_user_errors(train_tree, tmp_path) -> None:
    with pytest.raises(UserError, match="not found.*download.sh"):
        data.split_files(tmp_path / "nowhere")
    root = tmp_path / data.TRAIN_FOLDER
    shutil.copytree(train_tree[0], root)
    (root / "testing_list.txt").unlink()
    with pytest.raises(UserError, match="testing_list.txt not found"):
        data.split_files(root)


def test_list_test_clips_labels_from_folders(tmp_path) -> None:
    written = write_test_tree(tmp_path / "test", per_label=2)
    (tmp_path / "test" / "yes" / "notes.txt").write_text("not audio")
    examples = data.list_test_clips(tmp_path / "test")
    assert [e.path for e in examples] == [path for path, _ in written]
    assert [data.LABELS[e.label] for e in examples] == [label for _, label in written]
    assert Counter(data.LABELS[e.label] for e in examples) == {label: 2 for label in TEST_LABELS}


# ------------------------------------------------------------------------------------------------
# download, preprocess, pipelines


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    return make_archives(tmp_path_factory.mktemp("archives"), per_label=N_TEST_PER_LABEL)


def _download(archives, data_dir: Path) -> Path:
    train_archive, test_archive, _, _ = archives
    return data.download(
        data_dir,
        train_url=train_archive.as_uri(),
        test_url=test_archive.as_uri(),
        train_sha256=sha256sum(train_archive),
        test_sha256=sha256sum(test_archive),
    )


@pytest.fixture(scope="module")
def prepared(archives, tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("prepared") / "data"
    _download(archives, data_dir)
    data.preprocess(data_dir)
    return data_dir


def test_download_extracts_both_archives(archives, prepared) -> None:
    _, _, layout, test = archives
    train_root, test_root = prepared / data.TRAIN_FOLDER, prepared / data.TEST_FOLDER
    assert (train_root / "validation_list.txt").is_file() and (train_root / "LICENSE").is_file()
    assert {p.relative_to(train_root).as_posix() for p in train_root.glob("*/*.wav")} == set(layout.files) | {
        f"_background_noise_/{name}" for name in NOISE_FILES
    }
    assert sorted(p.relative_to(test_root).as_posix() for p in test_root.glob("*/*.wav")) == [p for p, _ in test]
    assert not list(prepared.glob(".*"))  # no staging folders left behind


def test_download_skips_complete_folders(prepared, tmp_path, capsys) -> None:
    missing = (tmp_path / "no-such-archive.tar.gz").as_uri()
    assert data.download(prepared, train_url=missing, test_url=missing) == prepared
    assert capsys.readouterr().out.count("already present") == 2


def test_download_unwraps_a_test_archive_with_a_top_folder(archives, prepared, tmp_path) -> None:
    _, test_archive, _, test = archives
    wrapped = tmp_path / "wrapped_test_set.tar.gz"
    with tarfile.open(wrapped, "w:gz") as tar:
        tar.add(test_archive.parent / "source_test", arcname="speech_commands_test_set_v0.02")
    data_dir = tmp_path / "data"
    shutil.copytree(prepared / data.TRAIN_FOLDER, data_dir / data.TRAIN_FOLDER)
    data.download(data_dir, test_url=wrapped.as_uri(), test_sha256=sha256sum(wrapped))
    root = data_dir / data.TEST_FOLDER
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav")) == [p for p, _ in test]


def test_download_checksum_mismatch_is_user_error(archives, tmp_path) -> None:
    train_archive, test_archive, _, _ = archives
    with pytest.raises(UserError, match="Checksum mismatch"):
        data.download(
            tmp_path / "data", train_url=train_archive.as_uri(), test_url=test_archive.as_uri(), train_sha256="0" * 64
        )
    assert not (tmp_path / "data" / data.TRAIN_FOLDER).exists()


def test_download_rejects_archive_without_the_layout(archives, tmp_path) -> None:
    train_archive, _, _, _ = archives
    with pytest.raises(UserError, match="did not unpack"):
        data.download(
            tmp_path / "data",
            train_url=train_archive.as_uri(),
            test_url=train_archive.as_uri(),
            train_sha256=None,
            test_sha256=None,
        )
    assert not (tmp_path / "data" / data.TEST_FOLDER).exists()


def test_preprocess_writes_cache(archives, prepared) -> None:
    cache = prepared / "cache"
    for names in data.CACHE_FILES.values():
        for name in names:
            assert (cache / name).is_file(), name
    assert not list(cache.glob("*.tmp*"))
    splits = data.split_files(prepared / data.TRAIN_FOLDER)
    for split in ("train", "validation"):
        audio, labels, ids = data.load_cached_audio(prepared, split)
        assert audio.shape == (len(splits[split]), 16000) and audio.dtype == np.float32
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, [e.label for e in splits[split]])
        assert list(ids) == [f"{data.TRAIN_FOLDER}/{e.key}" for e in splits[split]]
        assert np.allclose(audio.max(axis=1), 1.0)  # peak-normalised
    audio, _, ids = data.load_cached_audio(prepared, "train")
    row = list(ids).index(f"{data.TRAIN_FOLDER}/yes/0a1b2c3d_nohash_1.wav")  # a 0.8 s clip
    raw = sound.read_wav(prepared / data.TRAIN_FOLDER / "yes" / "0a1b2c3d_nohash_1.wav")
    np.testing.assert_array_equal(audio[row], sound.normalize_and_pad([raw])[0])
    assert not audio[row, 12800:].any()
    row = list(ids).index(f"{data.TRAIN_FOLDER}/_background_noise_/white_noise.wav#16000")
    noise = sound.read_wav(prepared / data.TRAIN_FOLDER / "_background_noise_" / "white_noise.wav")
    np.testing.assert_array_equal(audio[row], sound.normalize_and_pad([noise[16000:32000]])[0])

    val_audio, val_labels, _ = data.load_cached_audio(prepared, "validation")
    val_features = np.load(cache / "validation_mfcc.npy")
    assert val_features.shape == (len(val_labels), 49, 10, 1) and val_features.dtype == np.float32
    np.testing.assert_allclose(val_features, sound.compute_mfcc(val_audio), atol=1e-5)

    noise_clips = data.load_noise(prepared)
    assert sorted(len(c) for c in noise_clips) == sorted(NOISE_FILES.values())
    assert all(c.dtype == np.float32 and np.abs(c).max() < 1.0 for c in noise_clips)


def test_preprocess_skips_fresh_cache_and_rebuilds_stale(archives, tmp_path, capsys) -> None:
    data_dir = tmp_path / "data"
    _download(archives, data_dir)
    data.preprocess(data_dir)
    capsys.readouterr()
    data.preprocess(data_dir)
    assert "nothing to do" in capsys.readouterr().out
    future = time.time() + 100
    os.utime(data_dir / data.TEST_FOLDER / "yes", (future, future))
    data.preprocess(data_dir)
    assert "nothing to do" in capsys.readouterr().out  # the test split is not cached
    os.utime(data_dir / "cache" / "noise.npz", (0, 0))  # older than the train folder: stale
    before = (data_dir / "cache" / "train_audio.npy").stat().st_mtime_ns
    data.preprocess(data_dir)
    out = capsys.readouterr().out
    assert "Building cache for noise" in out and "train" not in out.split("Building cache for")[1].split("\n")[0]
    assert (data_dir / "cache" / "train_audio.npy").stat().st_mtime_ns == before
    assert (data_dir / "cache" / "noise.npz").stat().st_mtime_ns > before


def test_preprocess_repairs_a_truncated_cache_and_loading_it_says_so(prepared, tmp_path, capsys) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(prepared, data_dir)
    audio = data_dir / "cache" / "train_audio.npy"
    whole = audio.read_bytes()
    audio.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=f"{audio} is damaged.*truncated.*preprocess.sh --data-dir .* again"):
        data.load_cached_audio(data_dir, "train")
    with pytest.raises(UserError, match="train_audio.npy is damaged"):
        data.train_dataset(data_dir, batch_size=4, augment=False, seed=0)
    capsys.readouterr()
    data.preprocess(data_dir)
    out = capsys.readouterr().out
    assert "nothing to do" not in out and "train_audio.npy is damaged" in out and "Building cache for train" in out
    assert audio.read_bytes() == whole
    (data_dir / "cache" / "noise.npz").write_bytes(b"PK not a zip")
    data.preprocess(data_dir)
    assert "noise.npz is damaged" in capsys.readouterr().out and len(data.load_noise(data_dir)) == 3


def test_download_fetches_only_what_the_split_needs(archives, tmp_path) -> None:
    train_archive, test_archive, _, _ = archives
    urls = dict(
        train_url=train_archive.as_uri(),
        test_url=test_archive.as_uri(),
        train_sha256=sha256sum(train_archive),
        test_sha256=sha256sum(test_archive),
    )
    data.download(tmp_path / "test_only", split="test", **urls)
    assert {p.name for p in (tmp_path / "test_only").iterdir()} == {data.TEST_FOLDER, test_archive.name}
    data.download(tmp_path / "train_only", split="train", **urls)
    assert {p.name for p in (tmp_path / "train_only").iterdir()} == {train_archive.name, data.TRAIN_FOLDER}


def test_train_dataset_without_augment_is_mfcc_of_cached_audio(prepared) -> None:
    audio, labels, _ = data.load_cached_audio(prepared, "train")
    batches = list(data.train_dataset(prepared, batch_size=10, augment=False, seed=0, shuffle=False))
    assert [len(x) for x, _ in batches] == [10, 10, 4]
    features = np.concatenate([x.numpy() for x, _ in batches])
    assert features.shape == (24, 49, 10, 1) and features.dtype == np.float32
    np.testing.assert_allclose(features, sound.compute_mfcc(audio), atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), labels)


def test_train_dataset_reshuffles_each_epoch(prepared) -> None:
    _, labels, _ = data.load_cached_audio(prepared, "train")
    reference = sound.compute_mfcc(data.load_cached_audio(prepared, "train")[0]).reshape(len(labels), -1)
    dataset = data.train_dataset(prepared, batch_size=8, augment=False, seed=3)
    orders = []
    for _ in range(2):
        features = np.concatenate([x.numpy() for x, _ in dataset]).reshape(len(labels), -1)
        order = [int(np.argmin(np.abs(reference - row).max(axis=1))) for row in features]
        assert sorted(order) == list(range(len(labels)))
        orders.append(order)
    assert orders[0] != orders[1]
    for features, batch_labels in dataset.take(1):  # labels travel with their clips
        rows = [int(np.argmin(np.abs(reference - f).max(axis=1))) for f in features.numpy().reshape(len(features), -1)]
        np.testing.assert_array_equal(batch_labels.numpy(), labels[rows])


def test_train_dataset_augment_changes_features_keeps_labels(prepared) -> None:
    clean = data.train_dataset(prepared, batch_size=24, augment=False, seed=0, shuffle=False)
    noisy = data.train_dataset(prepared, batch_size=24, augment=True, seed=0, shuffle=False)
    ((clean_x, clean_y),) = list(clean)
    epochs = [next(iter(noisy)) for _ in range(2)]
    for noisy_x, noisy_y in epochs:
        np.testing.assert_array_equal(noisy_y.numpy(), clean_y.numpy())
        assert noisy_x.shape == (24, 49, 10, 1) and np.isfinite(noisy_x.numpy()).all()
        changed = np.abs(noisy_x.numpy() - clean_x.numpy()).max(axis=(1, 2, 3)) > 1e-3
        assert changed.mean() > 0.8
    assert np.abs(epochs[0][0].numpy() - epochs[1][0].numpy()).max(axis=(1, 2, 3)).min() > 1e-4  # new draws per epoch


def test_validation_dataset_keeps_order_and_last_partial_batch(prepared) -> None:
    batches = list(data.validation_dataset(prepared, batch_size=8))
    assert [len(x) for x, _ in batches] == [8, 8, 5]
    features = np.concatenate([x.numpy() for x, _ in batches])
    np.testing.assert_array_equal(features, np.load(prepared / "cache" / "validation_mfcc.npy"))
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert labels.dtype == np.int64
    assert Counter(labels.tolist()) == {9: 2, 3: 2, 0: 2, UNKNOWN: 4, SILENCE: 11}


def test_missing_cache_is_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match=f"preprocess.sh --data-dir {tmp_path}"):
        data.train_dataset(tmp_path, batch_size=4, augment=False, seed=0)
    with pytest.raises(UserError, match="preprocess.sh --data-dir"):
        data.validation_dataset(tmp_path, batch_size=4)


# ------------------------------------------------------------------------------------------------
# load_test


def test_load_test_handles_rates_lengths_and_bad_files(tmp_path, capsys) -> None:
    data_dir = tmp_path / "data"
    root = data_dir / data.TEST_FOLDER
    written = write_test_tree(root, per_label=1)
    rng = np.random.default_rng(7)
    slow_clip = tone_clip(rng, 440.0, 8000, rate=8000)
    slow = write_wav(root / "yes" / "eight_khz.wav", slow_clip, rate=8000)
    short = write_wav(root / "no" / "short.wav", tone_clip(rng, 300.0, 8000))
    long_clip = tone_clip(rng, 500.0, 24000)
    long_clip[20000] = 32000  # the peak past 1 s must not count
    long = write_wav(root / "up" / "long.wav", long_clip)
    (root / "go" / "empty.wav").write_bytes(b"")
    (root / "stop" / "garbage.wav").write_bytes(b"RIFF? no, garbage " * 10)

    features, labels, ids = data.load_test(data_dir)
    err = capsys.readouterr().err
    assert "empty.wav" in err and "garbage.wav" in err and "Skipped 2 " in err
    assert features.shape == (len(written) + 3, 49, 10, 1) and features.dtype == np.float32
    assert labels.dtype == np.int64 and np.isfinite(features).all()
    expected_ids = sorted(
        [f"{data.TEST_FOLDER}/{p}" for p, _ in written]
        + [f"{data.TEST_FOLDER}/{p}" for p in ("yes/eight_khz.wav", "no/short.wav", "up/long.wav")]
    )
    assert list(ids) == expected_ids
    assert all((data_dir / i).is_file() for i in ids)
    np.testing.assert_array_equal(labels, [data.LABELS.index(i.split("/")[1]) for i in ids])

    def features_of(path: Path) -> np.ndarray:
        return features[list(ids).index(path.relative_to(data_dir).as_posix())]

    resampled = scipy.signal.resample_poly(slow_clip.astype(np.float64), 2, 1)
    np.testing.assert_allclose(
        features_of(slow), sound.compute_mfcc(sound.normalize_and_pad([resampled]))[0], atol=1e-3
    )
    np.testing.assert_allclose(
        features_of(short), sound.compute_mfcc(sound.normalize_and_pad([sound.read_wav(short)]))[0], atol=1e-5
    )
    first_second = long_clip[:16000].astype(np.float32)
    cut = np.zeros((1, 16000), np.float32)
    cut[0] = first_second / first_second.max()
    np.testing.assert_allclose(features_of(long), sound.compute_mfcc(cut)[0], atol=1e-5)


def _damaged_wavs(root: Path) -> dict[str, str]:
    """Write one damaged clip per kind under `root`/<label>/; {path relative to root: reason}."""
    whole = write_wav(root / "on" / "whole.wav", tone_clip(np.random.default_rng(3), 400.0)).read_bytes()
    (root / "on" / "whole.wav").unlink()
    (root / "go").mkdir(exist_ok=True)
    (root / "go" / "cut_in_data.wav").write_bytes(whole[:20000])
    (root / "go" / "cut_in_header.wav").write_bytes(whole[:30])
    nan = np.zeros(16000, np.float32)
    nan[100] = np.nan
    write_wav(root / "up" / "nan.wav", nan)
    write_wav(root / "up" / "inf.wav", np.full(16000, np.inf, np.float32))
    return {
        "go/cut_in_data.wav": "truncated",
        "go/cut_in_header.wav": "truncated header",
        "up/inf.wav": "non-finite samples",
        "up/nan.wav": "non-finite samples",
    }


def test_read_wav_names_truncated_and_non_finite_files(tmp_path) -> None:
    for path, reason in _damaged_wavs(tmp_path).items():
        with pytest.raises(sound.WavReadError, match=f"{tmp_path / path}") as raised:
            sound.read_wav(tmp_path / path)
        assert raised.value.reason == reason, path


def test_load_test_skips_and_counts_damaged_clips(tmp_path, capsys) -> None:
    root = tmp_path / data.TEST_FOLDER
    written = write_test_tree(root, per_label=1)
    damaged = _damaged_wavs(root)
    test_set = data.load_test(tmp_path)
    features, _, ids = test_set
    assert len(ids) == len(features) == len(written) and np.isfinite(features).all()
    assert test_set.skipped == tuple((f"{data.TEST_FOLDER}/{path}", reason) for path, reason in sorted(damaged.items()))
    err = capsys.readouterr().err
    assert all(path in err for path in damaged) and "Skipped 4 " in err


def test_load_test_refuses_a_folder_that_is_not_a_label(tmp_path) -> None:
    root = tmp_path / data.TEST_FOLDER
    write_test_tree(root, per_label=1)
    (root / "notes").mkdir()  # no .wav: ignored
    write_wav(root / "Yes" / "a.wav", tone_clip(np.random.default_rng(0), 300.0))
    with pytest.raises(UserError, match=r"Test folder .*/Yes is not one of the 12 labels.*down, go.*_unknown_"):
        data.load_test(tmp_path)


def test_load_test_missing_folder_or_no_wav_is_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match=f"{data.TEST_FOLDER} not found.*download.sh"):
        data.load_test(tmp_path)
    (tmp_path / data.TEST_FOLDER / "yes").mkdir(parents=True)
    with pytest.raises(UserError, match="No .wav files"):
        data.load_test(tmp_path)


# ------------------------------------------------------------------------------------------------
# augment


def _shift_of(original: np.ndarray, shifted: np.ndarray) -> int:
    """The s in [-1600, 1600] with shifted[j] = original[j - s] (zeros outside)."""
    for s in range(-1600, 1601):
        expected = np.zeros_like(original)
        if s >= 0:
            expected[s:] = original[: 16000 - s]
        else:
            expected[:s] = original[-s:]
        if np.array_equal(expected, shifted):
            return s
    raise AssertionError("output is not a shift of the input")


def test_augment_shifts_each_sample_independently() -> None:
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.9, 0.9, (16, 16000)).astype(np.float32)
    out = data.augment_clips(audio, [], tf.constant([1, 2])).numpy()
    shifts = [_shift_of(audio[i], out[i]) for i in range(16)]
    assert len(set(shifts)) >= 12 and max(map(abs, shifts)) <= 1600
    again = data.augment_clips(audio, [], tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(out, again)  # stateless: the seed decides
    assert not np.array_equal(out, data.augment_clips(audio, [], tf.constant([1, 3])).numpy())


def test_augment_adds_noise_windows_per_sample() -> None:
    # noise clip k holds (k * 1e5 + p + 1) * A at position p, so a window reveals its clip and offset
    scale = 1 / 4e5
    lengths = (20000, 25000, 30000)
    clips = [((k * 1e5 + np.arange(n) + 1) * scale).astype(np.float32) for k, n in enumerate(lengths)]
    batch = 1000
    out = data.augment_clips(np.zeros((batch, 16000), np.float32), clips, tf.constant([5, 6])).numpy()
    mixed = np.abs(out).max(axis=1) > 0
    assert 0.72 < mixed.mean() < 0.88  # p = 0.8
    volumes, sources = [], []
    for row in out[mixed]:
        slope, intercept = np.polyfit(np.arange(16000), row.astype(np.float64), 1)
        volume = slope / scale
        position = round(intercept / slope) - 1
        k, offset = divmod(position, 100000)
        np.testing.assert_allclose(row, volume * clips[k][offset : offset + 16000], rtol=1e-4, atol=1e-7)
        volumes.append(volume)
        sources.append((k, offset))
    assert 0 < min(volumes) and max(volumes) < 0.1 + 1e-6
    assert len(set(sources)) > 0.9 * len(sources) and {k for k, _ in sources} == {0, 1, 2}


def test_augment_clips_to_unit_range() -> None:
    audio = np.full((8, 16000), 0.99, np.float32)
    audio[:, ::2] = -1.8  # normalised by the positive peak, negatives can go below -1
    out = data.augment_clips(audio, [np.ones(20000, np.float32)], tf.constant([0, 0])).numpy()
    assert out.min() >= -1.0 and out.max() <= 1.0 and (out == -1.0).any()
