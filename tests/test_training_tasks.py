"""Keyword spotting and visual wake words: every variant trains a short epoch on synthetic data with
augmentation (the base model without it too), and the trained models reload and evaluate through the shared
pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import load_config
from common.evaluation import EvaluationInputs, evaluate_models
from common.tasks import load_task
from common.training import train
from common.weights import load_nets
from keyword_spotting import data as kws_data
from keyword_spotting.synthetic import write_test_tree, write_train_tree
from visual_wake_words import minival as vww_minival
from visual_wake_words.synthetic import write_coco, write_vww_train


def speech_commands(root: Path) -> tuple[Path, Path]:
    """Synthetic Speech Commands train and test archives, preprocessed; returns (data dir, test dir)."""
    write_train_tree(root / kws_data.TRAIN_FOLDER)
    write_test_tree(root / kws_data.TEST_FOLDER, per_label=2)
    kws_data.preprocess(root)
    return root, root


def visual_wake_words_data(root: Path) -> tuple[Path, Path]:
    """Synthetic vw_coco2014_96 and COCO val2017, with the minival test set built; returns (data dir, test dir)."""
    write_vww_train(root, n_non_person=12, n_person=14)
    write_coco(root)
    vww_minival.build_minival(root)
    return root, root / "minival"


DATA_MAKERS = {
    "keyword_spotting": (load_task("keyword_spotting"), speech_commands),
    "visual_wake_words": (load_task("visual_wake_words"), visual_wake_words_data),
}


@pytest.fixture(scope="module", params=sorted(DATA_MAKERS))
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    task, make_data = DATA_MAKERS[request.param]
    data_dir, test_dir = make_data(tmp_path_factory.mktemp(request.param))
    return task, data_dir, test_dir, tmp_path_factory.mktemp("trained")


def test_every_variant_trains_with_augmentation_and_the_base_model_without(prepared: tuple) -> None:
    """Augmentation is in the data pipeline, not in the networks: every variant trains on the augmented
    pipeline (the configs' default); the pipeline without it is trained through once, by the base model."""
    from conftest import REPO_ROOT

    task, data_dir, _, models_dir = prepared
    for augment, names in (("true", task.MODELS), ("false", task.MODELS[:1])):
        for name in names:
            config = load_config(
                REPO_ROOT / task.NAME / "configs" / f"{name}.yaml",
                ["epochs=1", "steps_per_epoch=2", "batch_size=8", f"augment={augment}"],
            )
            train_data, validation_data = task.training_data(config, data_dir)
            run_dir = models_dir / augment / task.NAME / name
            train(config, train_data, run_dir, validation_data, verbose=0)
            log = (run_dir / "log.csv").read_text().splitlines()
            assert len(log) == 2 and "val_loss" in log[0]  # one epoch, validated on the validation split


def test_trained_models_reload_and_evaluate(prepared: tuple, tmp_path: Path) -> None:
    task, _, test_dir, models_dir = prepared
    nets = load_nets(task, "trained", models_dir / "true")
    inputs, labels, ids = task.load_test(test_dir)
    summary = evaluate_models(task, nets, EvaluationInputs(inputs, labels, ids), tmp_path, log=lambda *_: None)
    assert summary.num_samples == len(ids) == len(labels) > 0
    assert list(summary.models) == list(task.MODELS)
    assert {f"{figure}.png" for figure in task.FIGURES} <= {p.name for p in tmp_path.iterdir()}
