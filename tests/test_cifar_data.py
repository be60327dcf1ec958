"""Tests for image_classification/data.py on synthetic CIFAR-10 files in the official pickle layout."""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.download import md5sum
from common.errors import UserError
from image_classification import data, image_folders
from image_classification.synthetic import (
    make_cifar_archive,
    synthetic_batch,
    write_cifar,
    write_image_folders,
    write_pickle,
)

N_TEST = 150  # not a multiple of 100 (nor of the batch sizes below)
N_TRAIN_PER_BATCH = 20


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cifar_archive(tmp_path_factory.mktemp("archive"), N_TEST, N_TRAIN_PER_BATCH, seed=3)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_cifar(tmp_path / "data", n_test=37, n_train_per_batch=8, seed=5)
    return tmp_path / "data"


def test_download_from_archive_then_load(archive, tmp_path) -> None:
    data_dir = tmp_path / "data"
    folder = data.download(data_dir, url=archive.as_uri(), md5=md5sum(archive))
    assert folder == data_dir / data.FOLDER

    images, labels, ids = data.load_test(data_dir)
    assert images.shape == (N_TEST, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (N_TEST,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= 9 and len(np.unique(labels)) > 1
    np.testing.assert_array_equal(ids, np.arange(N_TEST))

    with open(archive.parent / "source" / data.FOLDER / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    red_of_image_7 = raw[b"data"][7, :1024].reshape(32, 32)  # rows are R plane, G plane, B plane
    np.testing.assert_array_equal(images[7, :, :, 0], red_of_image_7)
    np.testing.assert_array_equal(labels, raw[b"labels"])

    train_images, train_labels = data.load_train(data_dir)
    assert train_images.shape == (5 * N_TRAIN_PER_BATCH, 32, 32, 3) and train_images.dtype == np.uint8
    assert train_labels.shape == (5 * N_TRAIN_PER_BATCH,) and train_labels.dtype == np.int64


def test_test_split_needs_only_the_test_files(tmp_path, capsys) -> None:
    folder = write_cifar(tmp_path / "data", n_test=5, n_train_per_batch=1)
    for name in (*data.TRAIN_BATCHES, data.META):  # nothing reads batches.meta
        (folder / name).unlink()
    nowhere = (tmp_path / "missing.tar.gz").as_uri()
    assert data.download(tmp_path / "data", url=nowhere, split="test") == folder  # nothing fetched
    assert "CIFAR-10 (test files) already present" in capsys.readouterr().out
    for split in ("train", "all"):  # the training batches are missing: the archive is needed
        with pytest.raises(UserError, match="does not exist"):
            data.download(tmp_path / "data", url=nowhere, split=split)
    (folder / data.TEST_BATCH).unlink()
    with pytest.raises(UserError, match="does not exist"):
        data.download(tmp_path / "data", url=nowhere, split="test")


def test_download_wrong_md5_is_user_error(archive, tmp_path) -> None:
    with pytest.raises(UserError, match="expected 0{32}"):
        data.download(tmp_path / "data", url=archive.as_uri(), md5="0" * 32)
    assert not (tmp_path / "data" / data.FOLDER).exists()


def test_download_skips_when_folder_present(data_dir, tmp_path, capsys) -> None:
    missing_url = (tmp_path / "no-such-archive.tar.gz").as_uri()
    assert data.download(data_dir, url=missing_url) == data_dir / data.FOLDER
    assert "already present" in capsys.readouterr().out
    assert sorted(p.name for p in data_dir.iterdir()) == [data.FOLDER]


def test_download_repairs_incomplete_folder(archive, data_dir) -> None:
    (data_dir / data.FOLDER / "data_batch_4").unlink()
    data.download(data_dir, url=archive.as_uri(), md5=md5sum(archive), force=True)  # its files differ
    assert len(data.load_test(data_dir)[0]) == N_TEST


def test_download_never_replaces_a_differing_file_without_force(archive, data_dir, tmp_path) -> None:
    """A user's own test_batch (or any file whose content differs from the archive's) stays as it was."""
    folder = data_dir / data.FOLDER
    (folder / "data_batch_4").unlink()
    (folder / "notes.txt").write_text("mine")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(UserError, match="(?s)would replace 6 existing files.*test_batch.*--force"):
        data.download(data_dir, url=archive.as_uri(), md5=md5sum(archive))
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    # A folder holding the archive's own files, one missing, is repaired without --force; others are kept.
    repaired = tmp_path / "repaired"
    data.download(repaired, url=archive.as_uri(), md5=md5sum(archive))
    (repaired / data.FOLDER / "data_batch_2").unlink()
    (repaired / data.FOLDER / "notes.txt").write_text("mine")
    data.download(repaired, url=archive.as_uri(), md5=md5sum(archive), split="train")
    assert (repaired / data.FOLDER / "data_batch_2").is_file()
    assert (repaired / data.FOLDER / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match="unknown split 'val'.*test, train, all"):
        data.download(repaired, url=archive.as_uri(), split="val")


def test_empty_test_batch_is_user_error_naming_file(data_dir) -> None:
    write_pickle(data_dir / data.FOLDER / "test_batch", synthetic_batch(np.random.default_rng(0), 0, "empty"))
    with pytest.raises(UserError, match="test_batch holds no images"):
        data.load_test(data_dir)


def test_load_test_is_a_loaded_set_skipping_nothing(data_dir) -> None:
    from image_classification import task

    test_set = task.load_test(data_dir)
    assert test_set.skipped == () and test_set[0].dtype == np.float32 and len(test_set[2]) == 37


def test_odd_sized_test_batch_loads(data_dir) -> None:
    images, labels, ids = data.load_test(data_dir)
    assert images.shape == (37, 32, 32, 3) and labels.shape == (37,) and ids[-1] == 36


def _valid_batch(n: int = 12) -> dict:
    return synthetic_batch(np.random.default_rng(0), n, "testing batch 1 of 1")


def _corrupt(path: Path, problem: str) -> None:
    """Overwrite the batch at `path` with one exhibiting `problem`."""
    batch = _valid_batch()
    if problem == "garbage":
        path.write_bytes(b"this is not a pickle")
        return
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:500])
        return
    if problem == "missing keys":
        del batch[b"data"]
    elif problem == "wrong image shape":
        batch[b"data"] = batch[b"data"][:, :3000]
    elif problem == "label count":
        batch[b"labels"] = batch[b"labels"][:-1]
    elif problem == "label range":
        batch[b"labels"][3] = 10
    write_pickle(path, batch)


PROBLEMS = {
    "garbage": "not a valid pickle",
    "truncated": "not a valid pickle or is truncated",
    "missing keys": "lacks",
    "wrong image shape": "3072 values",
    "label count": "11 labels for 12 images",
    "label range": "expected 0..9",
}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_bad_test_batch_is_user_error_naming_file(data_dir, problem) -> None:
    _corrupt(data_dir / data.FOLDER / "test_batch", problem)
    with pytest.raises(UserError, match=PROBLEMS[problem]) as raised:
        data.load_test(data_dir)
    assert "test_batch" in str(raised.value)


@pytest.mark.parametrize("problem", ["truncated", "label range"])
def test_bad_train_batch_is_user_error_naming_file(data_dir, problem) -> None:
    _corrupt(data_dir / data.FOLDER / "data_batch_3", problem)
    with pytest.raises(UserError, match=PROBLEMS[problem]) as raised:
        data.load_train(data_dir)
    assert "data_batch_3" in str(raised.value)


def test_missing_locations_are_user_errors(data_dir, tmp_path) -> None:
    with pytest.raises(UserError, match="data folder .*nowhere not found"):
        data.load_test(tmp_path / "nowhere")
    with pytest.raises(UserError, match=f"{data.FOLDER} not found"):
        data.load_train(tmp_path)
    (data_dir / data.FOLDER / "test_batch").unlink()
    with pytest.raises(UserError, match="test_batch not found.*download.sh"):
        data.load_test(data_dir)
    shutil.rmtree(data_dir / data.FOLDER)
    with pytest.raises(UserError, match=f"{data.FOLDER} not found"):
        data.load_test(data_dir)


def test_to_model_input_keeps_raw_pixel_values() -> None:
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    converted = data.to_model_input(images)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted, [[[[0.0, 128.0, 255.0]]]])


