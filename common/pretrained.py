"""Conversion of the authors' pretrained models into the project's weights files (common/weights.py).

Each task names its authors' files in `AUTHORS_MODELS`. The authors' TF 2.3 SavedModels are read with
`tf.train.load_checkpoint`, which also works for the ones `tf.saved_model.load` rejects in current
TensorFlow (those saved straight after training still hold Adam's slot variables); Keras 2 `.h5`
files are read with h5py. Weights map to our networks by layer name.

Convert:  python -m common.pretrained [--source ../shared/reference_models/trecx] [--out pretrained]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from common.tasks import REPO_ROOT, load_task, task_names
from common.weights import save_weights

PRETRAINED_DIR = REPO_ROOT / "pretrained"
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "reference_models" / "trecx"

# TF 2.3 attribute names that Keras 3 renamed.
_RENAMED = {"depthwise_kernel": "kernel"}


def read_savedmodel_weights(directory: str | os.PathLike) -> dict[str, np.ndarray]:
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
                attr = key[len(prefix) : -len(suffix)]
                weights[f"{layer}/{_RENAMED.get(attr, attr)}"] = reader.get_tensor(key)
    return weights


def read_h5_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
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


def read_authors_weights(source: str | os.PathLike) -> dict[str, np.ndarray]:
    source = pathlib.Path(source)
    return read_h5_weights(source) if source.suffix == ".h5" else read_savedmodel_weights(source)


def convert(
    task: str,
    variant: str,
    source_root: str | os.PathLike = DEFAULT_SOURCE,
    out_dir: str | os.PathLike = PRETRAINED_DIR,
) -> pathlib.Path:
    """Load the authors' weights into our network of the same variant and save them."""
    from common.models import build_model

    net = build_model(task, variant)
    arrays = read_authors_weights(pathlib.Path(source_root) / load_task(task).AUTHORS_MODELS[variant])
    expected = {w.path for w in net.model.weights}
    if set(arrays) != expected:
        raise RuntimeError(
            f"{task}/{variant}: authors' layers {sorted(set(arrays) ^ expected)} do not match the rebuilt network"
        )
    for w in net.model.weights:
        w.assign(arrays[w.path])
    path = pathlib.Path(out_dir) / task / f"{variant}.npz"
    save_weights(net.model, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        description="Convert the authors' pretrained models into the "
        "project's weights files (pretrained/TASK/VARIANT.npz).",
    )
    parser.add_argument(
        "--source",
        type=pathlib.Path,
        default=DEFAULT_SOURCE,
        help="folder holding the authors' trecx reference models (default: %(default)s)",
    )
    parser.add_argument("--out", type=pathlib.Path, default=PRETRAINED_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        sys.exit(f"error: source folder {args.source} not found; pass --source")
    for task in task_names():
        for variant in load_task(task).AUTHORS_MODELS:
            print(f"{task}/{variant} -> {convert(task, variant, args.source, args.out)}")


if __name__ == "__main__":
    main()
