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


BASE = "task: image_classification\nmodel: base\nepochs: 2\nbatch_size: 4\n" \
       "learning_rate: {schedule: constant, initial: 0.001}\nloss_weights: {ef: 1.0}\n"


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
