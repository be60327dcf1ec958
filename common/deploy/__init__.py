"""Deployable two-stage early exit: what `deploy.sh` builds, runs and measures.

Import the module you need; this package re-exports nothing.

- `export`: splits a T-RecX network at its tap into stage 1 (input -> early-exit softmax, feature map)
  and stage 2 (feature map -> final softmax), converts them and the base model to LiteRT in float32
  and int8, reads a flatbuffer back (weight bytes, builtin operators) and writes the models as
  .tflite files and C arrays for TensorFlow Lite Micro, with a manifest of them.
- `manifest`: what an export holds (`ExportedModel`: files, C symbol, operators, tensors; `TensorSpec`:
  a tensor with its int8 quantisation), written as export/manifest.json and read by everything downstream.
- `options`: deploy.sh's options and their defaults (`DeployOptions`), and the folders it reads and
  writes (`DeployFolders`); light: imports no TensorFlow, LiteRT or microcontroller code.
- `results`: what deploy.sh measures, as typed records (`DeploySummary` is deploy.json).
- `markdown`: deploy.md, the same records as Markdown, with how they were measured and the
  microcontroller section.
- `runtime`: LiteRT interpreters (`Runtime`: threads and kernel set), and the runners that execute a
  model one sample at a time as a microcontroller would: `EarlyExitRunner` runs stage 2 only when the
  early exit is not confident enough, and each sample is timed from its input tensor to its predicted
  class.
- `profile`: each operator of a model cut out as a model of its own and timed alone, to see where the
  time goes beside where the MACs go.
- `pipeline`: choosing rho on a validation split, measuring both precisions against the base model,
  writing deploy.json, deploy.md, the benefit figure and export/; `run_deploy` is the deploy command.
- `mcu`, `mcu_build` (and the C/C++ sources in `mcu_src/`): the exported int8 models linked with
  TensorFlow Lite Micro into a bare-metal program for an emulated Cortex-M (qemu-system-arm), run with
  the same early-exit loop, with executed instructions counted exactly around each invocation (and,
  profiled, around each operator).
- `mcu_measure`: `deploy.sh --mcu`: those runs on each emulated target checked against LiteRT's int8
  run sample for sample, and summarised (instructions per stage, expected count at the test set's exit
  rate against the FLOPs saving, arena and flash bytes, the per-operator profile).
- `cost_fit`: `fit-cost-model`: single-operator probes and the tasks' exported models measured on the
  emulated targets, and the per-operator instruction cost model (common/target_cost.py) fitted to them.
"""
