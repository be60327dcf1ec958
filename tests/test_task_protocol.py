"""The task protocol (common/tasks.py), checked for every registered task: the three tasks and any task
registered through TRECX_EXTRA_TASKS. What the pipeline assumes of a task, with no task named here, so
that a task added through the protocol gets these checks with no edit outside its folder (the toy fourth
task, tests/toy_task, registered by tests/conftest.py, gets them so).

A task's networks are checked with its pretrained weights where it has them, else with seeded random
ones: what is checked (shapes, exits, costs, the two-stage split and the int8 export) holds for any
weights.
"""

import collections

import keras
import numpy as np
import pytest

from common import flops, target_cost
from common.deploy import export
from common.deploy.profile import tflite_operators
from common.models import build_model
from common.tasks import load_task, task_names
from common.weights import load_weights, pretrained_path

REGISTERED = task_names()
FLOAT_TOLERANCE = 1e-5


def network(task, variant):
    """`variant` of the task's network, with its pretrained weights when the task has them."""
    keras.utils.set_random_seed(0)
    net = build_model(task, variant)
    path = pretrained_path(task, variant)
    if path.is_file():
        load_weights(net.model, path)
    return net


@pytest.mark.parametrize("name", REGISTERED)
def test_every_variant_builds_softmax_exits_whose_costs_grow_along_the_path(name):
    task = load_task(name)
    cost = target_cost.load_cost_model(target_cost.DEFAULT_TARGET)
    x, _ = task.synthetic_inputs(3, seed=0)
    for variant in task.MODELS:
        net = build_model(task, variant)
        outputs = net.model(x, training=False)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        assert len(outputs) == len(net.exits) and net.exits[-1] == "ef", variant
        for out in map(np.asarray, outputs):
            assert out.shape == (3, task.ARCHITECTURE.num_classes) and np.isfinite(out).all(), variant
            np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
        mflops = flops.path_mflops(net.model)
        instructions = target_cost.path_instructions(net.model, cost)
        assert all(m > 0 for m in mflops) and mflops == sorted(set(mflops)), (variant, mflops)
        assert all(i > 0 for i in instructions) and instructions == sorted(set(instructions)), (variant, instructions)
        if variant in task.AUTHORS_PARAMS:
            assert net.model.count_params() == task.AUTHORS_PARAMS[variant], variant


@pytest.mark.parametrize("name", REGISTERED)
def test_trecx_splits_into_two_stages_that_export_to_int8_with_the_operators_keras_lists(name):
    """Stage 1 and stage 2 compute the model (float32, 1e-5); the int8 export of each stage and of the base
    model holds exactly the TFLite operators `keras_operators` lists for its path, as the cost model assumes."""
    task = load_task(name)
    net, base = network(task, "trecx_ev"), network(task, "base")
    x, _ = task.synthetic_inputs(32, seed=1)
    stage1, stage2 = export.split_stages(net)
    ee, ef = net.model.predict(x, verbose=0)
    stage1_ee, tap = stage1.predict(x, verbose=0)
    assert np.abs(stage1_ee - ee).max() <= FLOAT_TOLERANCE
    assert np.abs(stage2.predict(tap, verbose=0) - ef).max() <= FLOAT_TOLERANCE
    int8 = {part: tflite_operators(data) for part, data in export.export_models(net, base, x)["int8"].items()}
    ee_path, ef_path = target_cost.keras_operators(net.model)
    count = collections.Counter
    assert count(ee_path) == count(int8["stage1"])
    assert count(ef_path) == count(int8["stage1"] + int8["stage2"])
    assert count(target_cost.keras_operators(base.model)[0]) == count(int8["base"])


@pytest.mark.parametrize("name", REGISTERED)
def test_the_synthetic_test_set_loads_as_the_synthetic_inputs(name, tmp_path):
    """write_synthetic_test_set writes the task's real test layout; test.sh's reader gets back the samples
    and labels of synthetic_inputs, in its own order (each read sample is nearest to exactly one written
    one, lossy formats such as WAV or JPEG included, with that sample's label)."""
    task = load_task(name)
    folder = task.write_synthetic_test_set(tmp_path / "data", 24, seed=3)
    inputs, labels, ids = task.load_test(folder)
    expected, expected_labels = task.synthetic_inputs(24, seed=3)
    assert len(ids) == 24 and inputs.shape == expected.shape and task.TEST_SET_SIZE > 0
    distances = np.linalg.norm((inputs[:, None] - expected[None]).reshape(24, 24, -1), axis=2)
    nearest = distances.argmin(axis=1)
    assert sorted(nearest) == list(range(24))
    np.testing.assert_array_equal(labels, expected_labels[nearest])