def test_train_dataset_without_augment_yields_input_as_float(data_dir) -> None:
    images, labels, _ = data.load_test(data_dir)
    batches = list(data.train_dataset(images, labels, batch_size=16, augment=False, seed=0, shuffle=False))
    assert [len(x) for x, _ in batches] == [16, 16, 5]
    got_images = np.concatenate([x.numpy() for x, _ in batches])
    assert got_images.dtype == np.float32
    np.testing.assert_array_equal(got_images, data.to_model_input(images))
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), labels)


def test_train_dataset_augment_changes_images_keeps_labels(data_dir) -> None:
    images, labels, _ = data.load_test(data_dir)
    dataset = data.train_dataset(images, labels, batch_size=16, augment=True, seed=1, shuffle=False)
    got_images = np.concatenate([x.numpy() for x, _ in dataset])
    assert got_images.shape == (37, 32, 32, 3) and got_images.dtype == np.float32
    assert got_images.min() >= 0.0 and got_images.max() <= 255.0
    changed = np.abs(got_images - images).mean(axis=(1, 2, 3)) > 1.0
    assert changed.mean() > 0.5
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in dataset]), labels)


def test_train_dataset_reshuffles_each_epoch(data_dir) -> None:
    images, labels, _ = data.load_test(data_dir)
    dataset = data.train_dataset(images, np.arange(len(labels)), batch_size=8, augment=False, seed=2)
    epochs = [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(2)]
    for order in epochs:
        assert sorted(order) == list(range(len(labels)))
    assert not np.array_equal(epochs[0], epochs[1])


