"""Files from a user's folder never run code, through the real scripts: a CIFAR-10 batch, a weights file or a
YAML config that would run a command on load is refused with one message (exit 2, no traceback) and the
command did not run (the file it would write does not exist); archives never write outside their target
folder; a weights file of the wrong dtype is refused. The script runs go two at a time from one fixture."""

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import fake_trained, snapshot

from image_classification.synthetic import make_cifar_archive, synthetic_batch, write_cifar, write_pickle
from visual_wake_words.synthetic import COCO_CASES, Box, CocoCase, write_coco

REPO_ROOT = Path(__file__).resolve().parent.parent
CIFAR = "image_classification"
CASES = {}


class RunsACommand:
    """Pickles as a call of os.system: what a planted file would do on load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def case(setup):
    """Register `setup(tmp) -> (script, args)`: one run of a real script in the fixture below."""
    CASES[setup.__name__] = setup
    return setup


def planted_batch(tmp, name):
    write_cifar(tmp / "data", n_test=6, n_train_per_batch=2)
    batch = synthetic_batch(np.random.default_rng(0), 6, "testing batch 1 of 1")
    batch[b"labels"] = RunsACommand(tmp / "marker")
    write_pickle(tmp / "data" / "cifar-10-batches-py" / name, batch)


@case
def cifar_test_batch_runs_code(tmp):
    planted_batch(tmp, "test_batch")
    return f"{CIFAR}/test.sh", ["--data-dir", tmp / "data", "--results-dir", tmp / "out"]


@case
def meta_runs_code(tmp):
    planted_batch(tmp, "batches.meta")
    return f"{CIFAR}/test.sh", ["--data-dir", tmp / "data", "--results-dir", tmp / "out"]


@case
def train_batch_runs_code(tmp):
    planted_batch(tmp, "data_batch_3")
    return f"{CIFAR}/train.sh", ["base", "--data-dir", tmp / "data", "--models-dir", tmp / "out", "--set", "epochs=1"]


def trained_base_run(tmp, rewrite):
    """test.sh over a trained base model whose weights file `rewrite({name: array})` returns (then saved
    with np.savez, which pickles object arrays)."""
    write_cifar(tmp / "data", n_test=6, n_train_per_batch=2)
    fake_trained(tmp / "models", "base")
    weights = tmp / "models" / CIFAR / "base" / "weights.npz"
    with np.load(weights) as stored:
        arrays = rewrite(dict(stored))
    np.savez(weights, **arrays)
    args = ["--data-dir", tmp / "data", "--models", "trained", "--model", "base", "--models-dir", tmp / "models"]
    return f"{CIFAR}/test.sh", [*args, "--results-dir", tmp / "out"]


@case
def weights_run_code(tmp):
    def plant(arrays):
        first = next(iter(arrays))
        return {**arrays, first: np.array([RunsACommand(tmp / "marker")], dtype=object)}

    return trained_base_run(tmp, plant)


@case
def weights_of_another_dtype(tmp):
    return trained_base_run(tmp, lambda arrays: {key: value.astype(np.float64) for key, value in arrays.items()})


@case
def yaml_runs_code(tmp):
    write_cifar(tmp / "data", n_test=6, n_train_per_batch=2)
    (tmp / "data" / "evil.yaml").write_text(
        f'task: !!python/object/apply:os.system ["touch {tmp / "marker"}"]\nmodel: base\n'
    )
    return f"{CIFAR}/train.sh", [
        "--config",
        tmp / "data" / "evil.yaml",
        "--data-dir",
        tmp / "data",
        "--models-dir",
        tmp / "out",
    ]


def escaping_tar(tmp, add_member):
    """A CIFAR-10 archive under its official name with one member added by `add_member(tar)`."""
    make_cifar_archive(tmp / "source", n_test=4, n_train_per_batch=2)
    (tmp / "mirror").mkdir()
    with (
        tarfile.open(tmp / "source" / "cifar-10-python.tar.gz") as good,
        tarfile.open(tmp / "mirror" / "cifar-10-python.tar.gz", "w:gz") as bad,
    ):
        for member in good.getmembers():
            bad.addfile(member, good.extractfile(member) if member.isfile() else None)
        add_member(bad)
    return f"{CIFAR}/download.sh", ["--data-dir", tmp / "data", "--mirror", tmp / "mirror", "--skip-checksums"]


def add_file(tar, name, text=b"escaped\n"):
    info = tarfile.TarInfo(name)
    info.size = len(text)
    tar.addfile(info, io.BytesIO(text))


@case
def tar_dotdot(tmp):
    return escaping_tar(tmp, lambda tar: add_file(tar, "cifar-10-batches-py/../../escaped.txt"))


@case
def tar_absolute(tmp):
    return escaping_tar(tmp, lambda tar: add_file(tar, str(tmp / "escaped.txt")))


@case
def tar_link_out(tmp):
    def add_link(tar):
        info = tarfile.TarInfo("cifar-10-batches-py/escaped.txt")
        info.type, info.linkname = tarfile.SYMTYPE, str(tmp / "escaped.txt")
        tar.addfile(info)
        add_file(tar, "cifar-10-batches-py/escaped.txt")  # written through the link, were it followed

    return escaping_tar(tmp, add_link)


@case
def zip_dotdot(tmp):
    (tmp / "mirror").mkdir()
    with zipfile.ZipFile(tmp / "mirror" / "annotations_trainval2017.zip", "w") as zipped:
        zipped.writestr("annotations/instances_val2017.json", "{}")
        zipped.writestr("annotations/../../escaped.txt", "escaped\n")
    return "visual_wake_words/download.sh", [
        "--data-dir",
        tmp / "data",
        "--mirror",
        tmp / "mirror",
        "--split",
        "test",
        "--skip-checksums",
    ]


@case
def minival_of_model_size_images(tmp):
    """A COCO image already 96 x 96 RGB needs no resize: the builder once saved it after closing its file."""
    write_coco(tmp / "data", cases=(*COCO_CASES[:2], CocoCase("model size", 4242, 96, 96, (Box(60, 60),), "person")))
    return "visual_wake_words/preprocess.sh", ["--data-dir", tmp / "data"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """{case: (process, tmp folder, snapshot of tmp/data before)} of every registered case."""
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    prepared = {}
    for name, setup in CASES.items():
        tmp = tmp_path_factory.mktemp(name)
        script, args = setup(tmp)
        before = snapshot(tmp / "data") if (tmp / "data").exists() else {}
        prepared[name] = (tmp, ["bash", str(REPO_ROOT / script), *map(str, args)], before)

    def run(name):
        tmp, argv, _ = prepared[name]
        return subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=400)

    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(prepared, pool.map(run, prepared)))
    return {name: (procs[name], prepared[name][0], prepared[name][2]) for name in prepared}


def refused(runs, name, *named):
    """Exit 2, one message naming `named`, no traceback; the data untouched, no output written."""
    proc, tmp, before = runs[name]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output and proc.stderr.count("error:") == 1, output[-3000:]
    for part in named:
        assert str(part).format(tmp=tmp) in proc.stderr, f"{part!r} not in {proc.stderr!r}"
    if name not in ("tar_dotdot", "tar_absolute", "tar_link_out", "zip_dotdot"):
        assert snapshot(tmp / "data") == before
    assert not [path for path in (tmp / "out").rglob("*") if path.is_file()]  # no results, no model
    return tmp


@pytest.mark.parametrize(
    "name, file", [("cifar_test_batch_runs_code", "test_batch"), ("train_batch_runs_code", "data_batch_3")]
)
def test_a_cifar_pickle_that_calls_a_function_is_refused_unrun(runs, name, file):
    tmp = refused(runs, name, "{tmp}/data/cifar-10-batches-py/" + file, "posix.system", "could run code")
    assert not (tmp / "marker").exists()


def test_batches_meta_is_never_read(runs):
    """Nothing needs the class names file, so a planted one is never loaded (and any CIFAR-10 file that is
    goes through the same refusing unpickler)."""
    proc, tmp, _ = runs["meta_runs_code"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp / "marker").exists()


def test_a_weights_file_holding_a_pickle_is_refused_unrun(runs):
    tmp = refused(runs, "weights_run_code", "cannot read weights file {tmp}/models", "pickled objects")
    assert not (tmp / "marker").exists()


def test_a_weights_file_of_another_dtype_is_refused(runs):
    refused(runs, "weights_of_another_dtype", "has dtype float64", "expects float32")


def test_a_yaml_config_with_a_python_tag_is_refused_unrun(runs):
    tmp = refused(runs, "yaml_runs_code", "evil.yaml: not valid YAML")
    assert not (tmp / "marker").exists()


@pytest.mark.parametrize("name", ["tar_dotdot", "tar_absolute", "tar_link_out", "zip_dotdot"])
def test_an_archive_never_writes_outside_its_folder(runs, name):
    tmp = refused(runs, name, "Refusing to extract", "outside the target folder")
    assert not list(tmp.rglob("escaped.txt")) and not (tmp.parent / "escaped.txt").exists()
    assert not (tmp / "data" / "cifar-10-batches-py").exists()  # nothing of the archive was unpacked


def test_minival_builds_from_images_already_of_the_models_size(runs):
    proc, tmp, _ = runs["minival_of_model_size_images"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp / "data" / "minival" / "person" / f"{4242:012d}.jpg").is_file()
