"""Joint training of every exit of an early-exit network, from a `TrainConfig`.

Loss = sum over exits of weight[exit] * cross-entropy(exit) + the L2 penalties. The weights are
variables, so a schedule (SDN's ramp) really changes them during training. Early-view weight transfer
runs inside the compiled train step: at the start of every batch of the first
`weight_transfer_epochs` epochs the early exit's depthwise kernel and bias are copied into the
final exit's early-view layer. Its own gradient step is overwritten at the next batch, and no gradient
flows through the copy, so the early exit's kernel learns from the early-exit loss only.

A run writes into its folder: `backup/` (the config, and the weights and optimizer state after each of
the last two epochs, each written whole or not at all, for resuming an interrupted run), `log.csv`, and
when done `config.yaml`, `training_data.json` (what the data were, where the caller said: common.provenance)
and `weights.npz`. Retraining a finished model (`force`) runs in `retrain/`
inside its folder and replaces the finished model's files only once the new one is saved. A loss that
becomes NaN or infinite stops the run, which then saves nothing.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import keras
import tensorflow as tf

from common import config as config_lib
from common import files, provenance
from common.errors import UserError
from common.files import write_text
from common.models import ExitModel, build_model
from common.tasks import Task, check_models, config_path, data_dir, load_task
from common.weights import save_weights

MIN_FREE_MB = 50  # checkpoints and weights of these networks need a few MB; refuse a disk nearly full
# Early-view transfer: (source, target) layer names.
TRANSFER_LAYERS = ("depth_conv_ee_1", "depth_conv_eefinal_out")


class WeightedCrossEntropy(keras.losses.Loss):
    """weight * sparse categorical cross-entropy of a softmax output; `weight` is a variable."""

    def __init__(self, weight: keras.Variable, name: str) -> None:
        super().__init__(name=name)
        self.weight = weight

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return self.weight * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


class EarlyExitTrainer(keras.Model):
    """Wraps the exit network for `fit`: one weighted loss per exit, and early-view transfer."""

    def __init__(self, net: ExitModel, loss_weights: Mapping[str, float], transfer: bool = False) -> None:
        super().__init__(name="trainer")
        self.net = net.model
        self.exit_names = net.exits
        self.loss_weights = {
            e: keras.Variable(float(loss_weights.get(e, 0.0)), trainable=False, name=f"loss_weight_{e}")
            for e in net.exits
        }
        self.transfer_active = keras.Variable(transfer, dtype="bool", trainable=False, name="transfer")
        self.transfer_pairs = []
        if transfer:
            source, target = (self.net.get_layer(name) for name in TRANSFER_LAYERS)
            self.transfer_pairs = list(zip(source.weights, target.weights))

    def call(self, inputs: tf.Tensor, training: bool = False) -> list[tf.Tensor]:
        return self.net(inputs, training=training)

    def losses_per_exit(self) -> list[WeightedCrossEntropy]:
        return [WeightedCrossEntropy(self.loss_weights[e], e) for e in self.exit_names]

    def _transfer(self) -> None:
        def copy(strategy: tf.distribute.Strategy | None = None) -> None:
            for source, target in self.transfer_pairs:
                value = tf.where(self.transfer_active.value, source.value, target.value)
                if strategy is None:
                    target.assign(value)
                else:
                    strategy.extended.update(target.value, lambda var, v: var.assign(v), args=(value,))

        context = tf.distribute.get_replica_context()
        if context is None or tf.distribute.get_strategy().num_replicas_in_sync == 1:
            copy()
        else:  # mirrored variables are updated from the cross-replica context
            context.merge_call(lambda strategy: copy(strategy))

    def train_step(self, data: tuple[tf.Tensor, tuple[tf.Tensor, ...]]) -> dict[str, tf.Tensor]:
        if self.transfer_pairs:
            self._transfer()
        return super().train_step(data)


class EpochSchedules(keras.callbacks.Callback):
    """At every epoch start: the learning rate, the loss-weight ramps and the transfer switch."""

    def __init__(self, config: config_lib.TrainConfig) -> None:
        super().__init__()
        self.config = config

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        cfg, trainer = self.config, self.model
        if epoch in cfg.optimizer_restarts:
            for variable in trainer.optimizer.variables:
                variable.assign(keras.ops.zeros_like(variable))
        trainer.optimizer.learning_rate.assign(cfg.learning_rate.at(epoch))
        for exit_name, ramp in cfg.loss_weight_ramp.items():
            trainer.loss_weights[exit_name].assign(cfg.loss_weights[exit_name] + epoch * ramp / cfg.epochs)
        trainer.transfer_active.assign(epoch < cfg.weight_transfer_epochs)
        if trainer.transfer_pairs and epoch == cfg.weight_transfer_epochs:
            print(f"epoch {epoch + 1}: early-view weight transfer stops; the early-view kernel trains on its own")


class Checkpoints(keras.callbacks.Callback):
    """After every epoch, the trainer's weights and optimizer state in backup/epoch-NNNN.weights.h5
    (NNNN: epochs finished), written to a temporary file and renamed, so that a crash or a full disk
    never leaves a half-written checkpoint under a checkpoint's name; the newest two are kept."""

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.folder = pathlib.Path(folder)

    NAME = re.compile(r"epoch-(\d+)\.weights\.h5")  # the number: epochs finished

    @staticmethod
    def path(folder: str | os.PathLike, epochs: int) -> pathlib.Path:
        return pathlib.Path(folder) / f"epoch-{epochs:04d}.weights.h5"

    @classmethod
    def found(cls, folder: str | os.PathLike) -> list[tuple[int, pathlib.Path]]:
        """[(epochs finished, path)], newest first."""
        numbered = ((cls.NAME.fullmatch(path.name), path) for path in pathlib.Path(folder).glob("epoch-*.weights.h5"))
        return sorted(((int(match[1]), path) for match, path in numbered if match), reverse=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        path = self.path(self.folder, epoch + 1)
        partial = self.folder / "partial.weights.h5"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(partial, overwrite=True)
            with open(partial, "rb") as f:
                os.fsync(f.fileno())
            os.replace(partial, path)
        except OSError as err:
            partial.unlink(missing_ok=True)
            kept = self.found(self.folder)[:1]
            raise UserError(
                f"cannot write checkpoint {path} ({err.strerror or err}); free some space, then run the "
                "same command again" + "".join(f" to resume from {p} (epoch {n}), which is intact" for n, p in kept)
            ) from None
        for _, old in self.found(self.folder)[2:]:
            old.unlink()


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises `Diverged` as soon as a loss is NaN or infinite (after a batch, or a validation)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self._check(logs, f"epoch {self.epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._check(logs, f"epoch {epoch + 1}")

    @staticmethod
    def _check(logs: Mapping[str, float] | None, where: str) -> None:
        for key, value in (logs or {}).items():
            if key.endswith("loss") and not math.isfinite(float(value)):
                raise Diverged(f"{key} became {float(value)} in {where}")


class Diverged(Exception):
    """Training produced a non-finite loss."""


def _check_exits(config: config_lib.TrainConfig, exit_names: Sequence[str], origin: Callable[[str], str]) -> None:
    for key in ("loss_weights", "loss_weight_ramp"):
        unknown = sorted(set(getattr(config, key)) - set(exit_names))
        if unknown:
            raise UserError(
                f"{origin(f'{key}.{unknown[0]}')}: {key} names exit {unknown[0]!r}; model "
                f"{config.model} has exits {', '.join(exit_names)}"
            )
    if config.weight_transfer_epochs and config.model != "trecx_ev":
        raise UserError(
            f"{origin('weight_transfer_epochs')}: weight_transfer_epochs needs the early-view model "
            f"trecx_ev, not {config.model}"
        )
    if config.weight_transfer_epochs and config.early_exit and config.early_exit.branch != "paper":
        raise UserError(
            f"{origin('weight_transfer_epochs')}: weight_transfer_epochs copies the paper branch's depthwise "
            f"kernel into the early view; early_exit.branch {config.early_exit.branch} has none: set it to 0"
        )


def _strategy(config: config_lib.TrainConfig) -> tf.distribute.Strategy:
    if config.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _build_trainer(config: config_lib.TrainConfig, origin: Callable[[str], str]) -> tuple[ExitModel, EarlyExitTrainer]:
    keras.utils.set_random_seed(config.seed)
    with _strategy(config).scope():
        net = build_model(config.task, config.model, config.early_exit)
        _check_exits(config, net.exits, origin)
        trainer = EarlyExitTrainer(net, config.loss_weights, transfer=config.weight_transfer_epochs > 0)
        trainer.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate.at(0)),
            loss=trainer.losses_per_exit(),
            metrics=[[keras.metrics.SparseCategoricalAccuracy(f"{e}_accuracy")] for e in net.exits],
            jit_compile=config.jit_compile,
        )
        trainer.build((None, *net.model.input_shape[1:]))
        trainer.optimizer.build(trainer.trainable_variables)
    return net, trainer


