"""Every registered network builds with the authors' parameter counts and well-formed exits."""

import numpy as np
import pytest

from common.errors import UserError
from common.models import build_model
from common.tasks import load_task, task_names

REGISTRY = [(task, v) for task in task_names() for v in load_task(task).ARCHITECTURE.variants()]


def expected_exits(arch, variant):
    """The exits `variant` must have: one per early exit its architecture lists, then "ef"."""
    if variant == "base":
        return ("ef",)
    listed = {"sdn": arch.sdn, "branchynet": arch.branchynet}.get(variant)
    return (("ee",) if listed is None else tuple(f"ee{i}" for i in range(1, len(listed) + 1))) + ("ef",)


@pytest.mark.parametrize("task,variant", REGISTRY)
def test_every_model_builds_with_softmax_exits(task, variant):
    net = build_model(task, variant)
    arch = load_task(task).ARCHITECTURE
    if load_task(task).AUTHORS_PARAMS:  # a task without the authors' models has no count to match
        assert net.model.count_params() == load_task(task).AUTHORS_PARAMS[variant]
    assert net.exits == expected_exits(arch, variant)
    x = np.random.default_rng(0).uniform(0, 255, (3, *arch.input_shape)).astype("float32")
    outputs = net.model(x, training=False)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    assert len(outputs) == len(net.exits)
    for out in outputs:
        out = np.asarray(out)
        assert out.shape == (3, arch.num_classes)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("task", task_names())
def test_early_view_kernel_has_the_early_exit_shape(task):
    model = build_model(task, "trecx_ev").model
    source, target = model.get_layer("depth_conv_ee_1"), model.get_layer("depth_conv_eefinal_out")
    assert [tuple(w.shape) for w in source.weights] == [tuple(w.shape) for w in target.weights]


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UserError, match="valid models: base, trecx_ev, trecx_noev, sdn, branchynet"):
        build_model("image_classification", "resnet_ee")
    with pytest.raises(UserError, match="valid models: base, trecx_ev, trecx_noev, eefmaps_concat, sdn"):
        build_model("keyword_spotting", "ds_cnn")
    with pytest.raises(UserError, match="valid tasks"):
        build_model("imagenet", "base")
