"""Deployable early exit (common/deploy/ and `deploy.sh`): the two-stage split, LiteRT export in
float32 and int8, C arrays, the early-exit runtime and the deploy command end to end.

Offline, with the shipped pretrained weights and synthetic inputs in each task's real input range
(each task's `synthetic_inputs`). Conversions are the slow part, so each task's models are converted once
(module-scoped fixture).
"""

import collections
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from c_arrays import parse_c_array, parse_c_defines

from common import flops, sweep, tasks
from common.deploy import export, pipeline, profile, runtime
from common.deploy.manifest import read_manifest
from common.errors import UserError
from common.models import build_model
from common.tasks import load_task, task_names
from common.weights import load_weights, pretrained_path
from image_classification.synthetic import write_cifar

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_GOLDEN_DIR = REPO_ROOT.parent / "shared" / "data" / "kws_golden"  # 24 real clips, when present
MLPERF_RESNET_INT8 = (
    REPO_ROOT.parent
    / "shared"
    / "reference_models"
    / "mlperf_tiny"
    / "benchmark"
    / "training"
    / "image_classification"
    / "trained_models"
    / "pretrainedResnet_quant.tflite"
)  # when present
N_CALIBRATION = 100
N_TEST = 300
FLOAT_TOLERANCE = 1e-5
MIN_INT8_AGREEMENT = 0.97


@functools.cache
def pretrained(task, variant):
    net = build_model(task, variant)
    load_weights(net.model, pretrained_path(load_task(task), variant))
    return net


def keras_outputs(net, x):
    outputs = net.model.predict(x, batch_size=100, verbose=0)
    return [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]


@pytest.fixture(scope="module", params=task_names())
def exported(request):
    """One task's trecx_ev and base models in float32 and int8, synthetic test inputs, Keras outputs."""
    return export_task(request.param)


@functools.cache  # once per task, whichever tests ask (parametrized or indirect)
def export_task(task):
    net, base = pretrained(task, "trecx_ev"), pretrained(task, "base")
    calibration, _ = load_task(task).synthetic_inputs(N_CALIBRATION, seed=1)
    x, labels = load_task(task).synthetic_inputs(N_TEST, seed=2)
    models = export.export_models(net, base, calibration, log=lambda *_: None)
    return {
        "task": task,
        "net": net,
        "base": base,
        "models": models,
        "x": x,
        "labels": labels,
        "keras": keras_outputs(net, x),
        "keras_base": keras_outputs(base, x)[0],
    }


def full_trace(models, x):
    """Both stages on every sample (rho = 1.0 never exits)."""
    return runtime.EarlyExitRunner(models["stage1"], models["stage2"], runtime.NEVER_EXIT).run(x, warmup=0)


# ---------------------------------------------------------------------------------------------
# Split


@pytest.mark.parametrize("task,variant", [(t, "trecx_ev") for t in task_names()] + [("keyword_spotting", "trecx_noev")])
def test_stages_reproduce_the_keras_model(task, variant):
    net = pretrained(task, variant)
    stage1, stage2 = export.split_stages(net)
    x, _ = load_task(task).synthetic_inputs(64, seed=3)
    ee, ef = keras_outputs(net, x)
    stage1_ee, tap = stage1.predict(x, verbose=0)
    stage2_ef = stage2.predict(tap, verbose=0)
    assert np.abs(stage1_ee - ee).max() <= FLOAT_TOLERANCE
    assert np.abs(stage2_ef - ef).max() <= FLOAT_TOLERANCE
    assert tap.shape[1:] == tuple(net.model.get_layer(net.tap).output.shape[1:])
    # The stages share the model's weights, each weight in exactly one stage: nothing is computed twice.
    ids = [[id(w) for w in model.weights] for model in (stage1, stage2, net.model)]
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == sorted(ids[2])
    # Stage 1 costs the early-exit path, both stages together the full path.
    ee_path, full_path = flops.path_mflops(net.model)
    assert flops.path_mflops(stage1)[-1] == pytest.approx(ee_path, abs=1e-9)
    assert flops.path_mflops(stage1)[-1] + flops.path_mflops(stage2)[0] == pytest.approx(full_path, abs=1e-9)


@pytest.mark.parametrize("variant", ["base", "sdn"])
def test_models_without_a_trecx_exit_are_refused(variant):
    with pytest.raises(UserError, match="no T-RecX early exit"):
        export.split_stages(build_model("image_classification", variant))


# ---------------------------------------------------------------------------------------------
# LiteRT export


def test_float32_tflite_stages_match_keras(exported):
    models = exported["models"]["float32"]
    trace = full_trace(models, exported["x"])
    ee, ef = exported["keras"]
    assert np.abs(trace.softmax["ee"] - ee).max() <= FLOAT_TOLERANCE
    assert np.abs(trace.softmax["ef"] - ef).max() <= FLOAT_TOLERANCE
    base = runtime.SingleStageRunner(models["base"]).run(exported["x"], warmup=0)
    assert np.abs(base.softmax["ef"] - exported["keras_base"]).max() <= FLOAT_TOLERANCE
    for part in ("stage1", "stage2", "base"):
        inputs, outputs = runtime.model_tensors(models[part], part)
        assert [s.dtype for s in (*inputs.values(), *outputs.values())] == ["float32"] * (1 + len(outputs))
        assert inputs["input"].shape[0] == 1  # batch 1, as on a microcontroller


