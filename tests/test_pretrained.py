"""The converted weights give the authors' outputs, and weights files are checked on load."""

import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from common.errors import UserError
from common.models import build_model
from common.pretrained import DEFAULT_SOURCE
from common.tasks import TASKS, load_task
from common.weights import load_weights, pretrained_path, save_weights

BATCH = 128  # the authors' graphs differ by ~1e-6 between batch sizes: compare at the same one
# Random inputs in each task's input range: raw pixels, MFCCs, pixels scaled to [0, 1].
INPUT_RANGE = {"image_classification": (0, 255), "keyword_spotting": (-250, 50), "visual_wake_words": (0, 1)}


class DepthwiseConv2DKeras2(keras.layers.DepthwiseConv2D):
    """Reads Keras 2 configs, whose DepthwiseConv2D carries a `groups` argument Keras 3 rejects."""

    def __init__(self, *args, groups=None, **kwargs):
        super().__init__(*args, **kwargs)


def authors_outputs(path, x, tmp_path):
    """{output layer name: softmax} from the authors' model file."""
    if path.suffix == ".h5":
        model = keras.models.load_model(path, compile=False, custom_objects={"DepthwiseConv2D": DepthwiseConv2DKeras2})
        return {model.output_names[0]: model.predict(x, batch_size=BATCH, verbose=0)}
    # Models saved with Adam's slot variables fail to load in TF 2.21: drop the slot references.
    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((copy / "saved_model.pb").read_bytes())
    for node in proto.meta_graphs[0].object_graph_def.nodes:
        del node.slot_variables[:]
    (copy / "saved_model.pb").write_bytes(proto.SerializeToString())
    serve = tf.saved_model.load(str(copy)).signatures["serving_default"]
    batches = [serve(input_1=tf.constant(x[i : i + BATCH])) for i in range(0, len(x), BATCH)]
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}


@pytest.mark.skipif(not DEFAULT_SOURCE.is_dir(), reason="the authors' models (../shared) are not present")
@pytest.mark.parametrize("task,variant", sorted((t, v) for t in TASKS for v in load_task(t).AUTHORS_MODELS))
def test_converted_model_gives_the_authors_outputs(task, variant, tmp_path):
    net = build_model(task, variant)
    load_weights(net.model, pretrained_path(load_task(task), variant))
    low, high = INPUT_RANGE[task]
    x = np.random.default_rng(0).uniform(low, high, (512, *net.model.input_shape[1:])).astype("float32")
    ours = net.model.predict(x, batch_size=BATCH, verbose=0)
    ours = ours if isinstance(ours, list) else [ours]
    reference = authors_outputs(DEFAULT_SOURCE / load_task(task).AUTHORS_MODELS[variant], x, tmp_path)
    output_layers = [t._keras_history[0].name for t in net.model.outputs]
    assert sorted(reference) == sorted(output_layers)
    for layer, out in zip(output_layers, ours):
        assert np.abs(out - reference[layer]).max() <= 1e-5, layer


def test_weights_round_trip_by_name(tmp_path):
    source = build_model("image_classification", "trecx_ev").model
    save_weights(source, tmp_path / "w.npz")
    target = build_model("image_classification", "trecx_ev").model
    load_weights(target, tmp_path / "w.npz")
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_weights_of_another_model_are_refused(tmp_path):
    save_weights(build_model("image_classification", "sdn").model, tmp_path / "sdn.npz")
    with pytest.raises(UserError, match="does not fit model"):
        load_weights(build_model("image_classification", "trecx_ev").model, tmp_path / "sdn.npz")
    with pytest.raises(UserError, match="weights file not found"):
        load_weights(build_model("image_classification", "base").model, tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an archive")
    with pytest.raises(UserError, match="cannot read weights file"):
        load_weights(build_model("image_classification", "base").model, tmp_path / "bad.npz")
