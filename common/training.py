"""Joint training of every exit of an early-exit network, from a `TrainConfig`.

Loss = sum over exits of weight[exit] * cross-entropy(exit) + the L2 penalties. The weights are
variables, so a schedule (SDN's ramp) really changes them during training. Early-view weight transfer
runs inside the compiled train step: at the start of every batch of the first
`weight_transfer_epochs` epochs the early exit's depthwise kernel and bias are copied into the
final exit's early-view layer. Its own gradient step is overwritten at the next batch, and no gradient
flows through the copy, so the early exit's kernel learns from the early-exit loss only.

A run writes into its folder: `backup/` (weights and optimizer state after every epoch, for resuming
an interrupted run), `log.csv`, and when done `config.yaml` and `weights.npz`.
"""
import pathlib
import shutil

import keras
import tensorflow as tf
import yaml

from common import config as config_lib
from common.errors import UserError
from common.files import write_text
from common.models import build_model
from common.tasks import check_models, config_path, data_dir, load_task
from common.weights import save_weights

# Early-view transfer: (source, target) layer names.
TRANSFER_LAYERS = ("depth_conv_ee_1", "depth_conv_eefinal_out")


class WeightedCrossEntropy(keras.losses.Loss):
    """weight * sparse categorical cross-entropy of a softmax output; `weight` is a variable."""

    def __init__(self, weight, name):
        super().__init__(name=name)
        self.weight = weight

    def call(self, y_true, y_pred):
        return self.weight * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


class EarlyExitTrainer(keras.Model):
    """Wraps the exit network for `fit`: one weighted loss per exit, and early-view transfer."""

    def __init__(self, net, loss_weights, transfer=False):
        super().__init__(name="trainer")
        self.net = net.model
        self.exit_names = net.exits
        self.loss_weights = {e: keras.Variable(float(loss_weights.get(e, 0.0)), trainable=False,
                                               name=f"loss_weight_{e}") for e in net.exits}
        self.transfer_active = keras.Variable(transfer, dtype="bool", trainable=False, name="transfer")
        self.transfer_pairs = []
        if transfer:
            source, target = (self.net.get_layer(name) for name in TRANSFER_LAYERS)
            self.transfer_pairs = list(zip(source.weights, target.weights))

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def losses_per_exit(self):
        return [WeightedCrossEntropy(self.loss_weights[e], e) for e in self.exit_names]

    def _transfer(self):
        def copy(strategy=None):
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

    def train_step(self, data):
        if self.transfer_pairs:
            self._transfer()
        return super().train_step(data)


class EpochSchedules(keras.callbacks.Callback):
    """At every epoch start: the learning rate, the loss-weight ramps and the transfer switch."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def on_epoch_begin(self, epoch, logs=None):
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


def _check_exits(config, exit_names, source):
    for key in ("loss_weights", "loss_weight_ramp"):
        unknown = sorted(set(getattr(config, key)) - set(exit_names))
        if unknown:
            raise UserError(f"{source}: {key} names exit {unknown[0]!r}; model {config.model} has exits "
                            f"{', '.join(exit_names)}")
    if config.weight_transfer_epochs and config.model != "trecx_ev":
        raise UserError(f"{source}: weight_transfer_epochs needs the early-view model trecx_ev, "
                        f"not {config.model}")


def _strategy(config):
    if config.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def train(config, train_data, run_dir, validation_data=None, force=False, callbacks=(), verbose="auto"):
    """Train `config.model` on `train_data` ((images, labels) batches) and write `run_dir`.

    An interrupted run resumes from its last finished epoch. A finished run is never overwritten
    unless `force`. Returns the trained `ExitModel`.
    """
    run_dir = pathlib.Path(run_dir)
    weights_path, backup_dir = run_dir / "weights.npz", run_dir / "backup"
    if weights_path.exists() and not force:
        raise UserError(f"{weights_path} already holds a trained model; pass --force to overwrite it")
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    resuming = backup_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'resuming' if resuming else 'training'} {config.task}/{config.model} in {run_dir}")

    keras.utils.set_random_seed(config.seed)
    with _strategy(config).scope():
        net = build_model(config.task, config.model)
        _check_exits(config, net.exits, f"config of {run_dir}")
        trainer = EarlyExitTrainer(net, config.loss_weights, transfer=config.weight_transfer_epochs > 0)
        trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate.at(0)),
                        loss=trainer.losses_per_exit(),
                        metrics=[[keras.metrics.SparseCategoricalAccuracy(f"{e}_accuracy")] for e in net.exits],
                        jit_compile=config.jit_compile)
        trainer.build((None, *net.model.input_shape[1:]))

    def per_exit(images, labels):
        return images, (labels,) * len(net.exits)

    train_data = train_data.map(per_exit)
    if validation_data is not None:
        validation_data = validation_data.map(per_exit)
    trainer.fit(
        train_data, validation_data=validation_data, epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch, shuffle=False, verbose=verbose,  # data is shuffled already
        callbacks=[EpochSchedules(config),
                   keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
                   keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
                   *callbacks])
    write_text(run_dir / "config.yaml", yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))
    save_weights(net.model, weights_path)
    shutil.rmtree(backup_dir, ignore_errors=True)
    print(f"saved {weights_path}")
    return net


def train_task(task, models=(), *, config_file=None, overrides=(), data_folder=None, models_dir, force=False):
    """Train the task's models (all, or those named) from TASK/configs/MODEL.yaml, or the one model
    that `config_file` names, with `overrides` ("key=value") applied; each into MODELS_DIR/TASK/MODEL/
    (`force`: overwrite a finished one)."""
    task = load_task(task)
    if config_file:
        if models:
            raise UserError("--config names its model itself; drop the model names or the --config")
        paths = [config_file]
    else:
        paths = [config_path(task, name) for name in check_models(task, models)]
    folder = data_dir(task, data_folder)
    for path in paths:
        config = config_lib.load_config(path, overrides)
        if config.task != task.NAME:
            raise UserError(f"{path} is a {config.task} config; train it with bash {config.task}/train.sh")
        train_data, validation_data = task.training_data(config, folder)
        train(config, train_data, pathlib.Path(models_dir) / task.NAME / config.model, validation_data, force=force)