def test_int8_models_are_full_integer_with_recorded_quantisation(exported):
    models = exported["models"]["int8"]
    for part in ("stage1", "stage2", "base"):
        inputs, outputs = runtime.model_tensors(models[part], part)
        for spec in (*inputs.values(), *outputs.values()):
            assert spec.dtype == "int8" and spec.scale > 0 and -128 <= spec.zero_point <= 127, (part, spec)
    _, stage1_outputs = runtime.model_tensors(models["stage1"], "stage1")
    stage2_inputs, _ = runtime.model_tensors(models["stage2"], "stage2")
    tap, target = stage1_outputs["tap"], stage2_inputs["input"]
    assert tap.shape == target.shape
    assert tap.zero_point == target.zero_point and tap.scale == pytest.approx(target.scale, rel=1e-5)
    runner = runtime.EarlyExitRunner(models["stage1"], models["stage2"], 0.5)
    assert runner.direct_transfer  # stage 1's int8 feature map feeds stage 2 as it is
    float_models = exported["models"]["float32"]
    for part in ("stage1", "stage2", "base"):  # the same constants, weights in one byte, biases in four
        int8, float32 = constant_elements(models[part]), constant_elements(float_models[part])
        assert set(int8) <= {"INT8", "INT32"} and sum(int8.values()) == sum(float32.values()), part
        kib = export.weights_kb(float_models[part]) / 4 + 3 * int8["INT32"] / 1024
        assert export.weights_kb(models[part]) == pytest.approx(kib, abs=1e-9), part
    both = [sum(len(m[part]) for part in ("stage1", "stage2")) for m in (models, float_models)]
    if export.weights_kb(float_models["stage2"]) > 16:  # where the weights, not the structure, fill the files
        assert both[0] < 0.6 * both[1]  # files also hold per-channel scales and zero points, names, structure


def constant_elements(tflite_bytes):
    """{tensor type name: elements} of a .tflite model's constant tensors (each buffer once)."""
    from ai_edge_litert.tools.flatbuffer_utils import schema_fb

    model = export.read_flatbuffer(tflite_bytes)
    names = {value: name for name, value in vars(schema_fb.TensorType).items() if not name.startswith("_")}
    counts, seen = collections.Counter(), set()
    for tensor in (t for graph in model.subgraphs for t in graph.tensors):
        if model.buffers[tensor.buffer].data is not None and tensor.buffer not in seen:
            seen.add(tensor.buffer)
            counts[names[tensor.type]] += int(np.prod(tensor.shape)) if tensor.shape is not None else 1
    return counts


def test_int8_predictions_agree_with_float32(exported):
    float_models, int8_models, x = exported["models"]["float32"], exported["models"]["int8"], exported["x"]
    float_trace, int8_trace = full_trace(float_models, x), full_trace(int8_models, x)
    for name in ("ee", "ef"):
        reference = float_trace.softmax[name].argmax(axis=1)
        assert len(np.unique(reference)) >= 2, f"{name}: synthetic inputs give one class only; no test"
        agreement = np.mean(int8_trace.softmax[name].argmax(axis=1) == reference)
        assert agreement >= MIN_INT8_AGREEMENT, f"{exported['task']} {name}: {agreement:.3f}"
    # The early-exit model's own predictions at a threshold where about half the samples exit.
    rho = float(np.median(float_trace.softmax["ee"].max(axis=1)))
    at_rho = [
        runtime.EarlyExitRunner(m["stage1"], m["stage2"], rho).run(x, warmup=0) for m in (float_models, int8_models)
    ]
    assert np.mean(at_rho[0].predictions == at_rho[1].predictions) >= MIN_INT8_AGREEMENT


def base_agreement(exported, x=None):
    """(agreement of the int8 base model's predictions with float32's, float32's top-2 margins)."""
    x = exported["x"] if x is None else x
    runs = [runtime.SingleStageRunner(exported["models"][p]["base"]).run(x, warmup=0) for p in export.PRECISIONS]
    top2 = np.sort(runs[0].softmax["ef"], axis=1)[:, -2:]
    return runs[1].predictions == runs[0].predictions, top2[:, 1] - top2[:, 0]


def test_int8_base_model_agrees_with_float32(exported, request):
    """The MLPerf Tiny base models of image classification and keyword spotting fall short on these
    synthetic inputs (about 94 % and 95 %): they leave many of them near a tie between two classes
    (top-2 softmax margin < 0.1 for 14 % and 6 %, against 2 % for the T-RecX final exits), where int8
    rounding flips the argmax; on the others they agree on >= 97 % (next test), and on real clips
    (test_int8_agrees_on_real_keyword_spotting_clips) on all of them; MLPerf Tiny's own int8 ResNet-8
    agrees less often than ours on the same inputs
    (test_int8_base_model_agrees_more_often_than_mlperfs_own_int8_resnet).
    Kept strict: a change that makes them pass shows up as XPASS."""
    if exported["task"] in ("image_classification", "keyword_spotting"):
        request.applymarker(pytest.mark.xfail(strict=True, reason="base model near-ties on synthetic inputs"))
    agree, _ = base_agreement(exported)
    assert agree.mean() >= MIN_INT8_AGREEMENT, f"{exported['task']} base: {agree.mean():.3f}"


def test_int8_base_model_disagrees_only_near_ties(exported):
    agree, margin = base_agreement(exported)
    decisive = margin >= 0.1
    assert decisive.mean() >= 0.8
    assert agree[decisive].mean() >= MIN_INT8_AGREEMENT, f"{exported['task']}: {agree[decisive].mean():.3f}"


