"""Training: every variant trains, saves and reloads; resume, schedules and early-view transfer."""

import csv
import pathlib

import keras
import numpy as np
import pytest

from common import files, provenance
from common.config import load_config
from common.errors import UserError
from common.evaluation import EvaluationInputs, evaluate_models
from common.tasks import load_task
from common.training import Origins, train
from common.weights import load_nets
from image_classification import data
from image_classification.synthetic import write_cifar

task = load_task("image_classification")
CONFIGS = task.NAME + "/configs"


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, n_test=60, n_train_per_batch=16)
    return root


def config(name, *overrides):
    from conftest import REPO_ROOT

    return load_config(
        REPO_ROOT / CONFIGS / f"{name}.yaml", ["epochs=1", "steps_per_epoch=2", "batch_size=8", *overrides]
    )


def batches(cifar, cfg, shuffle=True):
    images, labels = data.load_train(cifar)
    return data.train_dataset(images, labels, cfg.batch_size, cfg.augment, cfg.seed, shuffle=shuffle)


def log_rows(run_dir):
    with open(run_dir / "log.csv") as f:
        return list(csv.DictReader(f))


class Record(keras.callbacks.Callback):
    """Calls `fn(trainer, epoch)` at every epoch start (after the schedules) and at the end."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.seen = fn, []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(self.fn(self.model, epoch))

    def on_train_end(self, logs=None):
        self.seen.append(self.fn(self.model, "end"))


def test_every_variant_trains_saves_reloads_and_evaluates(cifar, tmp_path):
    models_dir = tmp_path / "trained"
    trained = {}
    for name in task.MODELS:
        cfg = config(name)
        trained[name] = train(cfg, batches(cifar, cfg), models_dir / task.NAME / name, verbose=0)
        assert len(log_rows(models_dir / task.NAME / name)) == 1
        assert not (models_dir / task.NAME / name / "backup").exists()

    nets = load_nets(task, "trained", models_dir)
    inputs, labels, ids = task.load_test(cifar)
    for name, net in nets.items():
        before = trained[name].model.predict(inputs, verbose=0)
        after = net.model.predict(inputs, verbose=0)
        for a, b in zip(
            before if isinstance(before, list) else [before], after if isinstance(after, list) else [after]
        ):
            np.testing.assert_array_equal(a, b)

    test_set = EvaluationInputs(inputs, labels, ids)
    summary = evaluate_models(task, nets, test_set, tmp_path / "results", log=lambda *_: None)
    assert summary.num_samples == 60 and set(summary.models) == set(task.MODELS)
    for figure in task.FIGURES:
        assert (tmp_path / "results" / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_finished_model_is_not_overwritten_without_force(cifar, tmp_path):
    """--force replaces the finished model's files, its record of the training data included: replaced by
    the new run's, or removed when the new run has none (an earlier record would describe other data)."""
    cfg = config("base")
    jpeg = provenance.DataOrigin("CIFAR-10 as image folders", "JPEG images (lossy)", "elsewhere")
    train(cfg, batches(cifar, cfg), tmp_path / "run", verbose=0, origins=Origins(data=jpeg))
    assert provenance.read_trained(tmp_path / "run") == provenance.read_trained(tmp_path / "run", "early_exit") == jpeg
    with pytest.raises(UserError, match="pass --force"):
        train(cfg, batches(cifar, cfg), tmp_path / "run", verbose=0)
    official = data.training_origin(cifar)
    train(cfg, batches(cifar, cfg), tmp_path / "run", force=True, verbose=0, origins=Origins(data=official))
    assert len(log_rows(tmp_path / "run")) == 1
    assert (
        provenance.read_trained(tmp_path / "run") == official and official.source == data.OFFICIAL_TRAINING_DATA.source
    )
    train(cfg, batches(cifar, cfg), tmp_path / "run", force=True, verbose=0)
    assert provenance.read_trained(tmp_path / "run") == provenance.UNKNOWN
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["config.yaml", "log.csv", "weights.npz"]