def _restore(trainer: EarlyExitTrainer, backup_dir: pathlib.Path) -> int | None:
    """Load the newest readable checkpoint: the epochs it finished, 0 when there is none, None when every
    one is damaged (the trainer's state is then undefined)."""
    found = Checkpoints.found(backup_dir)
    for done, path in found:
        try:
            trainer.load_weights(path)
            return done
        except Exception as err:  # any failure to load means damaged: h5py and Keras raise OSError, RuntimeError...
            print(f"checkpoint {path} is damaged ({str(err).splitlines()[0][:120]}); it is skipped")
    return None if found else 0


def _start(
    config: config_lib.TrainConfig, work_dir: pathlib.Path, force: bool, origin: Callable[[str], str]
) -> tuple[ExitModel, EarlyExitTrainer, int, str]:
    """(net, trainer, epochs finished, the config as YAML): resumed from work_dir/backup when it holds a run
    of this config."""
    backup_dir = work_dir / "backup"
    saved = backup_dir / "config.yaml"
    wanted = config_lib.to_yaml(config)
    net, trainer = _build_trainer(config, origin)  # checks the config against the model's exits first
    if saved.is_file() and saved.read_text() != wanted and Checkpoints.found(backup_dir):
        if not force:
            raise UserError(
                f"{work_dir} holds an unfinished run of another configuration ({saved}); run with "
                "that configuration to resume it, or pass --force to discard it and start over"
            )
        print(f"discarding the unfinished run of another configuration in {backup_dir}")
        shutil.rmtree(backup_dir)
    done = _restore(trainer, backup_dir) if backup_dir.is_dir() else 0
    if done is None:
        print(f"no readable checkpoint in {backup_dir}: starting the run over from epoch 1")
        shutil.rmtree(backup_dir)
        net, trainer = _build_trainer(config, origin)
        done = 0
    elif done:
        print(f"resuming after epoch {done} of {config.epochs} from {backup_dir}")
    write_text(saved, wanted)
    _trim_log(work_dir / "log.csv", done)
    return net, trainer, done, wanted


