"""Bad input and faults met by the real `bash image_classification/train.sh`, on tiny synthetic CIFAR-10.

Each error case asserts a non-zero exit, no traceback, a message naming the override, file or folder, and
that the files there before are byte-identical after. The runs start together in one module fixture (each
imports TensorFlow: about 10 s), and the assertions share them. Faults that need an in-process hook (a disk
that fills up during training, a loss that becomes NaN at a chosen batch) are in test_training.py.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_classification.data import OFFICIAL_TRAINING_DATA
from image_classification.synthetic import write_cifar

REPO_ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--set", "epochs=1", "--set", "steps_per_epoch=1", "--set", "batch_size=8"]
RUN = Path("image_classification") / "base"  # below --models-dir
DAMAGED_H5 = b"\x89HDF\r\n\x1a\n" + bytes(4000)  # an HDF5 signature, then what a full disk left: nothing


def train_sh(*args, cwd):
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
    return subprocess.run(
        ["bash", str(REPO_ROOT / "image_classification" / "train.sh"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bad_config_file(tmp):
    text = (REPO_ROOT / "image_classification/configs/base.yaml").read_text()
    (tmp / "bad.yaml").write_text(text.replace("batch_size: 32", "batch_size: 0"))
    return ["--config", tmp / "bad.yaml", "--set", "epochs=1"]


def models_dir_is_a_file(tmp):
    (tmp / "models.txt").write_text("a user's file\n")
    return ["--models-dir", tmp / "models.txt"]


def unwritable_models_dir(tmp):
    return ["--models-dir", "/proc/trecx_models"]  # no one, root included, can create a folder in /proc


ERRORS = {  # name: (arguments beyond --data-dir, or a function of the case's folder giving them; message parts)
    "nan-learning-rate": (
        SHORT + ["--set", "learning_rate.initial=.nan"],
        ["--set learning_rate.initial=.nan: learning_rate.initial must be a finite number"],
    ),
    "zero-steps": (
        SHORT + ["--set", "steps_per_epoch=0"],
        ["--set steps_per_epoch=0: steps_per_epoch must be at least 1, got 0"],
    ),
    "negative-seed": (SHORT + ["--set", "seed=-1"], ["--set seed=-1: seed must be between 0 and"]),
    "bad-config-file": (bad_config_file, ["bad.yaml: batch_size must be at least 1, got 0"]),
    "models-dir-is-a-file": (
        models_dir_is_a_file,
        ["--models-dir", "models.txt is a file, not a folder", "choose another --models-dir"],
    ),
    "unwritable-models-dir": (
        unwritable_models_dir,
        ["--models-dir /proc/trecx_models", "cannot write in", "choose another --models-dir"],
    ),
}


def finish_then_fail_under_force(tmp, data):
    """A run over a damaged checkpoint (restarts and finishes), then a --force run that diverges."""
    backup = tmp / "models" / RUN / "backup"
    backup.mkdir(parents=True)
    (backup / "epoch-0001.weights.h5").write_bytes(DAMAGED_H5)  # as a full disk leaves one
    common = ["base", "--data-dir", data, "--models-dir", tmp / "models", *SHORT]
    first = train_sh(*common, cwd=tmp)
    before = snapshot(tmp / "models" / RUN)
    second = train_sh(
        *common, "--force", "--set", "learning_rate.initial=1.0e30", "--set", "steps_per_epoch=3", cwd=tmp
    )
    return first, before, second


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_training")
    data = root / "data"
    write_cifar(data, n_test=5, n_train_per_batch=16)
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        (root / "sequence").mkdir()  # before the sequence starts: it creates folders below it
        sequence = pool.submit(finish_then_fail_under_force, root / "sequence", data)
        for name, (args, _) in ERRORS.items():
            case = root / name
            case.mkdir()
            args = args(case) if callable(args) else args
            if "--models-dir" not in args:
                args = [*args, "--models-dir", case / "models"]
            before = snapshot(case)
            results[name] = (case, before, pool.submit(train_sh, "--data-dir", data, *args, cwd=case))
        results = {name: (case, before, future.result()) for name, (case, before, future) in results.items()}
        results["sequence"] = sequence.result()
    return results


def assert_clean_error(proc, parts):
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"{proc.returncode}\n{output}"
    assert "Traceback" not in output, output
    message = proc.stderr[proc.stderr.index("error: ") :]
    assert len(message.strip().splitlines()) == 1, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("name", ERRORS)
def test_bad_input_is_refused_before_training_and_touches_nothing(runs, name):
    case, before, proc = runs[name]
    assert_clean_error(proc, ERRORS[name][1])
    assert "training image_classification" not in proc.stdout  # refused before training
    assert snapshot(case) == before and not (case / "models").exists()


def test_a_damaged_checkpoint_restarts_the_run_with_a_message(runs):
    proc, finished, _ = runs["sequence"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "is damaged" in out and "no readable checkpoint" in out and "starting the run over from epoch 1" in out
    assert {"weights.npz", "config.yaml", "log.csv", "training_data.json"} == {str(p) for p in finished}  # no backup/
    record = json.loads(finished[Path("training_data.json")])  # what it was trained on, for design-exit's report
    assert record["backbone"] == record["early_exit"]
    assert (record["backbone"]["source"], record["backbone"]["format"]) == (
        OFFICIAL_TRAINING_DATA.source,
        OFFICIAL_TRAINING_DATA.format,
    )
    assert record["backbone"]["folder"].endswith(os.path.join("data", "cifar-10-batches-py"))


def test_the_log_shows_the_config_one_line_per_epoch_and_a_summary(runs):
    out = runs["sequence"][0].stdout
    start = out.index("training image_classification/base in ")
    assert "then config.yaml and weights.npz" in out[start:]
    assert "model: base, epochs: 1, batch_size: 8" in out and "steps_per_epoch: 1" in out
    assert "\r" not in out  # not a terminal: no progress bar redrawn in place
    assert out.count(" - loss: ") == 1  # Keras' one line for the epoch
    last = out.strip().splitlines()[-1]
    assert last.startswith("finished image_classification/base: 1 epochs, loss ") and "ef loss" in last
    assert "accuracy" in last and last.endswith(" s")


def test_a_diverging_run_under_force_keeps_the_finished_model(runs):
    _, before, proc = runs["sequence"]
    assert_clean_error(
        proc,
        [
            "training diverged: loss became nan in epoch 1, batch 2",
            "the model was not saved",
            "retrain keeps log.csv",
            "--set learning_rate.initial=",
        ],
    )
    run = Path(proc.stderr.split("the model was not saved. ")[1].split(" keeps")[0]).parent
    assert {p: b for p, b in snapshot(run).items() if p.parts[0] != "retrain"} == before
    assert not (run / "retrain" / "weights.npz").exists()


def test_a_training_image_that_cannot_be_decoded_stops_with_one_message(tmp_path):
    from visual_wake_words.synthetic import write_vww_train

    folder = write_vww_train(tmp_path / "data", n_non_person=10, n_person=10, seed=0)
    damaged = sorted((folder / "person").iterdir())[0]
    damaged.write_bytes(damaged.read_bytes()[:300])  # a JPEG header, then nothing: undecodable, not empty
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable))
    proc = subprocess.run(
        [
            "bash",
            str(REPO_ROOT / "visual_wake_words" / "train.sh"),
            "base",
            "--data-dir",
            str(tmp_path / "data"),
            "--models-dir",
            str(tmp_path / "models"),
            "--set",
            "epochs=1",
            "--set",
            "batch_size=4",
            "--set",
            "augment=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "error: a training input could not be read (" in proc.stderr and "Invalid JPEG data" in proc.stderr
    assert not (tmp_path / "models" / "visual_wake_words" / "base" / "weights.npz").exists()