def test_an_interrupted_run_resumes_where_it_stopped(cifar, tmp_path):
    cfg = config("trecx_noev", "epochs=3")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[Interrupt()], verbose=0)
    assert (tmp_path / "run" / "backup").is_dir() and not (tmp_path / "run" / "weights.npz").exists()

    steps = Record(lambda trainer, epoch: (epoch, int(trainer.optimizer.iterations.numpy())))
    train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[steps], verbose=0)
    assert steps.seen == [(2, 4), ("end", 6)]  # starts at the third epoch with the optimizer's state
    assert [row["epoch"] for row in log_rows(tmp_path / "run")] == ["0", "1", "2"]


def test_sdn_loss_weights_follow_their_schedule(cifar, tmp_path):
    # Learning rate 0 and a fixed batch: the cross-entropy stays the same, so the logged weighted
    # loss of each exit is proportional to its weight in the compiled train step.
    cfg = config(
        "sdn", "epochs=3", "steps_per_epoch=null", "augment=false", "learning_rate={schedule: constant, initial: 0.0}"
    )
    weights = Record(lambda trainer, epoch: float(trainer.loss_weights["ee2"].numpy()))
    train(cfg, batches(cifar, cfg, shuffle=False).take(1), tmp_path / "run", callbacks=[weights], verbose=0)
    expected = [0.01 + epoch * 0.66 / 3 for epoch in range(3)]
    np.testing.assert_allclose(weights.seen[:3], expected, rtol=1e-6)
    losses = [float(row["ee2_loss"]) for row in log_rows(tmp_path / "run")]
    np.testing.assert_allclose(np.array(losses) / np.array(expected), losses[0] / expected[0], rtol=1e-4)


def kernels(trainer, epoch):
    return {
        name: trainer.net.get_layer(name).kernel.numpy().copy()
        for name in ("depth_conv_ee_1", "depth_conv_eefinal_out")
    }


def test_early_view_kernel_follows_the_early_exit_then_trains_alone(cifar, tmp_path):
    # Learning rate 0: the only change is the copy, so after transfer epochs the kernels are equal.
    cfg = config("trecx_ev", "epochs=2", "weight_transfer_epochs=1", "learning_rate={schedule: constant, initial: 0.0}")
    seen = Record(kernels)
    net = train(cfg, batches(cifar, cfg), tmp_path / "copy", callbacks=[seen], verbose=0)
    assert not np.array_equal(seen.seen[0]["depth_conv_ee_1"], seen.seen[0]["depth_conv_eefinal_out"])
    np.testing.assert_array_equal(
        net.model.get_layer("depth_conv_ee_1").kernel.numpy(),
        net.model.get_layer("depth_conv_eefinal_out").kernel.numpy(),
    )

    # Early-exit loss weight 0: the early exit's kernel gets no gradient from the final loss through
    # the copy, so it stays as initialised, while the early-view kernel trains once transfer stops.
    cfg = config(
        "trecx_ev",
        "epochs=2",
        "weight_transfer_epochs=1",
        "loss_weights={ee: 0.0, ef: 1.0}",
        "learning_rate={schedule: constant, initial: 0.01}",
    )
    seen = Record(kernels)
    net = train(cfg, batches(cifar, cfg), tmp_path / "grad", callbacks=[seen], verbose=0)
    start, after_transfer, end = seen.seen
    np.testing.assert_array_equal(end["depth_conv_ee_1"], start["depth_conv_ee_1"])
    assert not np.array_equal(end["depth_conv_eefinal_out"], end["depth_conv_ee_1"])


def test_config_naming_an_absent_exit_is_refused(cifar, tmp_path):
    cfg = config("base", "loss_weights={ee: 0.5, ef: 1.0}")
    with pytest.raises(UserError, match="loss_weights names exit 'ee'; model base has exits ef"):
        train(cfg, batches(cifar, cfg), tmp_path / "run", verbose=0)