def _trim_log(path: pathlib.Path, done: int) -> None:
    """Keep the log rows of the `done` epochs a resumed run starts after (a crash may have logged more)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if done == 0 or not lines:
        path.unlink()
        return
    kept = [line for line in lines[1:] if line.split(",")[0].isdigit() and int(line.split(",")[0]) < done]
    write_text(path, "".join(lines[:1] + kept))


def _last_row(path: pathlib.Path) -> dict[str, str]:
    """The last row of a log.csv as {column: value}, empty without one."""
    lines = path.read_text().splitlines() if path.is_file() else []
    return dict(zip(lines[0].split(","), lines[-1].split(","))) if len(lines) > 1 else {}


def _summary(config: config_lib.TrainConfig, exits: Sequence[str], row: Mapping[str, str], seconds: float) -> str:
    """One line: epochs, each exit's loss and accuracy (and validation accuracy, when validated), the time."""

    def number(key: str) -> str | None:
        try:
            return f"{float(row[key]):.4g}"
        except (KeyError, ValueError):  # not logged, or "NA" (no validation data)
            return None

    parts = []
    for e in exits:  # a single-output model logs its loss as `loss` only
        val = number(f"val_{e}_accuracy")
        parts.append(
            f"{e} loss {number(e + '_loss') or number('loss')}, accuracy {number(e + '_accuracy')}"
            + (f", val accuracy {val}" if val else "")
        )
    return (
        f"finished {config.task}/{config.model}: {config.epochs} epochs, loss {number('loss')}; "
        f"{'; '.join(parts)}; {seconds:.0f} s"
    )