# ---------------------------------------------------------------------------------------------
# CIFAR-10 as image folders (train/CLASS/*.png|jpg, test/CLASS/...)


def every_class(labels):
    """Labels that give every class images (the image folders refuse an empty class folder)."""
    return np.arange(len(labels)) % 10


def test_image_folders_load_the_pixels_of_the_batches_they_were_written_from(data_dir, tmp_path) -> None:
    from image_classification import task

    test_images, test_labels, _ = data.load_test(data_dir)
    train_images, train_labels = data.load_train(data_dir)
    test_labels, train_labels = every_class(test_labels), every_class(train_labels)
    folders = write_image_folders(tmp_path / "folders", "test", test_images, test_labels)
    write_image_folders(folders, "train", train_images, train_labels)
    loaded = data.load_test(folders)
    # Test images class by class, files in name order (= their row in the batch).
    order = np.lexsort((np.arange(len(test_labels)), test_labels))
    np.testing.assert_array_equal(loaded[0], test_images[order])
    np.testing.assert_array_equal(loaded[1], test_labels[order])
    assert loaded[2][0] == f"test/{image_folders.CLASS_NAMES[test_labels[order[0]]]}/{order[0]:05d}.png"
    assert loaded.skipped == ()
    # Training images interleaved across classes: the k-th of every class, then the k+1-th.
    images, labels = data.load_train(folders)
    rank = np.array([np.sum(train_labels[:i] == train_labels[i]) for i in range(len(train_labels))])
    order = np.lexsort((train_labels, rank))
    np.testing.assert_array_equal(images, train_images[order])
    np.testing.assert_array_equal(labels, train_labels[order])
    # The validation split deploy.sh holds apart: the last tenth, drawn from every class alike.
    x, y = task.validation_set(folders)
    np.testing.assert_array_equal(x, data.to_model_input(train_images[order][-len(y) :]))
    assert len(set(y.tolist())) > 1


