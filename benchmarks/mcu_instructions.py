"""Executed instructions of the deployed int8 models on emulated Cortex-M cores, against FLOPs.

For each task, the pretrained trecx_ev model is split and exported in int8 (as deploy.sh does, calibrated
on synthetic inputs in the task's input range), linked with TensorFlow Lite Micro into a bare-metal
program, and run on qemu-system-arm for a few synthetic samples at rho = 0 (every sample leaves at the
early exit) and rho = 1 (every sample runs both stages), beside the base model. It prints instructions
per sample of stage 1, stage 2 and the base model (mean and range), and the instruction saving of a
sample that exits against the base model beside the FLOPs saving. These are instructions counted
exactly on an emulator, not cycles. Needs `bash install_mcu_toolchain.sh` (and, per core and kernel
set, one TFLM build: 4-9 minutes on 2 cores, cached).

Usage, from the repository root:
  python3 -m benchmarks.mcu_instructions [--tasks ...] [--cores cortex-m4:cmsis-nn,...] [--samples 5]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path


def count(export_dir, inputs, rho, core, kernels):
    from common.deploy import mcu

    return mcu.run_on_mcu(export_dir, "trecx_ev", inputs, rho=rho, core=core, kernels=kernels, log=lambda *_: None)


def main(argv=None):
    from common.tasks import task_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="*", default=list(task_names()), choices=task_names())
    parser.add_argument("--cores", default="cortex-m4:cmsis-nn",
                        help="comma-separated CORE:KERNELS pairs, e.g. cortex-m4:cmsis-nn,cortex-m4:reference,"
                             "cortex-m7:cmsis-nn,cortex-m55:cmsis-nn (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=5, help="synthetic samples per task (default: %(default)s)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no start-up chatter
    pairs = [tuple(pair.split(":", 1)) for pair in args.cores.split(",")]

    from common import flops
    from common.deploy.export import export_models, write_export
    from common.native_logs import import_tensorflow_quietly
    from common.weights import load_nets
    from tests.synthetic_inputs import model_inputs

    import_tensorflow_quietly()
    print("| task | core, kernels | stage 1 | stage 2 | base | instruction saving at exit | FLOPs saving | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for task in args.tasks:
        nets = load_nets(task, "pretrained", None, ["base", "trecx_ev"])
        calibration, _ = model_inputs(task, 200, seed=1)
        inputs, _ = model_inputs(task, args.samples, seed=2)
        ee_mflops = flops.path_mflops(nets["trecx_ev"].model)[0]
        base_mflops = flops.path_mflops(nets["base"].model)[0]
        with tempfile.TemporaryDirectory(prefix="mcu_instructions_") as tmp:
            models = export_models(nets["trecx_ev"], nets["base"], calibration, log=lambda *_: None)
            write_export(Path(tmp), task, "trecx_ev", {"int8": models["int8"]}, log=lambda *_: None)
            for core, kernels in pairs:
                exited = count(tmp, inputs, 0.0, core, kernels).instructions
                both = count(tmp, inputs, 1.0, core, kernels).instructions
                stage1, stage2, base = exited["stage1"], both["stage2"], exited["base"]

                def cell(values):
                    return f"{values.mean() / 1e6:.3f} M ({values.min():,}-{values.max():,})"

                saving = 1.0 - stage1.mean() / base.mean()
                flops_saving = 1.0 - ee_mflops / base_mflops
                print(f"| {task} | {core}, {kernels} | {cell(stage1)} | {cell(stage2)} | {cell(base)} | "
                      f"{100 * saving:.1f} % | {100 * flops_saving:.1f} % | {saving / flops_saving:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
