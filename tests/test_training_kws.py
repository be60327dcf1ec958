"""Keyword spotting: every variant trains on synthetic clips, with and without augmentation, and
the trained models reload and evaluate through the shared pipeline."""
import pytest
from synthetic_audio import write_test_tree, write_train_tree

from common.cli import load_nets
from common.config import load_config
from common.evaluation import evaluate_models
from common.training import train
from keyword_spotting import data, task


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    write_train_tree(root / data.TRAIN_FOLDER)
    write_test_tree(root / data.TEST_FOLDER, per_label=2)
    data.preprocess(root)
    return root


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("trained")


@pytest.mark.parametrize("augment", [True, False], ids=["augmented", "authors-recipe"])
def test_every_variant_trains(data_dir, models_dir, augment):
    from conftest import REPO_ROOT
    for name in task.MODELS:
        config = load_config(REPO_ROOT / task.NAME / "configs" / f"{name}.yaml",
                             ["epochs=1", "steps_per_epoch=2", "batch_size=16", f"augment={str(augment).lower()}"])
        train_data, validation_data = task.training_data(config, data_dir)
        run_dir = models_dir / ("aug" if augment else "plain") / task.NAME / name
        train(config, train_data, run_dir, validation_data, verbose=0)
        log = (run_dir / "log.csv").read_text().splitlines()
        assert len(log) == 2 and "val_loss" in log[0]  # one epoch, validated on the validation split


def test_trained_models_reload_and_evaluate(data_dir, models_dir, tmp_path):
    nets = load_nets(task, "trained", models_dir / "aug")
    inputs, labels, ids = task.load_test(data_dir)
    summary = evaluate_models(task, nets, inputs, labels, ids, tmp_path, log=lambda *_: None)
    assert summary["num_samples"] == 24 == len(ids)
    assert summary["models"]["sdn"]["exits"] == ["ee1", "ee2", "ee3", "ef"]
    assert {f"{figure}.png" for figure in task.FIGURES} <= {p.name for p in tmp_path.iterdir()}
