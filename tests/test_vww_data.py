"""Tests for visual_wake_words/{data,images,minival}.py on synthetic COCO val2017 and VWW training data (offline)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from visual_wake_words import data
from visual_wake_words.images import RESAMPLE, load_images
from visual_wake_words.minival import build_minival, minival_labels
from visual_wake_words.synthetic import (
    COCO_CASES,
    expected_minival,
    make_archives,
    save_image,
    write_coco,
    write_vww_train,
)

CASES = {case.name: case for case in COCO_CASES}


def _folder_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    return write_coco(tmp_path / "data")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_archives(tmp_path_factory.mktemp("archives"), n_non_person=12, n_person=15)


@pytest.fixture
def train_dir(tmp_path: Path) -> Path:
    write_vww_train(tmp_path / "data", n_non_person=29, n_person=31, seed=4)  # int(2.9) != round(2.9)
    return tmp_path / "data"


# ------------------------------------------------------------------------------------------------
# minival


def test_minival_rules_put_each_image_in_its_folder(coco_dir) -> None:
    counts = build_minival(coco_dir)
    minival = coco_dir / "minival"
    expected = expected_minival()
    assert _folder_names(minival / "person") == expected["person"]
    assert _folder_names(minival / "non_person") == expected["non_person"]
    skipped = sorted(case.file_name for case in COCO_CASES if case.expected is None)
    assert counts == {
        "person": len(expected["person"]),
        "non_person": len(expected["non_person"]),
        "skipped": len(skipped),
    }
    assert counts["person"] == len(list((minival / "person").iterdir()))
    assert counts["non_person"] == len(list((minival / "non_person").iterdir()))


@pytest.mark.parametrize(
    "name, folder",
    [
        ("just above 2.5 %", "person"),
        ("exactly 2.5 %", None),
        ("just below 2.5 %", None),
        ("crowd only", "non_person"),
        ("large crowd, small non-crowd person", None),
        ("no annotations", "non_person"),
        ("other category only", "non_person"),
        ("one small one large person", "person"),
    ],
)
def test_minival_rule(coco_dir, name, folder) -> None:
    case = CASES[name]
    assert case.expected == folder  # the synthetic case states what the rule must give
    build_minival(coco_dir)
    found = [label for label in ("person", "non_person") if (coco_dir / "minival" / label / case.file_name).is_file()]
    assert found == ([folder] if folder else [])


def test_minival_labels_threshold_is_exact() -> None:
    coco = {
        "categories": [{"id": 3, "name": "person"}],
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 10} for i in range(3)],
        "annotations": [
            {"image_id": 0, "category_id": 3, "bbox": [0, 0, 5, 5.0], "iscrowd": 0},  # 25 = 2.5 %
            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5.000001]},
            {"image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 4.999999]},
        ],
    }
    assert minival_labels(coco) == {"0.jpg": None, "1.jpg": "person", "2.jpg": None}


def test_minival_images_are_rgb_96_squashed_jpegs(coco_dir) -> None:
    build_minival(coco_dir)
    gray = CASES["grayscale with person"]
    with Image.open(coco_dir / "minival" / "person" / gray.file_name) as saved:
        assert (saved.format, saved.mode, saved.size) == ("JPEG", "RGB", (96, 96))
        pixels = np.asarray(saved, dtype=int)
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 2  # grey stays grey
    for case in (CASES["large person"], CASES["crowd only"], CASES["small image no person"]):
        saved_path = coco_dir / "minival" / case.expected / case.file_name
        with Image.open(coco_dir / "val2017" / case.file_name) as source:
            reference = np.asarray(source.convert("RGB").resize((96, 96), RESAMPLE), dtype=float)
        saved_pixels = np.asarray(Image.open(saved_path), dtype=float)
        assert saved_pixels.shape == (96, 96, 3)
        assert np.abs(saved_pixels - reference).mean() < 1.5  # high-quality JPEG of the bilinear squash


def test_minival_squashes_without_keeping_aspect(tmp_path) -> None:
    root = write_coco(tmp_path / "data", cases=(CASES["no annotations"],))
    halves = np.zeros((40, 200, 3), np.uint8)
    halves[:, :100] = (255, 0, 0)
    halves[:, 100:] = (0, 0, 255)
    save_image(root / "val2017" / CASES["no annotations"].file_name, halves, quality=98)
    build_minival(root)
    pixels = np.asarray(Image.open(root / "minival" / "non_person" / CASES["no annotations"].file_name), dtype=int)
    assert (pixels[:, :44, 0] > 230).all() and (pixels[:, :44, 2] < 25).all()
    assert (pixels[:, 52:, 2] > 230).all() and (pixels[:, 52:, 0] < 25).all()


def test_minival_out_dir_and_skip_when_complete(coco_dir, tmp_path, capsys) -> None:
    out = tmp_path / "elsewhere"
    counts = build_minival(coco_dir, out_dir=out)
    assert not (coco_dir / "minival").exists()
    person = out / "minival" / "person"
    first = person / expected_minival()["person"][0]
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    assert build_minival(coco_dir, out_dir=out) == counts
    assert "already complete" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp

    first.unlink()  # an image lost,
    save_image(person / "stray.jpg", np.zeros((96, 96, 3), np.uint8))  # one that does not belong,
    (person / f".{first.name}.123.tmp").write_bytes(b"half")  # a temporary file left behind
    (person / "notes.txt").write_text("kept")
    assert build_minival(coco_dir, out_dir=out) == counts
    assert _folder_names(person) == sorted([*expected_minival()["person"], "notes.txt"])


def test_minival_missing_inputs_are_user_errors(coco_dir) -> None:
    os.remove(coco_dir / "val2017" / CASES["large person"].file_name)
    with pytest.raises(UserError, match=f"missing.*{CASES['large person'].file_name}.*download.sh"):
        build_minival(coco_dir)
    shutil.rmtree(coco_dir / "annotations")
    with pytest.raises(UserError, match="instances_val2017.json not found.*download.sh"):
        build_minival(coco_dir)


def test_minival_bad_annotations_are_user_errors(coco_dir) -> None:
    path = coco_dir / "annotations" / "instances_val2017.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        build_minival(coco_dir)
    path.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}]}')
    with pytest.raises(UserError, match="no category named 'person'"):
        build_minival(coco_dir)
    path.write_text('{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "person"}]}')
    with pytest.raises(UserError, match="not in the COCO instances format.*file_name"):
        build_minival(coco_dir)


def test_minival_unreadable_image_is_user_error(coco_dir) -> None:
    (coco_dir / "val2017" / CASES["crowd only"].file_name).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match=f"Cannot read COCO image .*{CASES['crowd only'].file_name}"):
        build_minival(coco_dir)


# ------------------------------------------------------------------------------------------------
# download


def test_download_then_minival_then_load_test(archives, tmp_path, capsys) -> None:
    data_dir = tmp_path / "data"
    assert (
        data.download(
            data_dir,
            train_url=archives["train"].as_uri(),
            images_url=archives["images"].as_uri(),
            annotations_url=archives["annotations"].as_uri(),
            verify_checksums=False,
        )
        == data_dir
    )
    assert len(_folder_names(data_dir / "vw_coco2014_96" / "person")) == 15
    assert len(_folder_names(data_dir / "vw_coco2014_96" / "non_person")) == 12
    assert _folder_names(data_dir / "val2017") == sorted(case.file_name for case in COCO_CASES)
    assert (data_dir / "annotations" / "instances_val2017.json").is_file()

    counts = build_minival(data_dir)
    images, labels, ids = data.load_test(data_dir / "minival")
    expected = expected_minival()
    assert list(ids) == sorted(
        [f"non_person/{name}" for name in expected["non_person"]] + [f"person/{name}" for name in expected["person"]]
    )
    np.testing.assert_array_equal(labels, [1 if i.startswith("person/") else 0 for i in ids])
    assert labels.dtype == np.int64 and int(labels.sum()) == counts["person"] == len(expected["person"])
    assert images.shape == (len(ids), 96, 96, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
    reread = np.asarray(Image.open(data_dir / "minival" / ids[3]), dtype=np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(images[3], reread)

    capsys.readouterr()
    nowhere = (tmp_path / "missing.zip").as_uri()
    data.download(data_dir, train_url=nowhere, images_url=nowhere, annotations_url=nowhere)
    out = capsys.readouterr().out  # the training set, and the minival in place of COCO val2017
    assert out.count("already present") == 2 and "COCO val2017 is not needed" in out


def test_a_minival_in_place_is_the_test_split(coco_dir, tmp_path, capsys) -> None:
    import visual_wake_words.task

    build_minival(coco_dir)
    shutil.rmtree(coco_dir / "val2017")
    shutil.rmtree(coco_dir / "annotations")
    minival = {path: path.read_bytes() for path in sorted((coco_dir / "minival").rglob("*")) if path.is_file()}
    nowhere = (tmp_path / "missing.zip").as_uri()
    urls = dict(train_url=nowhere, images_url=nowhere, annotations_url=nowhere)
    capsys.readouterr()
    assert data.download(coco_dir, split="test", **urls) == coco_dir  # nothing fetched: the source is missing
    assert "minival already present (COCO val2017 is not needed)" in capsys.readouterr().out
    visual_wake_words.task.prepare_test(coco_dir)
    assert "used as it is" in capsys.readouterr().out
    assert {path: path.read_bytes() for path in minival} == minival and not (coco_dir / "val2017").exists()
    with pytest.raises(UserError, match="does not exist"):
        data.download(coco_dir, split="train", **urls)  # the training set is not in place
    shutil.rmtree(coco_dir / "minival" / "person")  # half a test set is not in place
    with pytest.raises(UserError, match="does not exist"):
        data.download(coco_dir, split="test", **urls)


def test_download_repairs_incomplete_images_folder(archives, tmp_path) -> None:
    data_dir = tmp_path / "data"
    urls = dict(
        train_url=archives["train"].as_uri(),
        images_url=archives["images"].as_uri(),
        annotations_url=archives["annotations"].as_uri(),
        verify_checksums=False,
    )
    data.download(data_dir, **urls)
    (data_dir / "val2017" / CASES["crowd only"].file_name).unlink()
    (data_dir / "val2017.zip").unlink()  # forces a fresh fetch, which must happen
    data.download(data_dir, **urls)
    assert (data_dir / "val2017" / CASES["crowd only"].file_name).is_file()
    assert (data_dir / "val2017.zip").is_file()


def test_download_checks_checksums(archives, tmp_path) -> None:
    data_dir = tmp_path / "data"
    with pytest.raises(UserError, match="Checksum mismatch.*sha1 expected a5a465"):
        data.download(data_dir, train_url=archives["train"].as_uri())
    assert not (data_dir / "vw_coco2014_96").exists() and not (data_dir / "vw_coco2014_96.tar.gz").exists()
    write_vww_train(data_dir, 2, 2)  # training data present: next comes the annotations archive
    with pytest.raises(UserError, match="Checksum mismatch.*md5 expected f4bbac"):
        data.download(data_dir, annotations_url=archives["annotations"].as_uri())
    assert not (data_dir / "annotations").exists()


def test_download_wrong_archive_is_user_error(archives, tmp_path) -> None:
    with pytest.raises(UserError, match="did not unpack to a complete .*vw_coco2014_96"):
        data.download(tmp_path / "data", train_url=archives["images"].as_uri(), verify_checksums=False)


# ------------------------------------------------------------------------------------------------
# load_test / load_images


def _test_set(root: Path, n_person: int = 3, n_non_person: int = 4) -> Path:
    rng = np.random.default_rng(1)
    for class_name, count in (("person", n_person), ("non_person", n_non_person)):
        for i in range(count):
            save_image(root / class_name / f"img_{i:03d}.jpg", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    return root


def test_load_test_reports_and_skips_unreadable_image(tmp_path, capsys) -> None:
    root = _test_set(tmp_path / "minival")
    (root / "person" / "broken.jpg").write_bytes(b"garbage, not an image")
    (root / "person" / "notes.txt").write_text("ignored: not an image suffix")
    save_image(root / "non_person" / "UPPER.PNG", np.full((96, 96, 3), 255, np.uint8))
    images, labels, ids = data.load_test(root)
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "1 of 9 test images could not be read" in err
    assert "person/broken.jpg" not in ids and "non_person/UPPER.PNG" in ids
    assert len(images) == len(labels) == len(ids) == 8
    np.testing.assert_array_equal(images[list(ids).index("non_person/UPPER.PNG")], 1.0)
    assert labels.tolist() == [0] * 5 + [1] * 3


def test_load_test_missing_or_empty_is_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="person not found.*preprocess.sh.*--data-dir DATA/minival"):
        data.load_test(tmp_path / "nowhere")
    (tmp_path / "empty" / "person").mkdir(parents=True)
    (tmp_path / "empty" / "non_person").mkdir()
    with pytest.raises(UserError, match="No .png/.jpg/.jpeg images.*preprocess.sh"):
        data.load_test(tmp_path / "empty")
    _test_set(tmp_path / "data" / "minival")
    with pytest.raises(UserError, match="here: --data-dir .*data/minival"):
        data.load_test(tmp_path / "data")
    only_broken = tmp_path / "broken"
    for class_name in ("person", "non_person"):
        (only_broken / class_name).mkdir(parents=True)
        (only_broken / class_name / "x.jpg").write_bytes(b"junk")
    with pytest.raises(UserError, match="None of the 2 images"):
        data.load_test(only_broken)


def test_load_images_resizes_png_and_jpeg_of_other_sizes(tmp_path) -> None:
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (70, 50, 4), dtype=np.uint8)
    png = save_image(tmp_path / "a.png", rgba)
    gray = save_image(tmp_path / "b.jpeg", rng.integers(0, 256, (120, 200), dtype=np.uint8), quality=95)
    exact = save_image(tmp_path / "c.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    images = load_images([png, str(gray), exact])
    assert images.shape == (3, 96, 96, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    expected_png = np.asarray(Image.fromarray(rgba[..., :3]).resize((96, 96), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[0], expected_png.astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(images[1][..., 0], images[1][..., 2])  # grey -> equal channels
    np.testing.assert_array_equal(images[2], np.asarray(Image.open(exact), dtype=np.float32) * np.float32(1 / 255))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(UserError, match="Cannot read image .*bad.jpg"):
        load_images([png, tmp_path / "bad.jpg"])


# ------------------------------------------------------------------------------------------------
# training data


def test_split_train_is_deterministic_per_class_ten_percent(train_dir) -> None:
    (train_dir / "vw_coco2014_96" / "person" / "README.txt").write_text("not an image")
    train, validation = data.split_train(train_dir)
    assert data.split_train(train_dir) == (train, validation)
    for label, class_name, n in ((0, "non_person", 29), (1, "person", 31)):
        names = sorted(os.listdir(train_dir / "vw_coco2014_96" / class_name))
        names = [name for name in names if name.endswith(".jpg")]
        paths = [f"vw_coco2014_96/{class_name}/{name}" for name in names]
        assert [p for p, y in validation if y == label] == paths[: n // 10]
        assert [p for p, y in train if y == label] == paths[n // 10 :]
        assert all(path.split("/")[1] == class_name for path, y in train + validation if y == label)
    assert len(validation) == 2 + 3 and len(train) == 27 + 28
    assert all((train_dir / path).is_file() for path, _ in train + validation)


def test_split_train_rounds_like_keras() -> None:
    for n in range(0, 2000):
        assert int(data.VALIDATION_SPLIT * n) == n // 10


def test_split_train_missing_folder_is_user_error(tmp_path, train_dir) -> None:
    with pytest.raises(UserError, match="vw_coco2014_96 not found.*visual_wake_words/download.sh"):
        data.split_train(tmp_path / "nowhere")
    with pytest.raises(UserError, match="vw_coco2014_96 not found.*download.sh"):
        data.train_dataset(tmp_path / "nowhere", batch_size=4, augment=False, seed=0)
    shutil.rmtree(train_dir / "vw_coco2014_96" / "person")
    with pytest.raises(UserError, match="person not found.*download.sh"):
        data.validation_dataset(train_dir, batch_size=4)


def _collect(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def test_validation_dataset_equals_decoded_images(train_dir) -> None:
    _, validation = data.split_train(train_dir)
    batches = list(data.validation_dataset(train_dir, batch_size=2).as_numpy_iterator())
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    images, labels = _collect(data.validation_dataset(train_dir, batch_size=2))
    assert images.dtype == np.float32 and images.shape == (5, 96, 96, 3)
    np.testing.assert_array_equal(labels, [y for _, y in validation])
    np.testing.assert_array_equal(images, load_images([train_dir / p for p, _ in validation]))


def test_train_dataset_resizes_other_sizes_like_load_images(train_dir) -> None:
    folder = train_dir / "vw_coco2014_96" / "person"
    rng = np.random.default_rng(5)
    for name in os.listdir(folder)[:4]:  # some of them end up in each split
        (folder / name).unlink()
    odd = save_image(folder / "zz_odd.png", rng.integers(0, 256, (150, 120, 3), dtype=np.uint8))
    images, _ = _collect(data.train_dataset(train_dir, batch_size=64, augment=False, seed=0, shuffle=False))
    train, _ = data.split_train(train_dir)
    row = [p for p, _ in train].index("vw_coco2014_96/person/zz_odd.png")
    expected = load_images([odd])[0]
    assert np.abs(images[row] - expected).max() <= 1.01 / 255


def test_train_dataset_augment_changes_images_keeps_labels(train_dir) -> None:
    train, _ = data.split_train(train_dir)
    plain = load_images([train_dir / p for p, _ in train])
    images, labels = _collect(data.train_dataset(train_dir, batch_size=16, augment=True, seed=1, shuffle=False))
    assert images.shape == plain.shape and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(labels, [y for _, y in train])
    changed = np.abs(images - plain).mean(axis=(1, 2, 3)) > 0.01
    assert changed.mean() > 0.8
    # geometry only: each image keeps about its brightness
    brightness_change = np.abs(images.mean(axis=(1, 2, 3)) - plain.mean(axis=(1, 2, 3)))
    assert brightness_change.mean() < 0.02 and brightness_change.max() < 0.06

    unaugmented, _ = _collect(data.train_dataset(train_dir, batch_size=16, augment=False, seed=1, shuffle=False))
    np.testing.assert_array_equal(unaugmented, plain)


def test_augment_layer_is_the_mlperf_recipe() -> None:
    layers = {type(layer).__name__: layer.get_config() for layer in data.augment_layer(seed=7).layers}
    assert list(layers) == ["RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip"]
    assert np.allclose(np.array(layers["RandomRotation"]["factor"]) * 360, [-10, 10])  # degrees
    assert (layers["RandomTranslation"]["height_factor"], layers["RandomTranslation"]["width_factor"]) == (0.05, 0.05)
    assert tuple(layers["RandomZoom"]["height_factor"]) == tuple(layers["RandomZoom"]["width_factor"]) == (-0.1, 0.1)
    assert layers["RandomFlip"]["mode"] == "horizontal"
    assert all(layers[name]["fill_mode"] == "nearest" for name in ("RandomRotation", "RandomTranslation", "RandomZoom"))
    assert len({config["seed"] for config in layers.values()}) == 4


def test_train_dataset_augments_each_image_independently(tmp_path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for class_name in ("person", "non_person"):
        for i in range(5):  # int(0.1 * 5) = 0: all in the train split
            save_image(tmp_path / "vw_coco2014_96" / class_name / f"{i}.png", pixels)
    images, _ = _collect(data.train_dataset(tmp_path, batch_size=10, augment=True, seed=3, shuffle=False))
    assert len(images) == 10
    distances = np.abs(images[:, None] - images[None]).mean(axis=(2, 3, 4))
    assert (distances[~np.eye(10, dtype=bool)] > 0.01).all()  # one batch, ten different transforms


def test_train_dataset_reshuffles_each_epoch(train_dir) -> None:
    dataset = data.train_dataset(train_dir, batch_size=8, augment=False, seed=2)
    train, _ = data.split_train(train_dir)
    plain = load_images([train_dir / p for p, _ in train])
    fingerprints = {round(float(x.sum()), 2): i for i, x in enumerate(plain)}
    orders = []
    for _ in range(2):
        images, labels = _collect(dataset)
        order = [fingerprints[round(float(x.sum()), 2)] for x in images]
        assert sorted(order) == list(range(len(train)))
        np.testing.assert_array_equal(labels, [train[i][1] for i in order])
        orders.append(order)
    assert orders[0] != orders[1]