@pytest.mark.skipif(not MLPERF_RESNET_INT8.is_file(), reason="MLPerf Tiny reference models not present")
@pytest.mark.parametrize("exported", ["image_classification"], indirect=True)
def test_int8_base_model_agrees_more_often_than_mlperfs_own_int8_resnet(exported):
    """MLPerf Tiny's own int8 ResNet-8, quantised from the same float weights (its float32 .tflite gives
    our float32 predictions exactly), agrees with float32 less often than our export on the same synthetic
    inputs: the near-ties that keep both under 97 % are the inputs', not a fault of our quantisation."""
    x = exported["x"]
    interpreter = runtime.Runtime().interpreter(MLPERF_RESNET_INT8.read_bytes())
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    spec = runtime.TensorSpec("input", 0, source["index"], tuple(source["shape"]), "int8", *source["quantization"])
    theirs = []
    for sample in spec.quantize(x):
        interpreter.set_tensor(spec.index, sample[None])
        interpreter.invoke()
        theirs.append(int(interpreter.get_tensor(target["index"])[0].argmax()))
    reference = exported["keras_base"].argmax(axis=1)
    ours, _ = base_agreement(exported)
    assert ours.mean() > np.mean(np.array(theirs) == reference), (ours.mean(), np.mean(np.array(theirs) == reference))


@pytest.mark.skipif(not (SHARED_GOLDEN_DIR / "golden_mfcc.npz").is_file(), reason="shared golden clips not present")
@pytest.mark.parametrize("exported", ["keyword_spotting"], indirect=True)
def test_int8_agrees_on_real_keyword_spotting_clips(exported):
    """24 real Speech Commands clips, two per label: every int8 model predicts what float32 predicts."""
    x = np.load(SHARED_GOLDEN_DIR / "golden_mfcc.npz")["mfcc"]
    float_trace, int8_trace = (full_trace(exported["models"][p], x) for p in export.PRECISIONS)
    for name in ("ee", "ef"):
        np.testing.assert_array_equal(int8_trace.softmax[name].argmax(axis=1), float_trace.softmax[name].argmax(axis=1))
    agree, _ = base_agreement(exported, x)
    assert agree.all()
    assert len(np.unique(float_trace.predictions)) >= 10  # real clips: the models tell the words apart


# ---------------------------------------------------------------------------------------------
# Runtime


def count_calls(monkeypatch, stage):
    """Count calls of the interpreter's own invoke, independently of Stage.invocations."""
    calls = []
    invoke = stage.interpreter.invoke
    monkeypatch.setattr(stage.interpreter, "invoke", lambda: calls.append(1) or invoke())
    return calls


