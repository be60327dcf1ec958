"""From a trained T-RecX network to what a microcontroller project compiles in.

`split_stages` cuts an early-exit network at its tap into two Keras models that reuse its layers:
stage 1 (input -> early-exit softmax `ee`, tapped feature map `tap`) and stage 2 (tapped feature map ->
final softmax `ef`); every weight lies in exactly one stage and nothing is computed twice. The base
model stays one stage. `to_tflite` converts a model to a LiteRT flatbuffer at batch 1, in float32 or,
given real inputs for calibration, in full-integer int8 (int8 input and outputs); `export_models` does
this for both stages and the base model. The flatbuffer helpers read back what a model holds (weight
bytes, builtin operators), `c_array` renders a model as a C header and source for TensorFlow Lite
Micro, and `write_export` writes every model as .tflite, .h and .cc, with a manifest of them all.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from common import files
from common.deploy.manifest import ExportedModel, write_manifest
from common.deploy.runtime import model_tensors
from common.errors import UserError
from common.native_logs import quiet_native_logs

if TYPE_CHECKING:
    import keras
    from ai_edge_litert.schema_py_generated import ModelT, OperatorCodeT

    from common.deploy.manifest import TensorSpec
    from common.models import ExitModel

PRECISIONS = ("float32", "int8")
C_BYTES_PER_LINE = 12
GENERATOR = "common/deploy/export.py"  # named in every generated C file


# ------------------------------------------------------------------------------------------------
# Split and convert


def split_stages(net: ExitModel) -> tuple[keras.Model, keras.Model]:
    """(stage1, stage2) Keras models of a T-RecX `ExitModel`, on the model's own layers (shared weights).

    stage1: input -> [early-exit softmax (1, C), tapped feature map]; stage2: tapped feature map ->
    final softmax. Keras rebuilds each stage by re-applying the model's layers, in graph order, to a
    new input; it refuses (ValueError) if the final exit needed anything but the tap.
    """
    import keras

    if net.tap is None or tuple(net.exits) != ("ee", "ef"):
        raise UserError(
            f"model {net.model.name} has no T-RecX early exit to split at; "
            "deploy a T-RecX model (trecx_ev or trecx_noev)"
        )
    model = net.model
    tap = model.get_layer(net.tap).output
    stage1 = keras.Model(model.input, [model.outputs[0], tap], name=f"{model.name}_stage1")
    stage2 = keras.Model(tap, model.outputs[1], name=f"{model.name}_stage2")
    return stage1, stage2


def to_tflite(model: keras.Model, representative: np.ndarray | None = None) -> bytes:
    """The LiteRT flatbuffer (bytes) of a single-input Keras model at batch 1.

    float32 without `representative`; with it (float32 array (N, *input shape), real inputs of the
    model), full-integer int8: int8 weights and activations, int8 input and output tensors.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input")
    with tempfile.TemporaryDirectory(prefix="trecx_export_") as tmp, quiet_native_logs():
        model.export(tmp, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if representative is not None:
            samples = np.asarray(representative, np.float32)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def export_models(
    net: ExitModel, base_net: ExitModel, calibration: np.ndarray, log: Callable[[str], None] = print
) -> dict[str, dict[str, bytes]]:
    """{precision: {"stage1", "stage2", "base": .tflite bytes}} for `net` split at its tap and `base_net`.

    `calibration`: float32 inputs (N, *input shape) from the training split. Stage 2's representative
    set is stage 1's (float) feature maps of the same inputs.
    """
    stage1, stage2 = split_stages(net)
    calibration = np.asarray(calibration, np.float32)
    taps = stage1.predict(calibration, batch_size=100, verbose=0)[1]
    models = {"float32": {}, "int8": {}}
    for part, model, representative in (
        ("stage1", stage1, calibration),
        ("stage2", stage2, taps),
        ("base", base_net.model, calibration),
    ):
        log(f"converting {part} to LiteRT float32 and int8")
        models["float32"][part] = to_tflite(model)
        models["int8"][part] = to_tflite(model, representative)
    return models


# ------------------------------------------------------------------------------------------------
# Reading a flatbuffer back


def read_flatbuffer(tflite_bytes: bytes) -> ModelT:
    """The object tree (ai_edge_litert's ModelT) of a .tflite model given as bytes."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))


def weights_kb(tflite_bytes: bytes) -> float:
    """KiB of a .tflite model's constant tensors (weights, biases): its size without the flatbuffer's
    structure, tensor names and quantisation parameters (int8 per-channel scales and zero points)."""
    model = read_flatbuffer(tflite_bytes)
    constants = {t.buffer for graph in model.subgraphs for t in graph.tensors}
    return sum(len(model.buffers[i].data) for i in constants if model.buffers[i].data is not None) / 1024


def builtin_name(code: OperatorCodeT) -> str:
    """The builtin operator name ("CONV_2D") of a flatbuffer operator code."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return names[max(code.builtinCode, code.deprecatedBuiltinCode)]


def builtin_ops(tflite_bytes: bytes) -> list[str]:
    """Names of the builtin operators a .tflite model uses (what a TFLite Micro op resolver must hold)."""
    return sorted(builtin_name(code) for code in read_flatbuffer(tflite_bytes).operatorCodes)


# ------------------------------------------------------------------------------------------------
# C arrays


def c_identifier(*words: str) -> str:
    """A C identifier from words ("image_classification", "trecx_ev", "stage1", "int8")."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", "_".join(words))
    return f"m_{name}" if name[0].isdigit() else name


def c_array(
    name: str,
    tflite_bytes: bytes,
    tensors: tuple[Mapping[str, TensorSpec], Mapping[str, TensorSpec]],
    description: str = "",
    ops: Sequence[str] = (),
    header_name: str | None = None,
) -> tuple[str, str]:
    """(header text, source text) of a .tflite model as a C array for TensorFlow Lite Micro.

    The source defines `alignas(16) const unsigned char NAME[]` and `NAME_len`; the header declares
    them and #defines NAME_LEN (bytes) and, per tensor, its position among the model's inputs or
    outputs (NAME_OUTPUT_EE_INDEX ...), whether it is int8, its scale and zero point
    (NAME_INPUT_SCALE, NAME_INPUT_ZERO_POINT, NAME_OUTPUT_EE_SCALE ...; 0.0f and 0 for float32).
    `tensors`: (inputs, outputs) as `runtime.tensor_specs` returns them; `ops`: builtin operator
    names, listed in a comment for the op resolver; header_name: the header's file name, which the source
    includes (default NAME.h).
    """
    data = bytes(tflite_bytes)
    macro = name.upper()
    inputs, outputs = tensors
    lines = [
        f"// {name}: {description}" if description else f"// {name}",
        f"// Generated by {GENERATOR} (T-RecX); do not edit. real = scale * (q - zero_point).",
        *([f"// Builtin ops (register them in a tflite::MicroMutableOpResolver): {', '.join(ops)}"] if ops else []),
        f"#ifndef {macro}_H_",
        f"#define {macro}_H_",
        "",
        f"#define {macro}_LEN {len(data)}",
    ]
    for kind, specs in (("INPUT", inputs), ("OUTPUT", outputs)):
        for spec in specs.values():
            prefix = macro + ("_INPUT" if kind == "INPUT" else f"_OUTPUT_{spec.name.upper()}")
            shape = "x".join(str(d) for d in spec.shape)
            lines += [
                f"// {kind.lower()} '{spec.name}': {spec.dtype} {shape}",
                f"#define {prefix}_INDEX {spec.position}",
                f"#define {prefix}_IS_INT8 {int(spec.quantized)}",
                f"#define {prefix}_SCALE {spec.c_scale}",
                f"#define {prefix}_ZERO_POINT {spec.zero_point}",
            ]
    lines += [
        "",
        f"extern const unsigned char {name}[];",
        f"extern const unsigned int {name}_len;",
        "",
        f"#endif  // {macro}_H_",
        "",
    ]
    header = "\n".join(lines)
    rows = [
        ", ".join(f"0x{b:02x}" for b in data[i : i + C_BYTES_PER_LINE]) for i in range(0, len(data), C_BYTES_PER_LINE)
    ]
    source = "\n".join(
        [
            f"// {name}: generated by {GENERATOR} (T-RecX); do not edit.",
            f'#include "{header_name or name + ".h"}"',
            "",
            "// 16-byte alignment: TensorFlow Lite Micro reads the flatbuffer in place.",
            f"alignas(16) const unsigned char {name}[] = {{",
            *(f"    {row}," for row in rows),
            "};",
            f"const unsigned int {name}_len = {len(data)};",
            "",
        ]
    )
    return header, source


def write_export(
    export_dir: str | os.PathLike,
    task_name: str,
    model_name: str,
    models: Mapping[str, Mapping[str, bytes]],
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Write every model of `export_models` as NAME.tflite, NAME.h and NAME.cc under `export_dir`, and what
    they are in `export_dir`/manifest.json (common.deploy.manifest).

    NAME: "{model}_{stage}_{precision}" or "base_{precision}"; the C symbol is "{task}_{NAME}".
    Returns {precision: {part: size in KiB}}.
    """
    export_dir = pathlib.Path(export_dir)
    what = {
        "stage1": f"{model_name} stage 1 (input -> early-exit softmax, tapped feature map)",
        "stage2": f"{model_name} stage 2 (tapped feature map -> final softmax)",
        "base": "base model (input -> softmax)",
    }
    sizes, manifest = {}, []
    for precision, parts in models.items():
        sizes[precision] = {}
        for part, data in parts.items():
            stem = f"base_{precision}" if part == "base" else f"{model_name}_{part}_{precision}"
            inputs, outputs = model_tensors(data, part)
            exported = ExportedModel(
                stem,
                part,
                precision,
                c_identifier(task_name, stem),
                tuple(builtin_ops(data)),
                inputs,
                outputs,
                export_dir,
            )
            header, source = c_array(
                exported.symbol,
                data,
                (inputs, outputs),
                f"{task_name} {what[part]}, LiteRT {precision}",
                exported.ops,
                header_name=exported.header.name,
            )
            files.write_bytes(exported.tflite, data)
            files.write_text(exported.header, header)
            files.write_text(exported.source, source)
            manifest.append(exported)
            sizes[precision][part] = len(data) / 1024
    write_manifest(export_dir, task_name, model_name, manifest)
    log(f"wrote {sum(len(p) for p in models.values())} models (.tflite, .h, .cc) to {export_dir}")
    return sizes
