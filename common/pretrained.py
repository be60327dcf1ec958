"""Weights files: the project's own format, and conversion of the authors' pretrained models.

Weights are stored as `.npz` archives keyed by Keras 3 variable path (`layer_name/weight_name`), so
they map to a network by layer name, never by position (by position, same-shaped layers swap
silently). The authors' TF 2.3 SavedModels are read with `tf.train.load_checkpoint`, which also works
for the ones `tf.saved_model.load` rejects (their Adam slots, METHOD.md B17).

Convert:  python -m common.pretrained [--source ../shared/reference_models/trecx] [--out pretrained]
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

from common.errors import UserError

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PRETRAINED_DIR = REPO_ROOT / "pretrained"
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "reference_models" / "trecx"

# (task, variant) -> the authors' file under the source folder.
AUTHORS_MODELS = {
    ("image_classification", "base"): "image_classification/trained_models/pretrainedResnet.h5",
    ("image_classification", "trecx_ev"): "image_classification/trained_models/model_with_ev_assist",
    ("image_classification", "trecx_noev"): "image_classification/trained_models/model_without_ev_assist",
    ("image_classification", "sdn"): "image_classification/trained_models/model_sdn",
    ("image_classification", "branchynet"): "image_classification/trained_models/model_branchynet",
    ("keyword_spotting", "base"): "keyword_spotting/trained_models/kws_ref_model",
    ("keyword_spotting", "trecx_ev"): "keyword_spotting/trained_models/model_with_ev_assist",
    ("keyword_spotting", "trecx_noev"): "keyword_spotting/trained_models/model_without_ev_assist",
    ("keyword_spotting", "eefmaps_concat"): "keyword_spotting/trained_models/model_eefmaps_concat",
    ("keyword_spotting", "sdn"): "keyword_spotting/trained_models/model_sdn",
    ("keyword_spotting", "branchynet"): "keyword_spotting/trained_models/model_branchynet",
    ("visual_wake_words", "base"): "visual_wake_words/trained_models/vww_96.h5",
    ("visual_wake_words", "trecx_ev"): "visual_wake_words/trained_models/model_with_ev_assist",
    ("visual_wake_words", "trecx_noev"): "visual_wake_words/trained_models/model_without_ev_assist",
}

# TF 2.3 attribute names that Keras 3 renamed.
_RENAMED = {"depthwise_kernel": "kernel"}


def pretrained_path(task, variant):
    return PRETRAINED_DIR / task / f"{variant}.npz"


def save_weights(model, path):
    """Write every variable of `model`, keyed by its path, atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {w.path: np.asarray(w.numpy()) for w in model.weights}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def load_weights(model, path):
    """Set every variable of `model` from `path`; the names and shapes must match exactly."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        with np.load(path) as stored:
            arrays = dict(stored)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read weights file {path} ({err}); re-create it") from None
    expected = {w.path for w in model.weights}
    if set(arrays) != expected:
        missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise UserError(f"weights file {path} does not fit model {model.name}: "
                        f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    for w in model.weights:
        if tuple(w.shape) != arrays[w.path].shape:
            raise UserError(f"weights file {path}: {w.path} has shape {arrays[w.path].shape}, "
                            f"model {model.name} expects {tuple(w.shape)}")
        w.assign(arrays[w.path])


def read_savedmodel_weights(directory):
    """{`layer/weight`: array} from a TF 2.x Keras SavedModel, layer names from its object graph."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    directory = pathlib.Path(directory)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((directory / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].object_graph_def
    reader = tf.train.load_checkpoint(str(directory / "variables" / "variables"))
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    weights = {}
    for child in graph.nodes[0].children:
        if not child.local_name.startswith("layer_with_weights-"):
            continue
        layer = json.loads(graph.nodes[child.node_id].user_object.metadata)["name"]
        for key in reader.get_variable_to_shape_map():
            prefix = child.local_name + "/"
            if key.startswith(prefix) and key.endswith(suffix) and "OPTIMIZER_SLOT" not in key:
                attr = key[len(prefix):-len(suffix)]
                weights[f"{layer}/{_RENAMED.get(attr, attr)}"] = reader.get_tensor(key)
    return weights


def read_h5_weights(path):
    """{`layer/weight`: array} from a Keras 2 `.h5` model file."""
    import h5py

    weights = {}
    with h5py.File(path, "r") as f:
        group = f["model_weights"]
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for name in group[layer].attrs["weight_names"]:
                name = name.decode() if isinstance(name, bytes) else name
                attr = name.split("/")[-1].split(":")[0]
                weights[f"{layer}/{_RENAMED.get(attr, attr)}"] = np.asarray(group[layer][name])
    return weights


def read_authors_weights(source):
    source = pathlib.Path(source)
    return read_h5_weights(source) if source.suffix == ".h5" else read_savedmodel_weights(source)


def convert(task, variant, source_root=DEFAULT_SOURCE, out_dir=PRETRAINED_DIR):
    """Load the authors' weights into our network of the same variant and save them."""
    from common.models import build_model

    net = build_model(task, variant)
    arrays = read_authors_weights(pathlib.Path(source_root) / AUTHORS_MODELS[task, variant])
    expected = {w.path for w in net.model.weights}
    if set(arrays) != expected:
        raise RuntimeError(f"{task}/{variant}: authors' layers {sorted(set(arrays) ^ expected)} "
                           "do not match the rebuilt network")
    for w in net.model.weights:
        w.assign(arrays[w.path])
    path = pathlib.Path(out_dir) / task / f"{variant}.npz"
    save_weights(net.model, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert the authors' pretrained models into the "
                                     "project's weights files (pretrained/TASK/VARIANT.npz).")
    parser.add_argument("--source", type=pathlib.Path, default=DEFAULT_SOURCE,
                        help="folder holding the authors' trecx reference models (default: %(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=PRETRAINED_DIR,
                        help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        sys.exit(f"error: source folder {args.source} not found; pass --source")
    for task, variant in AUTHORS_MODELS:
        print(f"{task}/{variant} -> {convert(task, variant, args.source, args.out)}")


if __name__ == "__main__":
    main()