def _failed(work_dir: pathlib.Path, what: str) -> str:
    """What a failed run leaves, and how to go on."""
    kept = Checkpoints.found(work_dir / "backup")[:1]
    return f"{what}; the model was not saved. {work_dir} keeps log.csv" + "".join(
        f" and backup/, the checkpoint of epoch {n}" for n, _ in kept
    )


@dataclasses.dataclass(frozen=True)
class Origins:
    """Where a training run's inputs came from. config_key(key): where a config key came from, for
    messages (default: "config of RUN_DIR"); data: what the training data is, kept beside the weights
    (without it an earlier record is removed)."""

    config_key: Callable[[str], str] | None = None
    data: provenance.DataOrigin | None = None


def train(
    config: config_lib.TrainConfig,
    train_data: tf.data.Dataset,
    run_dir: str | os.PathLike,
    validation_data: tf.data.Dataset | None = None,
    force: bool = False,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    origins: Origins = Origins(),
) -> ExitModel:
    """Train `config.model` on `train_data` ((images, labels) batches) and write `run_dir`.

    An interrupted run resumes from its last finished epoch. A finished run is never overwritten
    unless `force`; then the new run trains in run_dir/retrain/ and its files replace the finished
    model's only when it is saved. `origins`: where the config keys and the data came from (`Origins`).
    Returns the trained `ExitModel`.
    """
    started = time.perf_counter()
    run_dir = pathlib.Path(run_dir)
    if run_dir.parent.is_dir():
        files.recover(run_dir)  # a model that design-exit was killed replacing: back in place
    origin = origins.config_key or (lambda key: f"config of {run_dir}")
    weights_path = run_dir / "weights.npz"
    work_dir = run_dir
    if weights_path.exists():
        if not force:
            resume = " (and resume the retraining in its retrain/)" if (run_dir / "retrain").is_dir() else ""
            raise UserError(f"{weights_path} already holds a trained model; pass --force to overwrite it{resume}")
        work_dir = run_dir / "retrain"
    print(
        f"training {config.task}/{config.model} in {work_dir}: log.csv, backup/ (a checkpoint per epoch), "
        "then config.yaml and weights.npz" + (f" (replacing {run_dir}'s when done)" if work_dir != run_dir else "")
    )
    print(config_lib.summary(config))
    net, trainer, done, config_yaml = _start(config, work_dir, force, origin)

    def per_exit(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        return images, (labels,) * len(net.exits)

    train_data = train_data.map(per_exit)
    if validation_data is not None:
        validation_data = validation_data.map(per_exit)
    try:
        trainer.fit(
            train_data,
            validation_data=validation_data,
            epochs=config.epochs,
            initial_epoch=done,
            steps_per_epoch=config.steps_per_epoch,
            shuffle=False,
            verbose=verbose,  # data is shuffled already
            callbacks=[
                StopOnNonFinite(),
                EpochSchedules(config),
                Checkpoints(work_dir / "backup"),
                keras.callbacks.CSVLogger(str(work_dir / "log.csv"), append=True),
                *callbacks,
            ],
        )
    except BaseException as err:
        if verbose in (1, "auto"):
            print(flush=True)  # end the progress bar's line before the message
        if isinstance(err, Diverged):
            raise UserError(
                _failed(work_dir, f"training diverged: {err}") + ": lower the learning rate (--set "
                "learning_rate.initial=...) and run again (with --force to discard a checkpoint)"
            ) from None
        if isinstance(err, tf.errors.InvalidArgumentError):  # e.g. a training image that cannot be decoded
            lines = [
                line.strip()
                for line in err.message.splitlines()
                if line.strip() and not line.strip().startswith(("[[", "Detected at node", "Graph execution error"))
            ]
            raise UserError(
                _failed(
                    work_dir,
                    "a training input could not be read (" + (lines[-1] if lines else type(err).__name__) + ")",
                )
                + ": repair the training data "
                "(download.sh, preprocess.sh) and run the same command again to resume"
            ) from None
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                _failed(work_dir, f"cannot write {err.filename or work_dir} ({err.strerror})")
                + ": free some space and run the same command again to resume"
            ) from None
        raise
    try:
        write_text(work_dir / "config.yaml", config_yaml)
        record = work_dir / provenance.FILE
        if origins.data is not None:
            write_text(record, provenance.trained_record(origins.data, origins.data))
        else:
            record.unlink(missing_ok=True)
        save_weights(net.model, work_dir / "weights.npz")
        if work_dir != run_dir:
            (run_dir / provenance.FILE).unlink(missing_ok=True)  # the earlier model's, unless replaced next
            for name in ("log.csv", "config.yaml", provenance.FILE, "weights.npz"):  # weights last: a finished run
                if (work_dir / name).exists():
                    os.replace(work_dir / name, run_dir / name)
    except OSError as err:
        raise UserError(
            _failed(work_dir, f"cannot save the model in {work_dir} ({err.strerror})")
            + ": free some space and run the same command again to save it"
        ) from None
    shutil.rmtree(work_dir if work_dir != run_dir else run_dir / "backup", ignore_errors=True)
    print(f"saved {weights_path}")
    print(_summary(config, net.exits, _last_row(run_dir / "log.csv"), time.perf_counter() - started))
    return net


