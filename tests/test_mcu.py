"""Exported int8 models in TensorFlow Lite Micro with CMSIS-NN on an emulated Cortex-M4 (common/deploy/mcu.py).

Needs the Arm toolchain, qemu-system-arm and the TFLM tree that `bash install_mcu_toolchain.sh` installs;
without them the module is skipped. The first run on a machine builds TFLM for the M4 (2-11 minutes on 2
cores, cached under ~/.cache/trecx-mcu; `bash install_mcu_toolchain.sh --build cortex-m4:cmsis-nn` does it
ahead); then the module takes 25-80 s on 2 cores, mostly converting the models: two harness programs (a
small model built here; keyword spotting's pretrained trecx_ev stages and base model) and a few samples
each on the emulator.
"""

import os
import pathlib

import numpy as np
import pytest

from common.deploy import export, mcu, mcu_build, mcu_measure, runtime
from common.errors import UserError

pytestmark = pytest.mark.skipif(
    bool(mcu_build.missing_prerequisites()),
    reason="the MCU toolchain is not installed (run bash install_mcu_toolchain.sh): "
    + "; ".join(mcu_build.missing_prerequisites()),
)
CORE, KERNELS = "cortex-m4", "cmsis-nn"
# More (core, kernel set) pairs to check against the M4 with CMSIS-NN, e.g.
# TRECX_MCU_EXTRA=cortex-m4:reference,cortex-m7:cmsis-nn,cortex-m55:cmsis-nn (each builds TFLM once).
EXTRA = [tuple(pair.split(":", 1)) for pair in os.environ.get("TRECX_MCU_EXTRA", "").split(",") if ":" in pair]
N_TINY = 4
N_KWS = 6


def quiet(*_):
    pass


def litert_outputs(tflite_bytes, q_input):
    """{output position: int8 array} of one sample on LiteRT with its reference kernels."""
    interpreter = runtime.Runtime(kernels="reference").interpreter(tflite_bytes)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], q_input[None])
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"])[0] for d in interpreter.get_output_details()]