def test_image_folders_skip_odd_test_images_by_name_and_refuse_odd_training_images(data_dir, tmp_path) -> None:
    from PIL import Image

    test_images, test_labels, _ = data.load_test(data_dir)
    test_labels = every_class(test_labels)
    folders = write_image_folders(tmp_path / "folders", "test", test_images[:20], test_labels[:20])
    write_image_folders(folders, "train", test_images[:20], test_labels[:20], suffix=".jpg")
    Image.new("RGB", (64, 64)).save(folders / "test" / "cat" / "big.png")
    (folders / "test" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    loaded = data.load_test(folders)
    assert len(loaded[0]) == 20 and dict(loaded.skipped) == {
        "test/cat/big.png": "64x64 pixels, not 32x32",
        "test/dog/broken.jpg": "not a readable image (UnidentifiedImageError)",
    }
    assert len(data.load_train(folders)[0]) == 20  # JPEG copies load too
    Image.new("L", (32, 32)).save(folders / "train" / "ship" / "grey.png")  # grey: converted to RGB
    assert len(data.load_train(folders)[0]) == 21
    Image.new("RGB", (31, 32)).save(folders / "train" / "ship" / "narrow.png")
    with pytest.raises(UserError, match=r"1 training image\(s\) under .*train/ship/narrow.png \(31x32 pixels"):
        data.load_train(folders)


def test_download_with_image_folders_in_place_fetches_nothing(data_dir, tmp_path, capsys) -> None:
    test_images, test_labels, _ = data.load_test(data_dir)
    folders = write_image_folders(tmp_path / "folders", "test", test_images, every_class(test_labels))
    nowhere = (tmp_path / "no_mirror" / "cifar-10-python.tar.gz").as_uri()
    assert data.download(folders, url=nowhere, split="test") == folders
    assert "CIFAR-10 as image folders (test) already present" in capsys.readouterr().out
    with pytest.raises(UserError):  # the training split is not there: it would be fetched, and cannot be
        data.download(folders, url=nowhere, split="all")


def test_test_sh_reads_image_folders_and_counts_the_skipped(data_dir, tmp_path) -> None:
    import json

    from PIL import Image
    from scripts import assert_ok, run

    test_images, test_labels, _ = data.load_test(data_dir)
    test_labels = every_class(test_labels)
    folders = write_image_folders(tmp_path / "folders", "test", test_images, test_labels)
    Image.new("RGB", (48, 48)).save(folders / "test" / "frog" / "odd.png")
    out = tmp_path / "results"
    proc = run(
        "image_classification/test.sh",
        "--data-dir",
        folders,
        "--results-dir",
        out,
        "--models",
        "pretrained",
        "--model",
        "base",
        cwd=tmp_path,
    )
    assert_ok(proc)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == {
        "folder": str(folders),
        "found": len(test_labels) + 1,
        "scored": len(test_labels),
        "skipped": [{"id": "test/frog/odd.png", "reason": "48x48 pixels, not 32x32"}],
    }
    ordered = sorted(enumerate(test_labels), key=lambda pair: (pair[1], pair[0]))
    expected = [f"test/{image_folders.CLASS_NAMES[label]}/{i:05d}.png" for i, label in ordered]
    with np.load(out / "traces" / "base.npz") as trace:
        assert trace["ids"].tolist() == expected  # each sample named by its file


def test_image_folders_hold_one_rule_for_every_reader(data_dir, tmp_path, capsys) -> None:
    """Training images beside a file that is not one: the file skipped, named and counted on stderr once;
    an extra class folder refused by the training reader and by download alike, naming it."""
    test_images, test_labels, _ = data.load_test(data_dir)
    folders = write_image_folders(tmp_path / "folders", "train", test_images[:20], every_class(test_labels[:20]))
    (folders / "train" / "dog" / "notes.txt").write_text("mine")
    assert len(data.load_train(folders)[0]) == 20
    assert capsys.readouterr().err == (
        f"skipped 1 file(s) under {folders / 'train'}: train/dog/notes.txt (not a .png/.jpg/.jpeg file)\n"
    )
    data.load_train(folders)  # read again in the same run (design-exit reads it twice): said once
    assert capsys.readouterr().err == ""
    shutil.copytree(folders / "train" / "cat", folders / "train" / "unicorn")
    nowhere = (tmp_path / "no_mirror" / "cifar-10-python.tar.gz").as_uri()
    for read in (lambda: data.load_train(folders), lambda: data.download(folders, url=nowhere, split="train")):
        with pytest.raises(UserError, match=r"train: unicorn/ is not a CIFAR-10 class \(2 files\); move unicorn/"):
            read()