def test_optimizer_restarts_zero_adam_state(cifar, tmp_path):
    # The authors' staged VWW training compiles a fresh Adam per stage: step count and moments restart.
    cfg = config("base", "epochs=3", "optimizer_restarts=[2]")
    state = Record(
        lambda trainer, epoch: (
            epoch,
            int(trainer.optimizer.iterations.numpy()),
            float(
                sum(float(keras.ops.sum(keras.ops.abs(v))) for v in trainer.optimizer.variables if "momentum" in v.path)
            ),
        )
    )
    train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[state], verbose=0)
    (e0, it0, m0), (e1, it1, m1), (e2, it2, m2), (end, it_end, _) = state.seen
    assert (it0, it1, it2, it_end) == (0, 2, 0, 2)
    assert m0 == 0 and m1 > 0 and m2 == 0


def checkpoints(run_dir):
    return sorted(p.name for p in (run_dir / "backup").glob("*.weights.h5"))


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_or_restarts(cifar, tmp_path, capsys):
    import shutil

    cfg = config("trecx_noev", "epochs=3")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[Interrupt(2)], verbose=0)
    assert checkpoints(tmp_path / "run") == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]

    def resumed(name, damage, *starts):
        run = tmp_path / name
        shutil.copytree(tmp_path / "run", run)
        damage(run / "backup")
        steps = Record(lambda trainer, epoch: (epoch, int(trainer.optimizer.iterations.numpy())))
        train(cfg, batches(cifar, cfg), run, callbacks=[steps], verbose=0)
        assert steps.seen[0] == starts and steps.seen[-1] == ("end", 6)
        assert [row["epoch"] for row in log_rows(run)] == ["0", "1", "2"] and (run / "weights.npz").is_file()
        return capsys.readouterr().out

    def truncate(path):  # as a full disk leaves a file
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])

    out = resumed("newest", lambda backup: truncate(backup / "epoch-0002.weights.h5"), 1, 2)
    assert "epoch-0002.weights.h5 is damaged" in out and "resuming after epoch 1 of 3" in out
    out = resumed("all", lambda backup: [truncate(p) for p in backup.glob("epoch-*")], 0, 0)
    assert "no readable checkpoint" in out and "starting the run over from epoch 1" in out


def test_a_full_disk_keeps_the_last_checkpoint_and_the_run_resumes(cifar, tmp_path, monkeypatch):
    import errno

    from common.training import EarlyExitTrainer

    cfg = config("base", "epochs=2")
    real_save = EarlyExitTrainer.save_weights

    def save_then_fill_the_disk(self, path, **kwargs):
        if pathlib.Path(path).parent.joinpath("epoch-0001.weights.h5").exists():
            pathlib.Path(path).write_bytes(b"\x89HDF\r\n")  # a half-written file, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(self, path, **kwargs)

    monkeypatch.setattr(EarlyExitTrainer, "save_weights", save_then_fill_the_disk)
    with pytest.raises(
        UserError,
        match=r"No space left on device.*free some space, then run the same command "
        r"again to resume from .*epoch-0001\.weights\.h5 \(epoch 1\), which is intact",
    ):
        train(cfg, batches(cifar, cfg), tmp_path / "run", verbose=0)
    assert checkpoints(tmp_path / "run") == ["epoch-0001.weights.h5"] and not (tmp_path / "run/weights.npz").exists()
    monkeypatch.undo()
    steps = Record(lambda trainer, epoch: (epoch, int(trainer.optimizer.iterations.numpy())))
    train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[steps], verbose=0)
    assert steps.seen == [(1, 2), ("end", 4)] and len(log_rows(tmp_path / "run")) == 2