@pytest.mark.parametrize("precision", export.PRECISIONS)
def test_runner_never_runs_stage2_for_a_sample_that_exited(exported, precision, monkeypatch):
    models, x = exported["models"][precision], exported["x"]
    full = full_trace(models, x)
    confidence = full.softmax["ee"].max(axis=1)
    levels = np.unique(confidence)  # a confident int8 exit puts more than half its samples at the top level
    assert len(levels) >= 2
    rho = float(levels[(len(levels) - 1) // 2])  # below the top level, at or above the lowest
    runner = runtime.EarlyExitRunner(models["stage1"], models["stage2"], rho)
    stage1_calls, stage2_calls = count_calls(monkeypatch, runner.first), count_calls(monkeypatch, runner.second)
    trace = runner.run(x, warmup=0)
    exited = trace.exits == 0
    assert 0 < exited.sum() < len(x)
    assert len(stage1_calls) == len(x)
    assert len(stage2_calls) == trace.stage2_invocations == np.sum(~exited)
    # Exited samples: prediction from stage 1, which passed the threshold; stage 2 never produced output.
    assert np.all(trace.softmax["ee"][exited].max(axis=1) > rho)
    assert np.all(trace.predictions[exited] == trace.softmax["ee"][exited].argmax(axis=1))
    assert np.isnan(trace.softmax["ef"][exited]).all()
    # The others: stage 1 did not pass, the prediction is stage 2's.
    assert np.all(trace.softmax["ee"][~exited].max(axis=1) <= rho)
    assert np.all(trace.predictions[~exited] == trace.softmax["ef"][~exited].argmax(axis=1))
    # Stage outputs are the same whether or not a sample exits, and the runner's exits are common.sweep's.
    np.testing.assert_array_equal(trace.softmax["ee"], full.softmax["ee"])
    np.testing.assert_array_equal(trace.softmax["ef"][~exited], full.softmax["ef"][~exited])
    np.testing.assert_array_equal(trace.exits, sweep.exit_index(confidence[:, None], np.array([rho]), "strict")[0])
    assert trace.latency_ns.shape == (len(x),) and np.all(trace.latency_ns > 0)


@pytest.mark.parametrize("exported", ["keyword_spotting"], indirect=True)
@pytest.mark.parametrize("precision", export.PRECISIONS)
def test_rho_one_never_exits_and_rho_zero_always_exits(exported, precision):
    models, x = exported["models"][precision], exported["x"][:50]
    never = runtime.EarlyExitRunner(models["stage1"], models["stage2"], 1.0).run(x, warmup=0)
    always = runtime.EarlyExitRunner(models["stage1"], models["stage2"], 0.0).run(x, warmup=0)
    assert np.all(never.exits == 1) and never.stage2_invocations == len(x) and never.exit_rate == 0.0
    assert np.all(always.exits == 0) and always.stage2_invocations == 0 and always.exit_rate == 1.0
    assert np.isnan(always.softmax["ef"]).all() and not np.isnan(never.softmax["ef"]).any()


@pytest.mark.parametrize("exported", ["keyword_spotting"], indirect=True)
def test_every_kernel_set_computes_the_same_model(exported):
    """The kernel sets differ in speed, not in what they compute: float32 within 1e-5 of Keras; int8
    mostly equal to the default kernels' (each kernel set rounds its own way, XNNPACK requantising in
    float, the others in fixed point, and a step's difference can grow through the layers), hence the
    same predictions but for near-ties."""
    x = exported["x"]
    traces = {
        kernels: {
            precision: runtime.EarlyExitRunner(
                models["stage1"], models["stage2"], runtime.NEVER_EXIT, runtime.Runtime(kernels=kernels)
            ).run(x, warmup=0)
            for precision, models in exported["models"].items()
        }
        for kernels in runtime.KERNELS
    }
    ee, ef = exported["keras"]
    int8_ef_scale = runtime.model_tensors(exported["models"]["int8"]["stage2"], "stage2")[1]["ef"].scale
    for kernels, trace in traces.items():
        assert np.abs(trace["float32"].softmax["ee"] - ee).max() <= FLOAT_TOLERANCE, kernels
        assert np.abs(trace["float32"].softmax["ef"] - ef).max() <= FLOAT_TOLERANCE, kernels
        default = traces["xnnpack"]["int8"]
        assert np.mean(trace["int8"].predictions == default.predictions) >= MIN_INT8_AGREEMENT, kernels
        steps = np.abs(trace["int8"].softmax["ef"] - default.softmax["ef"]) / int8_ef_scale
        assert np.median(steps) == 0 and steps.mean() <= 1.0, kernels


@pytest.mark.parametrize("precision", export.PRECISIONS)
def test_single_op_models_compute_what_the_operator_computes_in_the_model(exported, precision):
    """Each operator cut out alone, fed the tensors the whole model fed it, gives the whole model's
    intermediate tensor exactly; the operators' MACs add up to the Keras model's (BatchNorm folded)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = exported["models"][precision]["base"]
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    whole = Interpreter(
        model_content=data, experimental_op_resolver_type=builtin, experimental_preserve_all_tensors=True
    )
    whole.allocate_tensors()
    source = whole.get_input_details()[0]
    spec = runtime.TensorSpec(
        "input", 0, source["index"], tuple(source["shape"]), np.dtype(source["dtype"]).name, *source["quantization"]
    )
    whole.set_tensor(spec.index, spec.quantize(exported["x"][:1]))
    whole.invoke()
    ops = profile.single_op_models(data)
    assert [op.name for op in ops] == [op["op_name"] for op in whole._get_ops_details()]
    for op in ops:
        alone = Interpreter(model_content=op.tflite, experimental_op_resolver_type=builtin)
        alone.allocate_tensors()
        for detail in alone.get_input_details():  # the same tensor indices as in the whole model
            alone.set_tensor(detail["index"], whole.get_tensor(detail["index"]))
        alone.invoke()
        for detail in alone.get_output_details():
            np.testing.assert_array_equal(alone.get_tensor(detail["index"]), whole.get_tensor(detail["index"]))
        assert tuple(alone.get_output_details()[0]["shape"]) == op.output_shape
    keras_macs = sum(c.macs for c in flops.path_costs(exported["base"].model)[0])
    assert sum(op.macs for op in ops) == keras_macs
    timings = profile.op_profile(data, repeats=10)
    assert [op.name for op, _ in timings] == [op.name for op in ops] and all(t > 0 for _, t in timings)


def test_runtime_refuses_unknown_kernels_and_threads():
    with pytest.raises(UserError, match="unknown kernels 'cmsis'; choose one of xnnpack, builtin, reference"):
        runtime.Runtime(kernels="cmsis")
    with pytest.raises(UserError, match="at least 1"):
        runtime.Runtime(threads=0)
    help_text = run_deploy_sh("--help", cwd=REPO_ROOT).stdout  # the command line's --kernels choices
    kernels_choices = re.search(r"^\s+--kernels \{([^}]*)\}", help_text, re.M).group(1).split(",")
    assert tuple(kernels_choices) == tuple(runtime.KERNELS)


# ---------------------------------------------------------------------------------------------
# C arrays


@pytest.mark.parametrize("exported", ["image_classification"], indirect=True)
def test_c_arrays_round_trip_with_the_interpreters_quantisation(exported, tmp_path):
    sizes = export.write_export(tmp_path, "image_classification", "trecx_ev", exported["models"], log=lambda *_: None)
    for precision, parts in exported["models"].items():
        for part, data in parts.items():
            stem = f"base_{precision}" if part == "base" else f"trecx_ev_{part}_{precision}"
            symbol = export.c_identifier("image_classification", stem).upper()
            header, source = (tmp_path / f"{stem}.h").read_text(), (tmp_path / f"{stem}.cc").read_text()
            assert parse_c_array(source) == data == (tmp_path / f"{stem}.tflite").read_bytes()
            assert "alignas(16) const unsigned char" in source and f'#include "{stem}.h"' in source
            assert sizes[precision][part] == len(data) / 1024
            ops = export.builtin_ops(data)
            assert f"MicroMutableOpResolver): {', '.join(ops)}" in header
            assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops)
            interpreter_ops = {op["op_name"] for op in runtime.Stage(data, part).interpreter._get_ops_details()}
            assert set(ops) == interpreter_ops - {"DELEGATE"}  # XNNPACK adds DELEGATE nodes
            defines = parse_c_defines(header)
            assert defines[f"{symbol}_LEN"] == len(data)
            interpreter = runtime.Stage(data, part).interpreter
            details = {"INPUT": interpreter.get_input_details(), "OUTPUT": interpreter.get_output_details()}
            inputs, outputs = runtime.model_tensors(data, part)
            for kind, specs in (("INPUT", inputs), ("OUTPUT", outputs)):
                for spec in specs.values():
                    prefix = f"{symbol}_INPUT" if kind == "INPUT" else f"{symbol}_OUTPUT_{spec.name.upper()}"
                    detail = details[kind][defines[f"{prefix}_INDEX"]]  # what TFLite Micro's input(i)/output(i) gives
                    assert detail["index"] == spec.index
                    scale, zero_point = detail["quantization"]
                    assert defines[f"{prefix}_SCALE"] == scale and defines[f"{prefix}_ZERO_POINT"] == zero_point
                    assert defines[f"{prefix}_IS_INT8"] == (precision == "int8")


def test_c_array_of_arbitrary_bytes_round_trips():
    data = bytes(range(256)) * 3 + b"\x00\x07"
    header, source = export.c_array("m_test", data, ({}, {}))
    assert parse_c_array(source) == data
    assert parse_c_defines(header)["M_TEST_LEN"] == len(data)


# ---------------------------------------------------------------------------------------------
# The deploy command end to end


def run_deploy_sh(*args, cwd, **environment):
    env = {**os.environ, **environment}
    env.setdefault("PYTHON", sys.executable)
    return subprocess.run(
        ["bash", str(REPO_ROOT / "image_classification" / "deploy.sh"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    write_cifar(root / "data", n_test=200, n_train_per_batch=60, seed=5)
    (root / "cwd").mkdir()
    return root


def check_summary(summary, rho_source):
    assert summary["task"] == "image_classification" and summary["model"] == "trecx_ev"
    assert summary["num_samples"] == 200 and summary["rho_source"] == rho_source
    assert isinstance(summary["rho"], float) and 0.0 <= summary["rho"] <= 1.0
    for precision in ("float32", "int8"):
        result = summary[precision]
        assert set(result["size_kb"]) == {"stage1", "stage2", "base"}
        assert all(isinstance(v, float) and v > 0 for v in result["size_kb"].values())
        for key in ("accuracy", "base_accuracy", "exit_rate", "mflops_saving_pct", "latency_saving_pct"):
            assert isinstance(result[key], (int, float)), key
        assert 0.0 <= result["exit_rate"] <= 1.0
        for key in ("latency_ms", "base_latency_ms"):
            assert set(result[key]) == {"mean", "p50", "p99"} and all(v > 0 for v in result[key].values())
        ratio = result["latency_over_flops_saving"]
        assert ratio is None or ratio == pytest.approx(result["latency_saving_pct"] / result["mflops_saving_pct"])
        assert result["stage2_invocations"] == round((1 - result["exit_rate"]) * 200)
    assert summary["int8"]["size_kb"]["stage1"] < summary["float32"]["size_kb"]["stage1"]
    # The default target's predicted cost of the exported int8 models, at the int8 test exit rate.
    target = summary["target"]
    counts, exit_rate = target["instructions"], summary["int8"]["exit_rate"]
    assert target["target"] == "cortex-m4" and 0 < counts["stage1"] < counts["base"] and counts["stage2"] > 0
    expected = counts["stage1"] + (1 - exit_rate) * counts["stage2"]
    assert target["expected_instructions"] == pytest.approx(expected)
    assert target["instruction_saving_pct"] == pytest.approx(100 * (1 - expected / counts["base"]))
    breaks_even = counts["stage1"] + (1 - target["break_even_exit_rate"]) * counts["stage2"]
    assert breaks_even == pytest.approx(counts["base"])
    assert target["saves"] == (target["instruction_saving_pct"] > 0)


def test_deploy_sh_with_given_rho_needs_no_validation_data(cifar):
    out = cifar / "out_given"
    proc = run_deploy_sh(
        "--data-dir",
        cifar / "data",
        "--results-dir",
        out,
        "--rho",
        "0.8",
        "--train-data-dir",
        cifar / "nowhere",
        "--calibration-data",
        cifar / "data",
        "--calibration-samples",
        "50",
        "--kernels",
        "builtin",
        cwd=cifar / "cwd",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "INFO:" not in proc.stderr
    summary = json.loads((out / "deploy.json").read_text())
    check_summary(summary, "given")
    assert summary["rho"] == 0.8 and summary["validation"] is None
    assert summary["kernels"] == "builtin"
    assert "builtin kernels, 1 interpreter thread" in (out / "deploy.md").read_text()
    for stem in ("trecx_ev_stage1", "trecx_ev_stage2", "base"):
        for precision in ("float32", "int8"):
            for suffix in (".tflite", ".h", ".cc"):
                assert (out / "export" / f"{stem}_{precision}{suffix}").is_file()
    # The manifest says what each exported model is, as the interpreter and the C header see it.
    manifest = read_manifest(out / "export")
    assert sorted(manifest) == sorted(
        f"{s}_{p}" for s in ("trecx_ev_stage1", "trecx_ev_stage2", "base") for p in ("float32", "int8")
    )
    for model in manifest.values():
        data = model.tflite.read_bytes()
        assert (model.inputs, model.outputs) == runtime.model_tensors(data, model.part)
        assert model.ops == tuple(export.builtin_ops(data)) and model.symbol == f"image_classification_{model.stem}"
        defines = parse_c_defines(model.header.read_text())
        for spec in model.outputs.values():
            prefix = f"{model.symbol.upper()}_OUTPUT_{spec.name.upper()}"
            assert defines[f"{prefix}_SCALE"] == spec.scale and int(defines[f"{prefix}_INDEX"]) == spec.position
    assert (out / "int8_vs_float.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "int8_vs_float.pdf").is_file()
    assert "| latency saving / FLOPs saving |" in (out / "deploy.md").read_text()
    assert list((cifar / "cwd").iterdir()) == []
    # What it read is recorded: never mistaken for another test set's results.
    data = cifar / "data"
    assert summary["data"] == {
        "models": "pretrained",
        "test": str(data),
        "validation": None,
        "calibration": str(data),
        "calibration_from": "the training split",
        "calibration_samples": 50,
    }
    assert (
        f"Read: the pretrained models; 200 test samples from `{data}`; int8 calibration: 50 inputs from the "
        f"training split in `{data}`." in (out / "deploy.md").read_text()
    )


def test_deploy_sh_without_training_data_names_calibration_data(cifar, tmp_path):
    """--rho needs no validation split, but int8 calibration still reads the --train-data-dir by default: the
    message names --calibration-data, the flag that fixes it, and no other."""
    proc = run_deploy_sh(
        "--data-dir", cifar / "data", "--rho", "0.8", "--train-data-dir", tmp_path / "none", cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        f"error: int8 calibration reads 500 inputs from --calibration-data, by default the --train-data-dir, "
        f"{tmp_path / 'none'}, which holds neither the training split" in proc.stderr
    )
    assert "pass --calibration-data DIR holding either" in proc.stderr and "point --data-dir" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_deploy_writes_apart_from_test_sh_by_default(cifar, tmp_path, monkeypatch):
    """Without --results-dir: results/TASK/deploy, beside test.sh's results/TASK/ files, never among them
    (the deployment itself stubbed: what run_deploy hands it)."""
    handed = {}

    def deploy(deployment, inputs, results_dir, **kwargs):
        handed.update(results_dir=results_dir, num_samples=len(inputs.test[1]), data=inputs.data, **kwargs)
        return "summary"

    monkeypatch.setattr(tasks, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(pipeline, "deploy", deploy)
    from common.deploy.options import DeployFolders, DeployOptions

    summary, out = pipeline.run_deploy(
        "image_classification",
        "trecx_ev",
        folders=DeployFolders(test_data=cifar / "data", train_data=cifar / "data"),
        options=DeployOptions(rho=0.8, calibration_samples=20),
        log=lambda *_: None,
    )
    assert out == handed["results_dir"] == tmp_path / "results" / "image_classification" / "deploy"
    assert handed["data"].test == str(cifar / "data") and handed["num_samples"] == 200
    assert (handed["data"].calibration_samples, handed["data"].calibration_from) == (20, "the training split")


def test_deploy_sh_chooses_rho_on_the_validation_split(cifar):
    out = cifar / "out_validation"
    proc = run_deploy_sh(
        "--data-dir",
        cifar / "data",
        "--train-data-dir",
        cifar / "data",
        "--results-dir",
        out,
        "--calibration-samples",
        "50",
        cwd=cifar / "cwd",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "deploy.json").read_text())
    check_summary(summary, "validation")
    assert summary["kernels"] == "xnnpack" and summary["num_threads"] == 1
    validation = summary["validation"]
    assert validation["num_samples"] == 30  # a tenth of the 300 synthetic training images
    assert summary["rho"] in [pytest.approx(r) for r in sweep.RHOS]
    assert validation["met"] == (validation["accuracy"] >= validation["base_accuracy"] - 1.0 - 1e-9)
    assert (
        "chosen on 30 validation samples, the cheapest in instructions on cortex-m4" in (out / "deploy.md").read_text()
    )
    # Chosen in the target's instructions, the FLOPs choice beside it.
    assert validation["chosen_in"] == "instructions on cortex-m4" and validation["saves"] == (
        validation["reduction_pct"] > 0
    )
    assert validation["instruction_reduction_pct"] == pytest.approx(validation["reduction_pct"])
    assert {"rho", "accuracy", "flops_reduction_pct", "instruction_reduction_pct"} <= set(validation["flops_choice"])
    assert summary["target"]["deploy"] == ("early exit" if validation["saves"] else "base model")


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--data-dir", "{root}/nowhere", "--rho", "0.5"],
            "nowhere not found; run bash image_classification/download.sh",
        ),
        (
            ["--data-dir", "{root}/data", "--train-data-dir", "{root}/nowhere"],
            "nowhere not found; run bash image_classification/download.sh",
        ),
        (["--data-dir", "{root}/data", "--model", "sdn", "--rho", "0.5"], "no T-RecX early exit"),
        (["--data-dir", "{root}/data", "--model", "resnet", "--rho", "0.5"], "valid models"),
        (["--data-dir", "{root}/data", "--rho", "1.5"], "--rho must lie in"),
        (["--data-dir", "{root}/data", "--rho", "0.5", "--threads", "0"], "--threads must be at least 1"),
        (
            ["--data-dir", "{root}/data", "--rho", "0.5", "--models", "trained", "--models-dir", "{root}/nowhere"],
            "no trained",
        ),
    ],
)
def test_deploy_user_errors_exit_2_with_the_fix(cifar, args, message, tmp_path):
    proc = run_deploy_sh(*(a.format(root=cifar) for a in args), cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.parametrize(
    "options,message",
    [
        ({"model": "resnet", "rho": 0.5}, "valid models"),
        ({"rho": 1.5}, "--rho must lie in"),
        ({"rho": 0.5, "calibration_samples": 0}, "--calibration-samples and --threads must be at least 1"),
        ({"rho": 0.5, "drop": -1.0}, "--drop at least 0"),
        ({"model": "sdn", "rho": 0.5}, "no T-RecX early exit"),
        ({"rho": 0.5, "data_dir": "{root}/nowhere"}, "nowhere not found; run bash image_classification/download.sh"),
        ({"rho": 0.5, "mcu": "cortex-m4,cortex-m3"}, "--mcu: unknown target 'cortex-m3'"),
        ({"rho": 0.5, "mcu": "cortex-m4:fast"}, "--mcu: unknown target 'cortex-m4:fast'"),
        ({"rho": 0.5, "mcu": " , "}, "--mcu needs at least one target"),
        ({"rho": 0.5, "mcu": "cortex-m4", "mcu_samples": 0}, "--mcu-samples must be at least 1"),
    ],
)
def test_run_deploy_refuses_bad_options_before_reading_data(cifar, options, message):
    from common.deploy.mcu_measure import parse_targets
    from common.deploy.options import DeployFolders, DeployOptions

    options = {
        "model": "trecx_ev",
        **{k: v.format(root=cifar) if isinstance(v, str) else v for k, v in options.items()},
    }
    model, data_dir = options.pop("model"), options.pop("data_dir", None)
    with pytest.raises(UserError, match=re.escape(message)):
        if "mcu" in options:  # the command line reads --mcu's text into targets
            options["mcu"] = tuple(parse_targets(options["mcu"]))
        pipeline.run_deploy(
            "image_classification",
            model,
            folders=DeployFolders(models=cifar / "nowhere", test_data=data_dir, results=cifar / "never"),
            options=DeployOptions(**options),
            log=lambda *_: None,
        )
    assert not (cifar / "never").exists()


def test_deploy_mcu_without_the_toolchain_is_one_message_before_any_work(cifar, tmp_path):
    empty = {"TRECX_MCU_HOME": str(tmp_path / "empty_mcu_home")}
    proc = run_deploy_sh(
        "--data-dir",
        cifar / "data",
        "--results-dir",
        tmp_path / "out",
        "--rho",
        "0.5",
        "--mcu",
        "cortex-m4,cortex-m55",
        cwd=tmp_path,
        **empty,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the TensorFlow Lite Micro tree in" in proc.stderr and "bash install_mcu_toolchain.sh" in proc.stderr
    assert not (tmp_path / "out").exists()
    # Without --mcu the same command needs none of it: it gets past the check to the missing weights.
    proc = run_deploy_sh(
        "--data-dir",
        cifar / "data",
        "--rho",
        "0.5",
        "--models",
        "trained",
        "--models-dir",
        cifar / "nowhere",
        "--results-dir",
        tmp_path / "out",
        cwd=tmp_path,
        **empty,
    )
    assert proc.returncode == 2 and "no trained" in proc.stderr


def test_deploy_mcu_samples_takes_a_count_or_all(tmp_path):
    proc = run_deploy_sh("--mcu", "cortex-m4", "--mcu-samples", "many", cwd=tmp_path)
    assert proc.returncode == 2 and "expected a whole number or all, got 'many'" in proc.stderr


# ---------------------------------------------------------------------------------------------
# The tasks' validation and calibration sets


def test_cifar_validation_is_the_last_training_images_and_calibration_comes_before(cifar):
    from image_classification import data, task

    images, labels = data.load_train(cifar / "data")
    x, y = task.validation_set(cifar / "data")
    np.testing.assert_array_equal(x, images[-30:].astype(np.float32))
    np.testing.assert_array_equal(y, labels[-30:])
    calibration = task.calibration_set(cifar / "data", n=20, seed=1)
    assert calibration.shape == (20, 32, 32, 3) and calibration.dtype == np.float32
    rows = [np.flatnonzero((images.reshape(len(images), -1) == c.reshape(-1)).all(axis=1)) for c in calibration]
    assert all(r.size and r[0] < len(images) - 30 for r in rows)
    np.testing.assert_array_equal(calibration, task.calibration_set(cifar / "data", n=20, seed=1))


def test_kws_validation_and_calibration_sets(tmp_path):
    from keyword_spotting import data, task
    from keyword_spotting.synthetic import write_test_tree, write_train_tree

    with pytest.raises(UserError, match="preprocess.sh"):
        task.validation_set(tmp_path)
    write_train_tree(tmp_path / data.TRAIN_FOLDER)
    write_test_tree(tmp_path / data.TEST_FOLDER)
    data.preprocess(tmp_path)
    x, y = task.validation_set(tmp_path)
    cached = np.load(tmp_path / data.CACHE_FOLDER / "validation_mfcc.npy")
    np.testing.assert_array_equal(x, cached)
    assert y.shape == (len(x),)
    calibration = task.calibration_set(tmp_path, n=5, seed=0)
    assert calibration.shape == (5, 49, 10, 1) and np.isfinite(calibration).all()


def test_vww_validation_and_calibration_sets(tmp_path):
    from visual_wake_words import data, images, task
    from visual_wake_words.synthetic import write_vww_train

    with pytest.raises(UserError, match=str(tmp_path / data.TRAIN_FOLDER)):
        task.calibration_set(tmp_path)
    write_vww_train(tmp_path, n_non_person=10, n_person=20, seed=0)
    train, validation = data.split_train(tmp_path)
    x, y = task.validation_set(tmp_path)
    assert x.shape == (len(validation), 96, 96, 3) and list(y) == [label for _, label in validation]
    calibration = task.calibration_set(tmp_path, n=8, seed=0)
    assert calibration.shape == (8, 96, 96, 3) and 0.0 <= calibration.min() and calibration.max() <= 1.0
    train_images = images.load_images([tmp_path / path for path, _ in train])
    assert all(any(np.array_equal(c, t) for t in train_images) for c in calibration)


def test_calibration_data_may_be_a_test_set_without_training_split(cifar, tmp_path):
    import shutil

    task = load_task("image_classification")
    test_only = tmp_path / "test_only"
    shutil.copytree(cifar / "data", test_only)
    for batch in test_only.glob("cifar-10-batches-py/data_batch_*"):
        batch.unlink()
    calibration, source = pipeline.calibration_inputs(task, test_only, 30)
    test_images = task.load_test(test_only)[0]
    assert source == "the test-layout folder" and calibration.shape == (30, 32, 32, 3)
    assert all(any(np.array_equal(c, t) for t in test_images) for c in calibration)
    _, source = pipeline.calibration_inputs(task, cifar / "data", 30)
    assert source == "the training split"  # a training split, when there is one, comes first
    with pytest.raises(UserError, match=r"holds neither the training split \(.*\) nor a test set.*--calibration-data"):
        pipeline.calibration_inputs(task, tmp_path / "nowhere", 30)


def test_mcu_targets_and_a_disagreement_with_litert_is_named_by_sample():
    from types import SimpleNamespace

    from common.deploy import mcu_measure

    assert mcu_measure.parse_targets("all") == [
        ("cortex-m4", "cmsis-nn"),
        ("cortex-m4", "reference"),
        ("cortex-m7", "cmsis-nn"),
        ("cortex-m55", "cmsis-nn"),
    ]
    assert mcu_measure.parse_targets("cortex-m55, cortex-m4:reference,cortex-m55") == [
        ("cortex-m55", "cmsis-nn"),
        ("cortex-m4", "reference"),
    ]
    result = SimpleNamespace(
        exits=np.array([0, 1, 1, 0]), classes=np.array([3, 4, 5, 6]), model_classes={"base": np.array([3, 4, 5, 7])}
    )
    litert = (np.array([0, 1, 0, 0]), np.array([3, 4, 5, 6]), np.array([3, 4, 5, 6]))
    assert mcu_measure.agreement(result, litert) == {
        "exits": 3,
        "classes": 4,
        "base_classes": 3,
        "samples": 4,
        "differing_samples": [2, 3],
    }


def test_mcu_build_cache_keeps_the_most_recently_used_programs_only(tmp_path, monkeypatch):
    from common.deploy import mcu_build

    monkeypatch.setenv("TRECX_MCU_HOME", str(tmp_path))
    for age, name in enumerate(["prog-e", "prog-d", "prog-c", "prog-b", "prog-a", "lib-x"]):
        info = tmp_path / "build" / name / "info.json"
        info.parent.mkdir(parents=True)
        info.write_text("{}")
        os.utime(info, (1e9 - age, 1e9 - age))  # prog-e is the newest
    (tmp_path / "build" / "prog-unfinished").mkdir()  # a build in progress has no info.json yet
    mcu_build._prune("prog", 2)
    assert sorted(p.name for p in (tmp_path / "build").iterdir() if p.is_dir()) == [
        "lib-x",
        "prog-d",
        "prog-e",
        "prog-unfinished",
    ]


def test_stage1_shares_split_stage1_where_it_leaves_the_base_models_path():
    from common.deploy.mcu_measure import stage1_shares

    def row(model, operator, macs, outputs, instructions):
        return {
            "model": model,
            "operator": operator,
            "macs": macs,
            "output_elements": outputs,
            "instructions": instructions,
        }

    shared = [("CONV_2D", 100, 10, 300.0), ("CONV_2D", 200, 10, 500.0)]
    rows = (
        [row("stage1", *op) for op in shared]
        + [row("stage1", "CONV_2D", 100, 5, 250.0), row("stage1", "(between operators)", 0, 0, 9.0)]
        + [row("base", *op) for op in shared]
        + [row("base", "CONV_2D", 700, 10, 1190.0), row("base", "(between operators)", 0, 0, 10.0)]
    )
    assert stage1_shares(rows) == {
        "backbone": {"instructions_pct": 40.0, "macs_pct": 30.0},
        "branch": {"instructions_pct": 12.5, "macs_pct": 10.0},
    }


def test_deploy_sh_killed_while_writing_leaves_the_earlier_results_whole(tmp_path):
    """deploy.sh at rho 0.5 over an earlier run's results at rho 0.8 (test.sh's summary beside them), killed
    between its two renames, every file written: the earlier results byte for byte once put back (as the next
    run does first), so no file was written outside the staged folder (a kill at each point of the staging
    machinery: tests/test_bad_input.py); the next run replaces them whole, keeping test.sh's file."""
    from scripts import assert_killed, kill_at, left_beside, snapshot

    from common import files

    write_cifar(tmp_path / "data", n_test=20, n_train_per_batch=4)
    out = tmp_path / "out"
    args = ["--data-dir", tmp_path / "data", "--results-dir", out, "--calibration-data", tmp_path / "data"]
    args += ["--calibration-samples", "8", "--kernels", "builtin"]
    assert run_deploy_sh(*args, "--rho", "0.8", cwd=tmp_path).returncode == 0
    (out / "summary.json").write_text("test.sh's")
    earlier = snapshot(out)
    assert_killed(run_deploy_sh(*args, "--rho", "0.5", cwd=tmp_path, **kill_at("mid-swap:1")))
    assert not out.exists() and len(left_beside(out)) == 2
    files.recover(out)  # what the next run does first
    assert snapshot(out) == earlier
    proc = run_deploy_sh(*args, "--rho", "0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "deploy.json").read_text())["rho"] == 0.5
    assert (out / "summary.json").read_text() == "test.sh's" and left_beside(out) == []