def train_task(
    task: str | Task,
    models: Sequence[str] = (),
    *,
    config_file: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    data_folder: str | os.PathLike | None = None,
    models_dir: str | os.PathLike,
    force: bool = False,
) -> None:
    """Train the task's models (all, or those named) from TASK/configs/MODEL.yaml, or the one model
    that `config_file` names, with `overrides` ("key=value") applied; each into MODELS_DIR/TASK/MODEL/
    (`force`: overwrite a finished one). Progress bars on a terminal; one line per epoch otherwise."""
    task = load_task(task)
    if config_file:
        if models:
            raise UserError("--config names its model itself; drop the model names or the --config")
        paths = [config_file]
    else:
        paths = [config_path(task, name) for name in check_models(task, models)]
    configs = [config_lib.load_config(path, overrides) for path in paths]  # every config checked first
    for path, config in zip(paths, configs):
        if config.task != task.NAME:
            raise UserError(f"{path} is a {config.task} config; train it with bash {config.task}/train.sh")
    files.check_output_folder(models_dir, "--models-dir", MIN_FREE_MB)
    folder = data_dir(task, data_folder)
    verbose = 1 if sys.stdout.isatty() else 2
    for path, config in zip(paths, configs):
        train_data, validation_data = task.training_data(config, folder)
        train(
            config,
            train_data,
            pathlib.Path(models_dir) / task.NAME / config.model,
            validation_data,
            force=force,
            verbose=verbose,
            origins=Origins(
                config_key=lambda key, path=path: config_lib.origin(path, overrides, key),
                data=provenance.data_origin(task, folder),
            ),
        )