def litert_by_name(model, tflite_bytes, q_input):
    """{output name: int8} of one sample, named through the exported header's output positions."""
    values = litert_outputs(tflite_bytes, q_input)
    return {name: values[t.position] for name, t in model.outputs.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small int8 CNN (conv, depthwise conv, add, average pool, dense, softmax) exported as a base model."""
    import keras

    keras.utils.set_random_seed(0)  # the same model, hence the same cached program, in every session
    rng = np.random.default_rng(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(8, 1)(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.AveragePooling2D(4)(x)
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    calibration = rng.uniform(-1, 1, (64, 12, 12, 3)).astype(np.float32)
    data = export.to_tflite(model, calibration)
    folder = tmp_path_factory.mktemp("tiny_export")
    export.write_export(folder, "mcu_test", "tiny", {"int8": {"base": data}}, log=quiet)
    return {
        "dir": folder,
        "tflite": data,
        "x": rng.uniform(-1, 1, (N_TINY, 12, 12, 3)).astype(np.float32),
        "model": mcu.read_exported(folder, "base_int8"),
    }


@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    """Keyword spotting's pretrained trecx_ev stages and base model, exported to int8 C arrays."""
    from test_deploy import export_task  # the same cached export the deployment tests use

    exported = export_task("keyword_spotting")
    folder = tmp_path_factory.mktemp("kws_export")
    export.write_export(folder, "keyword_spotting", "trecx_ev", {"int8": exported["models"]["int8"]}, log=quiet)
    return {
        "dir": folder,
        "tflite": exported["models"]["int8"],
        "x": exported["x"][:N_KWS],
        "models": {m.name: m for m in mcu.exported_models(folder, "trecx_ev")},
    }


def test_missing_toolchain_is_one_message_naming_the_install_script(monkeypatch, tmp_path):
    monkeypatch.setenv("TRECX_MCU_HOME", str(tmp_path))
    with pytest.raises(UserError, match="TensorFlow Lite Micro.*bash install_mcu_toolchain.sh"):
        mcu.run_on_mcu(tmp_path, "trecx_ev", np.zeros((1, 4), np.float32), mcu.McuRun(rho=0.5))


def test_small_model_equals_litert_reference_bit_for_bit_and_counts_are_exact(tiny):
    probes = (1, 1000, 100000)
    result = mcu.run_on_mcu(
        tiny["dir"], None, tiny["x"], mcu.McuRun(core=CORE, kernels=KERNELS, probes=probes), log=quiet
    )
    q = tiny["model"].input.quantize(tiny["x"])
    for i in range(N_TINY):
        expected = litert_by_name(tiny["model"], tiny["tflite"], q[i])["ef"]
        np.testing.assert_array_equal(result.outputs["base"]["ef"][i], expected)
        assert result.model_classes["base"][i] == int(np.argmax(expected))
    # A hand-written loop of n (subs, bne) iterations between the markers: exactly 2n + 2 instructions
    # (the begin marker's return and the call of the end marker), and 2 with nothing between them.
    assert result.probes == {**{n: 2 * n + 2 for n in probes}, 0: 2}
    assert result.invocations == {"base": N_TINY} and result.ran["base"].all()
    assert (result.instructions["base"] > 10_000).all()
    assert 0 < result.arena_used_bytes["base"] < mcu.DEFAULT_ARENA_BYTES
    assert result.flash_bytes["base"] == len(tiny["tflite"])
    assert result.flash_bytes["program"] > result.flash_bytes["base"]


def test_counts_are_identical_across_runs_and_for_the_same_input(tiny):
    x = tiny["x"][[0, 1, 0]]
    first = mcu.run_on_mcu(tiny["dir"], None, x, mcu.McuRun(core=CORE, kernels=KERNELS), log=quiet)
    second = mcu.run_on_mcu(tiny["dir"], None, x, mcu.McuRun(core=CORE, kernels=KERNELS), log=quiet)
    np.testing.assert_array_equal(first.instructions["base"], second.instructions["base"])
    assert first.instructions["base"][0] == first.instructions["base"][2]
    assert first.total_instructions == second.total_instructions


def test_a_model_that_does_not_fit_its_arena_is_a_clear_error(tiny):
    with pytest.raises(UserError, match=r"model base does not fit its 2,048-byte arena"):
        mcu.run_on_mcu(
            tiny["dir"],
            None,
            tiny["x"],
            mcu.McuRun(core=CORE, kernels=KERNELS, samples=1, arena_bytes={"base": 2048}),
            log=quiet,
        )


def rho_splitting(kws):
    """A rho between the early-exit top scores of the samples, so that some exit and some do not."""
    ee = kws["models"]["stage1"].outputs["ee"]
    q = kws["models"]["stage1"].input.quantize(kws["x"])
    tops = sorted(
        int(litert_by_name(kws["models"]["stage1"], kws["tflite"]["stage1"], q[i])["ee"].max()) for i in range(N_KWS)
    )
    middle = N_KWS // 2
    assert tops[middle - 1] < tops[middle], "synthetic inputs give one early-exit score; no test"
    return ee.scale * ((tops[middle - 1] + tops[middle]) / 2 - ee.zero_point)


def test_keyword_spotting_early_exit_equals_litert_reference(kws):
    rho = rho_splitting(kws)
    result = mcu.run_on_mcu(
        kws["dir"], "trecx_ev", kws["x"], mcu.McuRun(rho=rho, core=CORE, kernels=KERNELS), log=quiet
    )
    models, tflite = kws["models"], kws["tflite"]
    q1 = models["stage1"].input.quantize(kws["x"])
    qb = models["base"].input.quantize(kws["x"])
    for i in range(N_KWS):
        stage1 = litert_by_name(models["stage1"], tflite["stage1"], q1[i])
        for name in ("ee", "tap"):
            np.testing.assert_array_equal(result.outputs["stage1"][name][i], stage1[name])
        exits = int(stage1["ee"].max() > result.threshold)
        assert result.exits[i] == 1 - exits
        if exits:
            assert result.classes[i] == int(np.argmax(stage1["ee"]))
        else:
            ef = litert_by_name(models["stage2"], tflite["stage2"], stage1["tap"])["ef"]
            np.testing.assert_array_equal(result.outputs["stage2"]["ef"][i], ef)
            assert result.classes[i] == int(np.argmax(ef))
        base = litert_by_name(models["base"], tflite["base"], qb[i])["ef"]
        np.testing.assert_array_equal(result.outputs["base"]["ef"][i], base)
        assert result.model_classes["base"][i] == int(np.argmax(base))
    assert set(result.exits) == {0, 1}
    # Stage 2 ran, and was counted on the MCU, exactly for the samples that did not exit.
    assert result.invocations == {"stage1": N_KWS, "stage2": int(np.sum(result.exits == 1)), "base": N_KWS}
    np.testing.assert_array_equal(result.ran["stage2"], result.exits == 1)
    assert (result.instructions["stage2"][result.exits == 0] == 0).all()
    assert (result.instructions["stage2"][result.exits == 1] > 0).all()
    assert (result.instructions["stage1"] > 0).all() and (result.instructions["base"] > 0).all()
    for name in ("stage1", "stage2", "base"):
        assert 0 < result.arena_used_bytes[name] < mcu.DEFAULT_ARENA_BYTES
        assert result.flash_bytes[name] == len(tflite[name])


def test_stage2_never_runs_when_every_sample_exits(kws):
    result = mcu.run_on_mcu(
        kws["dir"], "trecx_ev", kws["x"], mcu.McuRun(rho=0.0, core=CORE, kernels=KERNELS, samples=3), log=quiet
    )
    assert (result.exits == 0).all() and result.invocations["stage2"] == 0
    assert not result.ran["stage2"].any()


@pytest.mark.skipif(not EXTRA, reason="no TRECX_MCU_EXTRA: only the M4 with CMSIS-NN is checked")
@pytest.mark.parametrize("core,kernels", EXTRA or [(CORE, KERNELS)])
def test_other_cores_and_kernels_compute_the_same_int8_outputs(kws, core, kernels):
    rho = rho_splitting(kws)
    m4 = mcu.run_on_mcu(kws["dir"], "trecx_ev", kws["x"], mcu.McuRun(rho=rho, core=CORE, kernels=KERNELS), log=quiet)
    other = mcu.run_on_mcu(kws["dir"], "trecx_ev", kws["x"], mcu.McuRun(rho=rho, core=core, kernels=kernels), log=quiet)
    np.testing.assert_array_equal(other.exits, m4.exits)
    for name, outputs in m4.outputs.items():
        for output, values in outputs.items():
            np.testing.assert_array_equal(other.outputs[name][output], values, err_msg=f"{name} {output}")


def test_profiled_operators_are_the_models_and_add_up_to_the_invocation(tiny):
    from common.deploy.profile import operators

    plain = mcu.run_on_mcu(tiny["dir"], None, tiny["x"], mcu.McuRun(core=CORE, kernels=KERNELS), log=quiet)
    profiled = mcu.run_on_mcu(
        tiny["dir"], None, tiny["x"], mcu.McuRun(core=CORE, kernels=KERNELS, profile=True), log=quiet
    )
    ops = [name for name, _, _ in operators(tiny["tflite"])]
    assert list(profiled.layer_ops["base"]) == ops and plain.layer_ops == {}
    np.testing.assert_array_equal(profiled.outputs["base"]["ef"], plain.outputs["base"]["ef"])
    layers = profiled.layer_instructions["base"]
    assert layers.shape == (N_TINY, len(ops)) and (layers > 0).all()
    # The operators hold nearly all of an Invoke(): what is left is the interpreter's loop and the
    # profiler's hooks, which add a few dozen instructions per operator to the profiled run.
    overhead = profiled.instructions["base"] - plain.instructions["base"]
    assert ((overhead > 0) & (overhead < 40 * len(ops))).all()
    between = profiled.instructions["base"] - layers.sum(axis=1)
    assert ((between > 0) & (between < 60 * len(ops))).all()
    conv = ops.index("CONV_2D")
    assert (layers[:, conv] > 10 * layers[:, ops.index("SOFTMAX")]).all()


def test_deploy_sh_mcu_checks_the_emulated_core_against_litert_and_reports_instructions(tmp_path):
    import csv
    import json

    from test_deploy import run_deploy_sh

    from image_classification.synthetic import write_cifar

    k = 6
    write_cifar(tmp_path / "data", n_test=60, n_train_per_batch=20, seed=5)
    out = tmp_path / "out"
    proc = run_deploy_sh(
        "--data-dir",
        tmp_path / "data",
        "--results-dir",
        out,
        "--rho",
        "0.8",
        "--calibration-data",
        tmp_path / "data",
        "--calibration-samples",
        "40",
        "--kernels",
        "builtin",
        "--mcu",
        "cortex-m4",
        "--mcu-samples",
        k,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "deploy.json").read_text())
    (target,) = summary["mcu"]["targets"]
    assert (target["core"], target["kernels"], target["samples"]) == (CORE, KERNELS, k)
    assert target["agreement_with_litert_int8"] == {
        "exits": k,
        "classes": k,
        "base_classes": k,
        "samples": k,
        "differing_samples": [],
    }
    assert target["stage2_invocations"] == target["samples_not_exited"] == round((1 - target["exit_rate_samples"]) * k)
    counts = target["instructions"]
    assert counts["stage1"]["samples"] == counts["base"]["samples"] == k
    # Stage 2's count comes from the samples that ran it, or from a run without exits when none did.
    assert counts["stage2"]["samples"] == (target["samples_not_exited"] or min(k, mcu_measure.PROFILE_SAMPLES))
    for name in ("stage1", "stage2", "base"):
        assert 0 < counts[name]["min"] <= counts[name]["mean"] <= counts[name]["max"]
    e = summary["int8"]["exit_rate"]
    assert target["exit_rate_test"] == e and target["flops_saving_pct"] == summary["int8"]["mflops_saving_pct"]
    expected = counts["stage1"]["mean"] + (1 - e) * counts["stage2"]["mean"]
    assert target["expected_instructions"] == pytest.approx(expected)
    assert target["instruction_saving_pct"] == pytest.approx(100 * (1 - expected / counts["base"]["mean"]))
    assert set(target["arena_used_bytes"]) == {"stage1", "stage2", "base"}
    assert target["flash_bytes"]["program"] > sum(target["flash_bytes"][m] for m in ("stage1", "stage2", "base"))
    # The per-operator profile: every model's operators and the rest add up to its Invoke() count.
    with open(out / "mcu_layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for name in ("stage1", "stage2", "base"):
        mine = [row for row in rows if row["model"] == name]
        assert mine[-1]["operator"] == "(between operators)" and mine[0]["operator"] == "CONV_2D"
        assert sum(float(row["instructions_pct"]) for row in mine) == pytest.approx(100, abs=0.01)
        assert sum(float(row["instructions"]) for row in mine) == pytest.approx(counts[name]["mean"], rel=1e-3)
        assert sum(int(row["macs"]) for row in mine) > 0
    # Stage 1 = its backbone (the operators it shares with the base model's start) + its early-exit branch.
    shares = target["stage1_shares"]
    assert 0 < shares["backbone"]["macs_pct"] < 100 and shares["branch"]["instructions_pct"] > 0
    assert shares["backbone"]["instructions_pct"] + shares["branch"]["instructions_pct"] == pytest.approx(
        100 * counts["stage1"]["mean"] / counts["base"]["mean"], abs=0.1
    )
    # The cost model's prediction beside each count: the totals within 3 %, each operator within 10 %.
    predicted = target["predicted"]
    assert predicted["cost_model"] == "cortex-m4"
    for name in ("stage1", "stage2", "base"):
        assert predicted["instructions"][name] == pytest.approx(counts[name]["mean"], rel=0.03), name
        assert predicted["error_pct"][name] == pytest.approx(
            100 * (predicted["instructions"][name] / counts[name]["mean"] - 1)
        )
    operators = [row for row in rows if row["operator"] != "(between operators)"]
    assert operators and all(abs(float(row["prediction_error_pct"])) < 10 for row in operators)
    assert (out / "mcu_benefit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "deploy.md").read_text()
    assert (
        "not cycles" in text
        and f"| equal to LiteRT int8 (reference kernels): exits / classes / base classes | {k} / {k} / {k} of {k} |"
        in text
    )


def test_measure_target_counts_stage2_even_when_every_sample_exits(kws):
    x = kws["x"][:4]
    reference = mcu_measure.litert_reference(kws["tflite"], x, 0.0)
    summary, layers = mcu_measure.measure_target(
        mcu_measure.McuExport(kws["dir"], "trecx_ev", kws["tflite"], x, 0.0),
        CORE,
        KERNELS,
        reference,
        test_exit_rate=0.75,
        flops_saving_pct=30.0,
        log=quiet,
    )
    assert summary.exit_rate_samples == 1.0 and summary.stage2_invocations == 0
    assert summary.agreement_with_litert_int8["differing_samples"] == []
    # Stage 2's count then comes from a run in which it ran, and enters the expected count as a quarter.
    stage1, stage2 = summary.instructions["stage1"], summary.instructions["stage2"]
    assert stage2["samples"] == min(len(x), mcu_measure.PROFILE_SAMPLES) and stage2["min"] > 0
    assert summary.expected_instructions == pytest.approx(stage1["mean"] + 0.25 * stage2["mean"])
    assert {row["model"] for row in layers} == {"stage1", "stage2", "base"}


def test_install_mcu_toolchain_again_changes_nothing(tmp_path):
    """The install script over an installed toolchain: it finds the tools and the sources up to date."""
    import subprocess

    tflm = mcu_build.mcu_home() / "tflm"
    stamp = (tflm / ".trecx-sources").read_bytes()
    proc = subprocess.run(
        [
            "bash",
            str(pathlib.Path(__file__).resolve().parent.parent / "install_mcu_toolchain.sh"),
            "--skip-packages",
            "--home",
            str(mcu_build.mcu_home()),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "toolchain: arm-none-eabi-gcc" in proc.stdout and "TFLM sources: up to date" in proc.stdout
    assert (tflm / ".trecx-sources").read_bytes() == stamp


# ------------------------------------------------------------------------------------------------
# A damaged build cache: rebuilt where it can be, else one message naming what to delete


def test_a_truncated_plugin_or_program_is_rebuilt(tiny):
    first = mcu.run_on_mcu(tiny["dir"], None, tiny["x"], mcu.McuRun(core=CORE, kernels=KERNELS), log=quiet)
    lib = mcu_build.library(CORE, KERNELS, log=quiet)
    plugin = pathlib.Path(mcu_build.plugin(log=quiet))
    program = pathlib.Path(
        mcu_build.program(lib, [mcu._build_entry(tiny["model"], "standalone")], mcu.ARENA_POOL_BYTES, log=quiet).elf
    )
    for damaged in (plugin, program):
        damaged.write_bytes(damaged.read_bytes()[:1000])
    said = []
    again = mcu.run_on_mcu(tiny["dir"], None, tiny["x"], mcu.McuRun(core=CORE, kernels=KERNELS), log=said.append)
    np.testing.assert_array_equal(again.instructions["base"], first.instructions["base"])
    assert sum("is damaged" in line and "building it again" in line for line in said) == 2, said
    assert plugin.stat().st_size > 1000 and program.stat().st_size > 1000


def deploy_mcu(tmp_path, home):
    from test_deploy import run_deploy_sh

    return run_deploy_sh(
        "--rho", "0.5", "--mcu", "cortex-m4", "--data-dir", tmp_path / "nowhere", cwd=tmp_path, TRECX_MCU_HOME=str(home)
    )


def fake_tree(home, manifest):
    (home / "tflm").mkdir(parents=True)
    (home / "tflm" / ".trecx-sources").write_text("layout 2\n")
    (home / "tflm" / ".trecx-manifest").write_text(manifest)


def test_a_damaged_tflm_tree_is_one_message_before_any_work(tmp_path):
    fake_tree(tmp_path / "home", "tensorflow/lite/micro/tools/make/Makefile 1234\n")
    proc = deploy_mcu(tmp_path, tmp_path / "home")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert (
        f"the TensorFlow Lite Micro tree in {tmp_path / 'home' / 'tflm'} is damaged "
        "(tensorflow/lite/micro/tools/make/Makefile is missing)"
    ) in proc.stderr
    assert "bash install_mcu_toolchain.sh" in proc.stderr and "test samples" not in proc.stdout


def test_a_read_only_build_cache_is_called_read_only_before_any_work(tmp_path):
    from scripts import remount_read_only, tmpfs

    with tmpfs(tmp_path / "home", "1m") as home:
        fake_tree(home, "")
        remount_read_only(home)
        proc = deploy_mcu(tmp_path, home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the MCU build cache {home / 'build'} is read-only" in proc.stderr and "free some space" not in proc.stderr


def test_install_mcu_toolchain_names_a_truncated_tarball(tmp_path):
    import subprocess

    sources = tmp_path / "sources"
    sources.mkdir()
    tarball = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "third_party" / "tflm"
    if not (tarball / "tflite-micro.tar.gz").is_file():
        pytest.skip("the TFLM source tarballs (../shared/third_party/tflm) are not beside the repository")
    (sources / "tflite-micro.tar.gz").write_bytes((tarball / "tflite-micro.tar.gz").read_bytes()[:100_000])
    proc = subprocess.run(
        [
            "bash",
            str(pathlib.Path(__file__).resolve().parent.parent / "install_mcu_toolchain.sh"),
            "--skip-packages",
            "--sources",
            str(sources),
            "--home",
            str(tmp_path / "home"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{sources / 'tflite-micro.tar.gz'} is truncated or corrupt" in proc.stderr
    assert "tar:" not in proc.stderr and not (tmp_path / "home" / "tflm").exists()
