"""YAML configs: every shipped config loads; bad keys and types are reported with file and key."""

import pathlib

import pytest

from common.config import LearningRate, load_config, to_dict
from common.errors import UserError

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = sorted(REPO_ROOT.glob("*/configs/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[f"{p.parent.parent.name}/{p.stem}" for p in CONFIGS])
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.model == path.stem and config.task == path.parent.parent.name


def test_authors_resnet_recipe():
    config = load_config(REPO_ROOT / "image_classification/configs/trecx_ev.yaml")
    assert (config.epochs, config.batch_size, config.weight_transfer_epochs) == (500, 32, 402)
    assert config.loss_weights == {"ee": 0.5, "ef": 1.0}
    assert config.learning_rate.at(0) == pytest.approx(1e-3)
    assert config.learning_rate.at(499) == pytest.approx(6.6369e-6, rel=1e-4)  # the checkpoint's last LR


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = (
    "task: image_classification\nmodel: base\nepochs: 2\nbatch_size: 4\n"
    "learning_rate: {schedule: constant, initial: 0.001}\nloss_weights: {ef: 1.0}\n"
)


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, BASE + "learning_rate_decay: 0.9\n")
    with pytest.raises(UserError, match=r"c\.yaml: unknown key learning_rate_decay; valid keys: task"):
        load_config(path)
    with pytest.raises(UserError, match=r"unknown key learning_rate\.decya"):
        load_config(write(tmp_path, BASE.replace("initial: 0.001", "decya: 0.9")))


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(UserError, match=r"epochs: expected int, got str 'ten'"):
        load_config(write(tmp_path, BASE.replace("epochs: 2", "epochs: ten")))
    with pytest.raises(UserError, match=r"augment: expected bool"):
        load_config(write(tmp_path, BASE + "augment: 1\n"))
    with pytest.raises(UserError, match=r"loss_weights\.ef: expected float"):
        load_config(write(tmp_path, BASE.replace("{ef: 1.0}", "{ef: high}")))
    with pytest.raises(UserError, match="missing key batch_size"):
        load_config(write(tmp_path, BASE.replace("batch_size: 4\n", "")))
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "none.yaml")


def test_overrides_are_validated_too(tmp_path):
    path = write(tmp_path, BASE)
    assert load_config(path, ["epochs=7", "learning_rate.initial=0.5"]).epochs == 7
    with pytest.raises(UserError, match="epochs: expected int"):
        load_config(path, ["epochs=many"])
    with pytest.raises(UserError, match="unknown key epoch;"):
        load_config(path, ["epoch=3"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        load_config(path, ["epochs"])


def test_saved_config_reads_back_identical(tmp_path):
    import yaml

    config = load_config(REPO_ROOT / "image_classification/configs/sdn.yaml")
    assert load_config(write(tmp_path, yaml.safe_dump(to_dict(config)))) == config


def test_step_schedule():
    lr = LearningRate(schedule="step", boundaries=(12, 24), values=(5e-4, 1e-4, 2e-5))
    assert [lr.at(e) for e in (0, 11, 12, 23, 24, 35)] == [5e-4, 5e-4, 1e-4, 1e-4, 2e-5, 2e-5]
    with pytest.raises(ValueError, match="one more entry"):
        LearningRate(schedule="step", boundaries=(12,), values=(1e-3,))


BAD_OVERRIDES = [  # (override, what the message says after "--set OVERRIDE: ")
    ("learning_rate.initial=.nan", "learning_rate.initial must be a finite number at least 0, got nan"),
    ("learning_rate.initial=-0.1", "learning_rate.initial must be a finite number at least 0"),
    ("learning_rate.initial=1.0e39", "learning_rate.initial must be a finite number"),  # inf in float32
    ("learning_rate.decay=0", "learning_rate.decay must be a finite number above 0"),
    ("learning_rate.decay=.inf", "learning_rate.decay must be a finite number above 0"),
    (
        "learning_rate={schedule: step, boundaries: [5, 5], values: [1, 2, 3]}",
        r"learning_rate.boundaries\[1\] must be at least 6, got 5",
    ),
    ("learning_rate={schedule: step, boundaries: [5], values: [0.1, -1]}", r"learning_rate.values\[1\] must be"),
    ("steps_per_epoch=0", "steps_per_epoch must be at least 1, got 0"),
    ("steps_per_epoch=-1", "steps_per_epoch must be at least 1, got -1"),
    ("epochs=0", "epochs must be at least 1"),
    ("batch_size=-8", "batch_size must be at least 1"),
    ("seed=-1", "seed must be between 0 and 4294967295, got -1"),
    ("seed=4294967296", "seed must be between 0 and"),
    ("loss_weights.ef=-1", "loss_weights.ef must be a finite number at least 0"),
    ("loss_weights.ef=.nan", "loss_weights.ef must be a finite number at least 0, got nan"),
    ("loss_weights.ef=0", "loss_weights: at least one exit needs a weight above 0"),
    ("loss_weight_ramp.ef=-2", "loss_weight_ramp.ef must be finite and keep the weight at least 0"),
    ("loss_weight_ramp.ee=0.5", "loss_weight_ramp.ee: exit ee has no loss_weights entry"),
    ("weight_transfer_epochs=-1", "weight_transfer_epochs must be at least 0"),
    ("optimizer_restarts=[-3]", r"optimizer_restarts\[0\] must be at least 0"),
    ("epochs=[", r"'\[' is not a YAML value"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_out_of_range_override_is_refused_naming_the_override(tmp_path, override, message):
    import re

    with pytest.raises(UserError, match=re.escape(f"--set {override}: ") + message):
        load_config(write(tmp_path, BASE), [override])


def test_out_of_range_value_in_the_file_names_the_file(tmp_path):
    path = write(tmp_path, BASE + "steps_per_epoch: 0\n")
    with pytest.raises(UserError, match=r"c\.yaml: steps_per_epoch must be at least 1, got 0"):
        load_config(path, ["epochs=3"])  # an override of another key is not blamed
    with pytest.raises(UserError, match=r"c\.yaml: learning_rate\.initial must be a finite number"):
        load_config(write(tmp_path, BASE.replace("0.001", ".nan")))


def test_exponent_without_a_dot_reads_as_a_number(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; a float key takes it as the number it is meant to be.
    assert load_config(write(tmp_path, BASE.replace("0.001", "1e-3"))).learning_rate.initial == 1e-3
    assert load_config(write(tmp_path, BASE), ["learning_rate.initial=2e-4"]).learning_rate.initial == 2e-4


def test_summary_is_a_compact_block_of_every_key():
    from common.config import summary

    config = load_config(REPO_ROOT / "visual_wake_words/configs/trecx_ev.yaml")
    text = summary(config)
    assert len(text.splitlines()) <= 6 and all(len(line) <= 120 for line in text.splitlines())
    for item in (
        "model: trecx_ev",
        "epochs: 50",
        "boundaries: [20, 30]",
        "optimizer_restarts: [20, 30]",
        "steps_per_epoch: null",
        "augment: true",
    ):
        assert item in text
