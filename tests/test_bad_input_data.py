"""Bad input data, through the real scripts: damaged, odd or misplaced files of the three tasks end in one
message naming the file or folder and a non-zero exit, or are skipped, named and counted in summary.json;
files that were there before are byte-identical after; download --split fetches only what it needs. The
script runs go two at a time from one fixture. Below them, the image modes of visual wake words and the
minival builder in process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.errors import UserError
from image_classification.synthetic import synthetic_batch, write_cifar, write_pickle
from keyword_spotting import data as kws
from keyword_spotting.synthetic import tone_clip, write_test_tree, write_train_tree, write_wav
from visual_wake_words import data as vww
from visual_wake_words import images as vww_images
from visual_wake_words import minival as vww_minival
from visual_wake_words.synthetic import COCO_CASES, save_image, write_coco, write_vww_train
from visual_wake_words.synthetic import make_archives as make_vww_archives

REPO_ROOT = Path(__file__).resolve().parent.parent
KWS_TEST = kws.TEST_FOLDER
Case = tuple[str, list, dict]  # the script ("cli": python3 -m common.cli), its arguments, what the test needs
CASES: dict[str, Callable[..., Case]] = {}


def case(setup: Callable[..., Case]) -> Callable[..., Case]:
    """Register `setup(tmp) -> (script, args, context)`: one run of a real script ("cli": python3 -m
    common.cli) in the fixture below."""
    CASES[setup.__name__] = setup
    return setup


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


@case
def kws_damaged_clips(tmp: Path) -> Case:
    root = tmp / "data" / KWS_TEST
    write_test_tree(root, per_label=1)
    whole = write_wav(root / "go" / "whole.wav", tone_clip(np.random.default_rng(3), 400.0)).read_bytes()
    (root / "go" / "whole.wav").unlink()
    (root / "go" / "cut_in_data.wav").write_bytes(whole[:20000])
    (root / "go" / "cut_in_header.wav").write_bytes(whole[:30])
    write_wav(root / "up" / "nan.wav", np.where(np.arange(16000) == 5, np.nan, 0.1).astype(np.float32))
    skipped = [
        (f"{KWS_TEST}/go/cut_in_data.wav", "truncated"),
        (f"{KWS_TEST}/go/cut_in_header.wav", "truncated header"),
        (f"{KWS_TEST}/up/nan.wav", "non-finite samples"),
    ]
    args = ["--data-dir", tmp / "data", "--results-dir", tmp / "out", "--model", "base"]
    return "keyword_spotting/test.sh", args, {"skipped": skipped}  # the reading is the same for every model


@case
def kws_label_folder(tmp: Path) -> Case:
    root = tmp / "data" / KWS_TEST
    write_test_tree(root, per_label=1)
    write_wav(root / "Yes" / "a.wav", tone_clip(np.random.default_rng(0), 300.0))
    return "keyword_spotting/test.sh", ["--data-dir", tmp / "data", "--results-dir", tmp / "out"], {}


@pytest.fixture(scope="module")
def kws_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preprocessed keyword-spotting data folder (train tree and cache)."""
    data_dir = tmp_path_factory.mktemp("kws_cache") / "data"
    write_train_tree(data_dir / kws.TRAIN_FOLDER)
    kws.preprocess(data_dir)
    return data_dir


def _truncate(path: Path) -> bytes:
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return whole


@case
def kws_cache_preprocess(tmp: Path, kws_cache: Path) -> Case:
    shutil.copytree(kws_cache, tmp / "data")
    whole = _truncate(tmp / "data" / "cache" / "train_audio.npy")
    return "keyword_spotting/preprocess.sh", ["--data-dir", tmp / "data"], {"whole": whole}


@case
def kws_cache_train(tmp: Path, kws_cache: Path) -> Case:
    shutil.copytree(kws_cache, tmp / "data")
    _truncate(tmp / "data" / "cache" / "train_audio.npy")
    return (
        "keyword_spotting/train.sh",
        ["base", "--data-dir", tmp / "data", "--models-dir", tmp / "models", "--set", "epochs=1"],
        {},
    )