class PoisonWeights(keras.callbacks.Callback):
    """Sets a kernel to NaN at the start of epoch 2: the loss of its first batch is NaN."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.net.weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_a_nan_loss_stops_the_run_and_force_keeps_the_finished_model(cifar, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = config("base")
    train(cfg, batches(cifar, cfg), run, verbose=0)
    assert "finished image_classification/base: 1 epochs, loss " in capsys.readouterr().out
    finished = {name: (run / name).read_bytes() for name in ("weights.npz", "config.yaml", "log.csv")}

    cfg2 = config("base", "epochs=2")
    with pytest.raises(
        UserError,
        match=r"training diverged: loss became nan in epoch 2, batch 1; the model was not "
        r"saved\. .*retrain keeps log\.csv and backup/, the checkpoint of epoch 1",
    ):
        train(cfg2, batches(cifar, cfg2), run, force=True, callbacks=[PoisonWeights()], verbose=0)
    assert {name: (run / name).read_bytes() for name in finished} == finished
    assert checkpoints(run / "retrain") == ["epoch-0001.weights.h5"] and not (run / "retrain/weights.npz").exists()

    with pytest.raises(UserError, match=r"pass --force to overwrite it \(and resume the retraining in its retrain/\)"):
        train(cfg, batches(cifar, cfg), run, verbose=0)
    train(cfg, batches(cifar, cfg), run, force=True, verbose=0)  # another config: the checkpoint is discarded
    assert "discarding the unfinished run of another configuration" in capsys.readouterr().out
    assert not (run / "retrain").exists() and len(log_rows(run)) == 1


def test_an_unfinished_run_of_another_config_is_not_resumed(cifar, tmp_path):
    cfg = config("base", "epochs=2")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, batches(cifar, cfg), tmp_path / "run", callbacks=[Interrupt(1)], verbose=0)
    with pytest.raises(UserError, match="holds an unfinished run of another configuration"):
        train(config("base", "epochs=3"), batches(cifar, cfg), tmp_path / "run", verbose=0)


def test_models_dir_is_checked_before_training(tmp_path, monkeypatch):
    import errno
    import shutil
    import tempfile

    from common.training import MIN_FREE_MB

    def check_models_dir(folder):
        return files.check_output_folder(folder, "--models-dir", MIN_FREE_MB)

    (tmp_path / "file").write_text("mine")
    for bad in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(UserError, match=f"--models-dir {bad}: .*file is a file, not a folder"):
            check_models_dir(bad)
    check_models_dir(tmp_path / "new" / "models")
    assert not (tmp_path / "new").exists()  # nothing created

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    with pytest.raises(UserError, match="cannot write in .* \\(No space left on device\\); choose another"):
        check_models_dir(tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 10**6))
    with pytest.raises(UserError, match="only 1 MB free"):
        check_models_dir(tmp_path)


MIRRORED_RUN = """
import sys, pathlib
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import common.training as training
from common.config import load_config
from image_classification import data
training._strategy = lambda config: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
root = pathlib.Path(sys.argv[1])
images, labels = data.load_train(root)
config = load_config(sys.argv[2], ["epochs=2", "steps_per_epoch=2", "batch_size=8", "weight_transfer_epochs=1",
                                   "learning_rate={schedule: constant, initial: 0.0}"])
net = training.train(config, data.train_dataset(images, labels, 8, False, 0), root / "run", verbose=0)
kernels = [net.model.get_layer(name).kernel.numpy() for name in training.TRANSFER_LAYERS]
print("replicas", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).num_replicas_in_sync,
      "equal", np.array_equal(*kernels))
"""


def test_early_view_transfer_under_a_two_replica_mirrored_strategy(cifar, tmp_path):
    # Two logical CPUs stand in for two GPUs: the copy must go through the cross-replica update.
    import shutil
    import subprocess
    import sys

    from conftest import REPO_ROOT

    shutil.copytree(cifar, tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_RUN, str(tmp_path / "data"), str(REPO_ROOT / CONFIGS / "trecx_ev.yaml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 2 equal True" in result.stdout