class _RunsACommand:
    """Pickles as a call of os.system: what a planted cache file would do if it were unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


@case
def kws_cache_pickle(tmp: Path, kws_cache: Path) -> Case:
    shutil.copytree(kws_cache, tmp / "data")
    labels = tmp / "data" / "cache" / "train_labels.npy"
    np.save(labels, np.array([_RunsACommand(tmp / "marker")] * len(np.load(labels)), dtype=object))
    return (
        "keyword_spotting/train.sh",
        ["base", "--data-dir", tmp / "data", "--models-dir", tmp / "models", "--set", "epochs=1"],
        {},
    )


def picture(rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One 96x96 8-bit RGB picture (smooth gradients and noise) and a grey one."""
    rng = rng or np.random.default_rng(5)
    y, x = np.mgrid[0:96, 0:96] / 96
    channels = [128 + a * (x - 0.5) + b * (y - 0.5) for a, b in rng.uniform(-220, 220, (3, 2))]
    rgb = np.clip(np.rint(np.stack(channels, -1) + rng.normal(0, 8, (96, 96, 3))), 0, 255).astype(np.uint8)
    return rgb, rgb[..., 1].copy()


def mode_versions(folder: Path) -> dict[str, str]:
    """PNG versions of one picture in every mode a .png holds, and the 8-bit RGB version each must read
    as: {file: its reference file}, all in `folder`."""
    rgb, grey = picture()
    alpha = np.random.default_rng(6).integers(0, 256, (96, 96), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(64)
    images = {
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "grey_rgb.png": Image.fromarray(np.dstack([grey] * 3)),
        "l.png": Image.fromarray(grey),
        "la.png": Image.fromarray(np.dstack([grey, alpha]), "LA"),
        "i16.png": Image.fromarray(grey.astype(np.uint16) * 257),
        "p_rgb.png": palette.convert("RGB"),
        "one.png": Image.fromarray(grey > 128),
        "one_rgb.png": Image.fromarray(np.dstack([np.where(grey > 128, 255, 0).astype(np.uint8)] * 3)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        image.save(folder / name)
    palette.save(folder / "p.png", transparency=0)
    assert Image.open(folder / "i16.png").mode == "I;16" and Image.open(folder / "p.png").mode == "P"
    return {
        "rgba.png": "rgb.png",
        "l.png": "grey_rgb.png",
        "la.png": "grey_rgb.png",
        "i16.png": "grey_rgb.png",
        "p.png": "p_rgb.png",
        "one.png": "one_rgb.png",
    }


@case
def vww_modes(tmp: Path) -> Case:
    pairs = mode_versions(tmp / "data" / "person")
    (tmp / "data" / "person" / "empty.png").write_bytes(b"")
    save_image(tmp / "data" / "non_person" / "x.png", picture(np.random.default_rng(9))[0])
    args = ["--data-dir", tmp / "data", "--results-dir", tmp / "out", "--model", "base,trecx_ev"]
    return "visual_wake_words/test.sh", args, {"pairs": pairs}  # the two models whose traces are compared


@case
def vww_minival_failed_build(tmp: Path) -> Case:
    write_coco(tmp / "data", cases=COCO_CASES[:4])
    save_image(tmp / "data" / "minival" / "person" / "mine.jpg", picture()[0])
    broken = tmp / "data" / "val2017" / COCO_CASES[1].file_name
    broken.write_bytes(broken.read_bytes()[:200])
    return "visual_wake_words/preprocess.sh", ["--data-dir", tmp / "data"], {"broken": broken.name}


@case
def vww_train_empty_image(tmp: Path) -> Case:
    write_vww_train(tmp / "data", 4, 4)
    empty = tmp / "data" / vww.TRAIN_FOLDER / "person" / "COCO_train2014_zzzz.jpg"
    empty.write_bytes(b"")
    return (
        "visual_wake_words/train.sh",
        ["base", "--data-dir", tmp / "data", "--models-dir", tmp / "models", "--set", "epochs=1"],
        {"file": empty.name},
    )


@case
def cifar_no_images(tmp: Path) -> Case:
    write_cifar(tmp / "data", n_test=3, n_train_per_batch=1)
    write_pickle(tmp / "data" / "cifar-10-batches-py" / "test_batch", synthetic_batch(np.random.default_rng(0), 0, "x"))
    return "image_classification/test.sh", ["--data-dir", tmp / "data", "--results-dir", tmp / "out"], {}


@case
def cifar_download_keeps_own_test_batch(tmp: Path) -> Case:
    from image_classification.synthetic import make_cifar_archive

    make_cifar_archive(tmp / "mirror", n_test=4, n_train_per_batch=2)
    write_cifar(tmp / "own", n_test=5, n_train_per_batch=1)
    (tmp / "data" / "cifar-10-batches-py").mkdir(parents=True)
    shutil.copy(tmp / "own" / "cifar-10-batches-py" / "test_batch", tmp / "data" / "cifar-10-batches-py")
    return (
        "image_classification/download.sh",
        # --split train: the training batches are missing, so the archive is fetched (a test_batch in place
        # is all --split test needs)
        ["--data-dir", tmp / "data", "--mirror", tmp / "mirror", "--split", "train"],
        {},
    )


def cifar_folders(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """CIFAR-10 as image folders under `root`, every class with images."""
    from image_classification.synthetic import synthetic_inputs, write_image_folders

    for split, n in (("train", n_train), ("test", n_test)):
        images = synthetic_inputs(n, seed=len(split))[0].astype(np.uint8)
        write_image_folders(root, split, images, np.arange(n) % 10)
    return root


@case
def cifar_extra_class_folder(tmp: Path) -> Case:  # issue 27, case 1: design-exit beside a train/unicorn/ of 5 images
    folders = cifar_folders(tmp / "data")
    shutil.copytree(folders / "train" / "cat", folders / "train" / "unicorn")
    for extra in list((folders / "train" / "unicorn").iterdir())[5:]:
        extra.unlink()
    args = ["design-exit", "image_classification", "--data-dir", folders, "--output-models-dir", tmp / "models"]
    return "cli", [*args, "--results-dir", tmp / "out"], {}


@case
def cifar_empty_class_folder(tmp: Path) -> Case:  # issue 27, case 2: design-exit with train/dog/ empty
    folders = cifar_folders(tmp / "data")
    for image in (folders / "train" / "dog").iterdir():
        image.unlink()
    (folders / "train" / "dog" / ".DS_Store").write_bytes(b"")
    args = ["design-exit", "image_classification", "--data-dir", folders, "--output-models-dir", tmp / "models"]
    return "cli", [*args, "--results-dir", tmp / "out"], {}


@case
def cifar_missing_test_class_folder(tmp: Path) -> Case:  # issue 27, case 6: test.sh with test/dog/ missing
    folders = cifar_folders(tmp / "data")
    shutil.rmtree(folders / "test" / "dog")
    return "image_classification/test.sh", ["--data-dir", folders, "--results-dir", tmp / "out"], {}


@case
def cifar_missing_train_class_folder(tmp: Path) -> Case:
    folders = cifar_folders(tmp / "data")
    shutil.rmtree(folders / "train" / "dog")
    args = ["base", "--data-dir", folders, "--models-dir", tmp / "models", "--set", "epochs=1"]
    return "image_classification/train.sh", args, {}


@case
def cifar_extra_test_class_folder(tmp: Path) -> Case:
    folders = cifar_folders(tmp / "data")
    shutil.copytree(folders / "test" / "cat", folders / "test" / "unicorn")
    return "image_classification/deploy.sh", ["--data-dir", folders, "--rho", "0.5", "--results-dir", tmp / "out"], {}


@case
def cifar_skipped_files_are_counted(tmp: Path) -> Case:
    folders = cifar_folders(tmp / "data")
    (folders / "test" / "cat" / "notes.txt").write_text("mine")
    (folders / "test" / ".DS_Store").write_bytes(b"")
    (folders / "test" / ".ipynb_checkpoints").mkdir()
    args = ["--data-dir", folders, "--results-dir", tmp / "out", "--models", "pretrained", "--model", "base"]
    return "image_classification/test.sh", args, {}


@case
def cifar_batches_folder_given(tmp: Path) -> Case:  # issue 26: --data-dir one level too deep
    folder = write_cifar(tmp / "data", n_test=3, n_train_per_batch=1)
    return "image_classification/test.sh", ["--data-dir", folder, "--results-dir", tmp / "out"], {}


@case
def cifar_split_folder_given(tmp: Path) -> Case:
    folders = cifar_folders(tmp / "data")
    return "image_classification/test.sh", ["--data-dir", folders / "test", "--results-dir", tmp / "out"], {}


@case
def cifar_train_split_folder_given(tmp: Path) -> Case:
    folders = cifar_folders(tmp / "data")
    args = ["--data-dir", folders, "--train-data-dir", folders / "train", "--results-dir", tmp / "out"]
    return "image_classification/deploy.sh", args, {}


@case
def kws_download_test_split(tmp: Path) -> Case:
    write_test_tree(tmp / "data" / KWS_TEST, per_label=1)
    (tmp / "mirror").mkdir()  # holds nothing: the train archive must not be asked for
    return (
        "keyword_spotting/download.sh",
        ["--data-dir", tmp / "data", "--mirror", tmp / "mirror", "--split", "test"],
        {},
    )


@case
def vww_download_test_split(tmp: Path) -> Case:
    write_coco(tmp / "data", cases=COCO_CASES[:3])
    (tmp / "mirror").mkdir()
    return (
        "visual_wake_words/download.sh",
        ["--data-dir", tmp / "data", "--mirror", tmp / "mirror", "--split", "test"],
        {},
    )


@case
def vww_download_train_split(tmp: Path) -> Case:
    make_vww_archives(tmp / "mirror", 2, 2)  # not the official files: the checksum refuses the one fetched
    return (
        "visual_wake_words/download.sh",
        ["--data-dir", tmp / "data", "--mirror", tmp / "mirror", "--split", "train"],
        {},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, kws_cache: Path) -> dict:
    """{case: (process, tmp folder, context, snapshot of tmp/data before)} of every registered case."""
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    prepared = {}
    for name, setup in CASES.items():
        tmp = tmp_path_factory.mktemp(name)
        script, args, context = setup(tmp, kws_cache) if "kws_cache" in name else setup(tmp)
        command = [sys.executable, "-m", "common.cli"] if script == "cli" else ["bash", str(REPO_ROOT / script)]
        prepared[name] = (
            tmp,
            [*command, *map(str, args)],
            context,
            snapshot(tmp / "data") if (tmp / "data").exists() else {},
        )

    def run(name: str) -> subprocess.CompletedProcess:
        tmp, argv, _, _ = prepared[name]
        return subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=400)

    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(prepared, pool.map(run, prepared)))
    return {name: (procs[name], *prepared[name]) for name in prepared}


def ended(runs: dict, name: str, code: int) -> str:
    """The run's output, after checking its exit status and that no traceback was shown."""
    proc, *_ = runs[name]
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    assert (proc.returncode == 0) if code == 0 else (proc.returncode != 0), f"{proc.returncode}\n{output}"
    return output


def inputs_of(tmp: Path) -> dict:
    """summary.json's inputs, less the test set folder read, checked to be absolute and under `tmp`."""
    inputs = json.loads((tmp / "out" / "summary.json").read_text())["inputs"]
    folder = Path(inputs.pop("folder"))
    assert folder.is_absolute() and folder.is_relative_to(tmp), folder
    return inputs


def test_kws_damaged_clips_are_skipped_named_and_counted(runs: dict) -> None:
    output = ended(runs, "kws_damaged_clips", 0)
    _, tmp, _, context, _ = runs["kws_damaged_clips"]
    for name, _ in context["skipped"]:
        assert name.split("/")[-1] in output
    assert inputs_of(tmp) == {
        "found": 15,
        "scored": 12,
        "skipped": [{"id": name, "reason": reason} for name, reason in context["skipped"]],
    }
    with np.load(tmp / "out" / "traces" / "base.npz") as traces:
        assert len(traces["ids"]) == 12 and np.isfinite(traces["ef"]).all()


def test_kws_folder_that_is_not_a_label_is_refused(runs: dict) -> None:
    output = ended(runs, "kws_label_folder", 2)
    assert f"{KWS_TEST}/Yes is not one of the 12 labels" in output and "yes, _silence_, _unknown_" in output
    assert not (runs["kws_label_folder"][1] / "out").exists()


def test_kws_truncated_cache_is_rebuilt_by_preprocess(runs: dict) -> None:
    output = ended(runs, "kws_cache_preprocess", 0)
    _, tmp, _, context, _ = runs["kws_cache_preprocess"]
    assert "complete and up to date" not in output and "train_audio.npy is damaged" in output
    assert (tmp / "data" / "cache" / "train_audio.npy").read_bytes() == context["whole"]


def test_kws_truncated_cache_stops_training_with_the_fix(runs: dict) -> None:
    output = ended(runs, "kws_cache_train", 2)
    assert "train_audio.npy is damaged" in output and "preprocess.sh --data-dir" in output and "again" in output
    _, tmp, _, _, before = runs["kws_cache_train"]
    assert snapshot(tmp / "data") == before


def test_kws_cache_holding_a_pickle_is_refused_unrun(runs: dict) -> None:
    output = ended(runs, "kws_cache_pickle", 2)
    _, tmp, _, _, before = runs["kws_cache_pickle"]
    assert "train_labels.npy is damaged" in output and "preprocess.sh --data-dir" in output
    assert not (tmp / "marker").exists() and snapshot(tmp / "data") == before


def test_vww_every_image_mode_scores_as_its_8_bit_rgb_version(runs: dict) -> None:
    ended(runs, "vww_modes", 0)
    _, tmp, _, context, _ = runs["vww_modes"]
    assert inputs_of(tmp) == {
        "found": 12,
        "scored": 11,
        "skipped": [{"id": "person/empty.png", "reason": "empty file"}],
    }
    for model in ("base", "trecx_ev"):
        with np.load(tmp / "out" / "traces" / f"{model}.npz") as traces:
            row = {name: i for i, name in enumerate(traces["ids"])}
            for exit_name in (key for key in traces.files if key not in ("ids", "labels")):
                for version, reference in context["pairs"].items():
                    np.testing.assert_allclose(
                        traces[exit_name][row[f"person/{version}"]],
                        traces[exit_name][row[f"person/{reference}"]],
                        atol=1e-6,
                        rtol=0,
                    )


def test_vww_failed_minival_build_loses_no_file(runs: dict) -> None:
    output = ended(runs, "vww_minival_failed_build", 2)
    _, tmp, _, context, before = runs["vww_minival_failed_build"]
    assert f"Cannot read COCO image {tmp / 'data' / 'val2017' / context['broken']}" in output
    after = snapshot(tmp / "data")
    assert {k: v for k, v in after.items() if not k.startswith(".minival.building/")} == before


def test_vww_empty_training_image_is_named(runs: dict) -> None:
    output = ended(runs, "vww_train_empty_image", 2)
    assert f"{runs['vww_train_empty_image'][3]['file']} is empty (0 bytes)" in output


def test_cifar_test_batch_without_images_is_named(runs: dict) -> None:
    output = ended(runs, "cifar_no_images", 2)
    assert "test_batch holds no images" in output and not (runs["cifar_no_images"][1] / "out").exists()


def test_cifar_download_keeps_a_users_own_test_batch(runs: dict) -> None:
    output = ended(runs, "cifar_download_keeps_own_test_batch", 2)
    _, tmp, _, _, before = runs["cifar_download_keeps_own_test_batch"]
    assert "cifar-10-python.tar.gz" in output and "md5" in output  # the synthetic archive is refused
    assert snapshot(tmp / "data") == before


CLASS_FOLDERS = "(the class folders must be exactly the ten, airplane, automobile, bird, cat, deer, dog, frog"


def test_cifar_image_folders_beside_the_ten_classes_are_refused_naming_them(runs: dict) -> None:
    """One rule in every command reading CIFAR-10 image folders: an extra class folder, an empty one or a
    missing one is refused, named with the fix, before anything is written."""
    train, test = "data/train", "data/test"
    for name, problem, fix in (
        (
            "cifar_extra_class_folder",
            "unicorn/ is not a CIFAR-10 class (5 files)",
            f"move unicorn/ out of {{}}/{train}",
        ),
        ("cifar_empty_class_folder", "dog/ holds no .png/.jpg image", f"put the dog images in {{}}/{train}/dog/"),
        ("cifar_missing_test_class_folder", "dog/ is missing", f"put the dog images in {{}}/{test}/dog/"),
        ("cifar_missing_train_class_folder", "dog/ is missing", f"put the dog images in {{}}/{train}/dog/"),
        (
            "cifar_extra_test_class_folder",
            "unicorn/ is not a CIFAR-10 class (2 files)",
            f"move unicorn/ out of {{}}/{test}",
        ),
    ):
        _, tmp, _, _, before = runs[name]
        assert runs[name][0].returncode == 2, name
        output = ended(runs, name, 2)
        assert f"error: CIFAR-10 image folders under {tmp}/data/" in output and problem in output, output
        assert fix.format(tmp) in output and CLASS_FOLDERS in output, output
        assert snapshot(tmp / "data") == before and not (tmp / "out").exists() and not (tmp / "models").exists()


def test_cifar_image_folders_files_that_are_not_images_are_skipped_named_and_counted(runs: dict) -> None:
    ended(runs, "cifar_skipped_files_are_counted", 0)
    _, tmp, _, _, _ = runs["cifar_skipped_files_are_counted"]
    assert inputs_of(tmp) == {
        "found": 23,
        "scored": 20,
        "skipped": [
            {"id": "test/.DS_Store", "reason": "not in a class folder"},
            {"id": "test/.ipynb_checkpoints", "reason": "a hidden folder beside the class folders"},
            {"id": "test/cat/notes.txt", "reason": "not a .png/.jpg/.jpeg file"},
        ],
    }
    assert "3 skipped: test/.DS_Store (not in a class folder)" in (tmp / "out" / "table1.md").read_text()


def test_cifar_data_dir_one_level_too_deep_names_the_folder_to_pass(runs: dict) -> None:
    for name, given, said, option in (
        (
            "cifar_batches_folder_given",
            "data/cifar-10-batches-py",
            "is the cifar-10-batches-py folder itself",
            "--data-dir",
        ),
        (
            "cifar_split_folder_given",
            "data/test",
            "holds CIFAR-10 class folders (airplane/, automobile/, ...)",
            "--data-dir",
        ),
        ("cifar_train_split_folder_given", "data/train", "holds CIFAR-10 class folders", "--train-data-dir"),
    ):
        output = ended(runs, name, 2)
        tmp = runs[name][1]
        assert f"error: {tmp}/{given} {said}" in output, output
        assert f"{option} {tmp}/data" in output and "download.sh" not in output, output


def test_download_split_test_fetches_only_the_test_data(runs: dict) -> None:
    for name in ("kws_download_test_split", "vww_download_test_split"):
        output = ended(runs, name, 0)
        _, tmp, _, _, before = runs[name]
        assert "already present" in output and snapshot(tmp / "data") == before
    output = ended(runs, "vww_download_train_split", 2)
    assert "vw_coco2014_96.tar.gz" in output and "val2017" not in output and "annotations" not in output
    assert sorted(p.name for p in (runs["vww_download_train_split"][1] / "data").iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Visual wake words in process: image modes (test and training decoding), the minival, download splits


def test_every_mode_reads_as_its_8_bit_rgb_version_with_the_same_probabilities(tmp_path: Path) -> None:
    from common.predict import predict_exits
    from common.tasks import load_task
    from common.weights import load_nets

    pairs = mode_versions(tmp_path)
    rgb, grey = picture()
    Image.fromarray(np.dstack([255 - rgb, np.zeros_like(grey)]), "CMYK").save(tmp_path / "cmyk.tif")
    Image.fromarray(grey.astype(np.int32) * 257).save(tmp_path / "i.tif")
    pairs.update({"cmyk.tif": "rgb.png", "i.tif": "grey_rgb.png"})
    names = sorted(set(pairs) | set(pairs.values()))
    images = dict(zip(names, vww_images.load_images([tmp_path / name for name in names])))
    for version, reference in pairs.items():
        np.testing.assert_array_equal(images[version], images[reference], err_msg=version)
    np.testing.assert_array_equal(images["rgb.png"], rgb * np.float32(1 / 255))
    net = load_nets(load_task("visual_wake_words"), "pretrained", None, ["base"])["base"]
    probabilities = predict_exits(net, np.stack([images[name] for name in names]))["ef"]
    row = {name: i for i, name in enumerate(names)}
    for version, reference in pairs.items():
        np.testing.assert_allclose(probabilities[row[version]], probabilities[row[reference]], atol=1e-6, rtol=0)
    Image.fromarray(grey.astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(UserError, match="f.tif.*mode F"):
        vww_images.load_images([tmp_path / "f.tif"])


def test_training_decodes_every_mode_as_the_test_set_does(tmp_path: Path) -> None:
    """TensorFlow (training) and Pillow (test) give the same pixels: 16-bit by its high byte, alpha dropped,
    CMYK by TensorFlow's formula."""
    mode_versions(tmp_path)
    rgb = picture(np.random.default_rng(8))[0]
    i16 = np.random.default_rng(2).integers(0, 65536, (96, 96)).astype(np.uint16)  # not multiples of 257
    Image.fromarray(i16).save(tmp_path / "i16_any.png")
    cmyk = np.dstack([255 - rgb, np.random.default_rng(4).integers(0, 256, (96, 96), dtype=np.uint8)])
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    for path in sorted(tmp_path.iterdir()):
        decoded, _ = vww._decode(tf.constant(str(path)), tf.constant(0))
        np.testing.assert_array_equal(decoded.numpy(), vww_images._read_uint8(path), err_msg=path.name)


def test_minival_build_never_deletes_a_file_it_did_not_write(tmp_path: Path) -> None:
    data_dir = write_coco(tmp_path / "data", cases=COCO_CASES[:4])
    mine = save_image(data_dir / "minival" / "person" / "mine.jpg", picture()[0]).read_bytes()
    broken = data_dir / "val2017" / COCO_CASES[1].file_name
    intact = broken.read_bytes()
    broken.write_bytes(intact[:200])
    with pytest.raises(UserError, match=f"Cannot read COCO image .*{broken.name}"):
        vww_minival.build_minival(data_dir)
    assert sorted(p.name for p in (data_dir / "minival" / "person").iterdir()) == ["mine.jpg"]
    broken.write_bytes(intact)
    counts = vww_minival.build_minival(data_dir)
    assert (data_dir / "minival_set_aside" / "person" / "mine.jpg").read_bytes() == mine
    assert len(list((data_dir / "minival").rglob("*.jpg"))) == counts["person"] + counts["non_person"]
    assert not (data_dir / ".minival.building").exists()


def test_download_fetches_only_what_the_split_needs(tmp_path: Path) -> None:
    archives = make_vww_archives(tmp_path / "mirror", 2, 2)
    urls = dict(
        train_url=archives["train"].as_uri(),
        images_url=archives["images"].as_uri(),
        annotations_url=archives["annotations"].as_uri(),
        verify_checksums=False,
    )
    vww.download(tmp_path / "test", split="test", **urls)
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == sorted(
        ["annotations", "annotations_trainval2017.zip", "val2017", "val2017.zip"]
    )
    vww.download(tmp_path / "train", split="train", **urls)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["vw_coco2014_96", "vw_coco2014_96.tar.gz"]


def test_empty_training_image_is_a_user_error_naming_it(tmp_path: Path) -> None:
    write_vww_train(tmp_path, 3, 3)
    (tmp_path / vww.TRAIN_FOLDER / "non_person" / "zero.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="non_person/zero.jpg is empty"):
        vww.train_dataset(tmp_path, batch_size=2, augment=False, seed=0)
