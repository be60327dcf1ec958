"""Building what the emulated microcontroller runs: prerequisites, TFLM library, counting plugin, harness.

Every build is cached under the build home (`$TRECX_MCU_HOME`, default ~/.cache/trecx-mcu; the TFLM tree
that install_mcu_toolchain.sh lays out is in its `tflm/`), in a folder named by a hash of everything
that goes into it (sources, flags, kernel list, models), and reused while that is unchanged:
- `library(core, kernels)`: TFLM's microlite library for one core and kernel set, with only the
  kernels of `OPS` (TFLM's own make, which downloads nothing in that tree);
- `plugin()`: the QEMU TCG plugin that counts executed instructions between two markers (host gcc);
- `program(lib, models, pool)`: the bare-metal harness (mcu_src/) linked with a set of models (the
  KEPT_PROGRAMS most recently used are kept).
Cores and kernel sets are table entries (`CORES`, `KERNEL_SETS`).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from common import environment, files
from common.errors import UserError
from common.progress import Progress

SRC_DIR = pathlib.Path(__file__).resolve().parent / "mcu_src"
INSTALL_HINT = "bash install_mcu_toolchain.sh (from the repository root; see its --help)"
TOOLS = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-g++": "gcc-arm-none-eabi",
    "arm-none-eabi-nm": "gcc-arm-none-eabi",
    "arm-none-eabi-objdump": "gcc-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "gcc": "gcc",
    "make": "make",
}
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
BUILD_VERSION = 1  # bump when the build steps change, to retire old caches
PROGRESS_POLL_S = 1.0  # how often a build's progress is counted
# TFLM's library for one core on 2 cores, idle to busy (measured: docs/microcontroller.md), for the first build.
BUILD_MINUTES = "2-11"
KEPT_PROGRAMS = 32  # harness programs (one per set of exported models and target) kept, most recently used


@dataclasses.dataclass(frozen=True)
class Core:
    """One emulated core: its QEMU board, TFLM's TARGET_ARCH, extra make variables, and where the
    harness puts its vector table (where the core reads it at reset), what a device keeps in flash and
    what it keeps in RAM ((origin, length) on that board)."""

    board: str
    arch: str
    make_vars: tuple = ()
    vectors: tuple = (0x00000000, 0x00000400)
    flash: tuple = (0x00000400, 0x001FFC00)
    ram: tuple = (0x00200000, 0x00200000)


_PLATFORM = "-DTF_LITE_MCU_DEBUG_LOG -mthumb -funsigned-char -mlittle-endian -fomit-frame-pointer --specs=rdimon.specs"
CORES = {
    # MPS2 boards: 4 MB of SSRAM at 0x0 hold code and data; TFLM's qemu target builds soft float.
    "cortex-m4": Core("mps2-an386", "cortex-m4"),
    "cortex-m7": Core("mps2-an500", "cortex-m7"),
    # SSE-300 (boots Secure): vectors in the ITCM (0x10000000), code and constants in the 2 MB SRAM
    # (0x11000000), data in the DDR (0x70000000). CMSIS-NN uses MVE only with hard float.
    "cortex-m55": Core(
        "mps3-an547",
        "cortex-m55",
        (f"PLATFORM_FLAGS=-mcpu=cortex-m55 -mfloat-abi=hard -mfpu=auto {_PLATFORM}",),
        (0x10000000, 0x00000400),
        (0x11000000, 0x00200000),
        (0x70000000, 0x00400000),
    ),
}
KERNEL_SETS = {"cmsis-nn": "cmsis_nn", "reference": ""}  # name -> TFLM's OPTIMIZED_KERNEL_DIR

# Builtin operator -> (MicroMutableOpResolver method, TFLM kernel sources). The library holds all of
# them; a program registers those its models list.
OPS = {
    "ADD": ("AddAdd", ("add.cc", "add_common.cc")),
    "AVERAGE_POOL_2D": ("AddAveragePool2D", ("pooling.cc", "pooling_common.cc")),
    "CONCATENATION": ("AddConcatenation", ("concatenation.cc",)),
    "CONV_2D": ("AddConv2D", ("conv.cc", "conv_common.cc")),
    "DEPTHWISE_CONV_2D": ("AddDepthwiseConv2D", ("depthwise_conv.cc", "depthwise_conv_common.cc")),
    "DEQUANTIZE": ("AddDequantize", ("dequantize.cc", "dequantize_common.cc")),
    "FULLY_CONNECTED": ("AddFullyConnected", ("fully_connected.cc", "fully_connected_common.cc")),
    "MAX_POOL_2D": ("AddMaxPool2D", ("pooling.cc", "pooling_common.cc")),
    "MEAN": ("AddMean", ("reduce.cc", "reduce_common.cc")),
    "PAD": ("AddPad", ("pad.cc", "pad_common.cc")),
    "QUANTIZE": ("AddQuantize", ("quantize.cc", "quantize_common.cc")),
    "RESHAPE": ("AddReshape", ("reshape.cc", "reshape_common.cc")),
    "SOFTMAX": ("AddSoftmax", ("softmax.cc", "softmax_common.cc")),
    "STRIDED_SLICE": ("AddStridedSlice", ("strided_slice.cc", "strided_slice_common.cc")),
}
COMMON_KERNEL_SRCS = ("kernel_util.cc",)


@dataclasses.dataclass(frozen=True)
class Library:
    """TFLM's microlite library for one core and kernel set, and the flags a program is compiled with."""

    core: str
    kernels: str
    key: str
    lib: str
    cxxflags: tuple
    ccflags: tuple
    includes: tuple
    libs: tuple


@dataclasses.dataclass(frozen=True)
class HarnessModel:
    """One model of a harness program: its C array (symbol, source, header), builtin ops, role
    ("standalone", "stage1", "stage2") and the positions the harness reads; for stage 1 also its
    early exit's output and the tap's output."""

    name: str
    role: str
    symbol: str
    source: str
    header: str
    ops: tuple
    input_position: int
    ee_position: int = -1
    tap_position: int = -1


@dataclasses.dataclass(frozen=True)
class Program:
    """A linked harness: its ELF, the board and core it runs on, the marker addresses the counting plugin
    watches, and the flash and RAM bytes it holds (of each model, by name, too)."""

    elf: str
    board: str
    core: str
    kernels: str
    begin: int
    end: int
    layer_begin: int
    layer_end: int
    flash_bytes: int
    ram_bytes: int
    model_bytes: dict


_Record = TypeVar("_Record")
_Products = Callable[[dict[str, Any]], Sequence[str | os.PathLike]]  # a build's info -> the files it made


def _record(kind: type[_Record], info: dict[str, Any]) -> _Record:
    """A build's info.json dict as its dataclass (JSON's lists as tuples)."""
    return kind(**{key: tuple(value) if isinstance(value, list) else value for key, value in info.items()})


def mcu_home() -> pathlib.Path:
    """The build home: $TRECX_MCU_HOME, else ~/.cache/trecx-mcu."""
    return pathlib.Path(os.environ.get("TRECX_MCU_HOME") or pathlib.Path.home() / ".cache" / "trecx-mcu")


def tflm_root() -> pathlib.Path:
    return mcu_home() / "tflm"


def missing_prerequisites() -> list[str]:
    """What the MCU path lacks on this machine (tools with their packages, the TFLM tree); [] when ready."""
    missing = [f"{tool} (package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not (tflm_root() / ".trecx-sources").is_file():
        missing.append(f"the TensorFlow Lite Micro tree in {tflm_root()}")
    return missing


def tree_damage() -> str | None:
    """None when every file of the TFLM tree's manifest (written by install_mcu_toolchain.sh) is there with
    its size, else what is wrong with the first that is not."""
    manifest = tflm_root() / ".trecx-manifest"
    if not manifest.is_file():
        return f"{manifest.name} is missing"
    for line in manifest.read_text(errors="replace").splitlines():
        name, _, size = line.rpartition(" ")
        path = tflm_root() / name
        if not path.is_file():
            return f"{name} is missing"
        if str(path.stat().st_size) != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
    return None


def check_prerequisites() -> None:
    """Raise one UserError naming everything missing, or what is damaged in the TFLM tree, and the fix."""
    missing = missing_prerequisites()
    if missing:
        raise UserError(
            "running models on an emulated microcontroller needs "
            + "; ".join(missing)
            + f". Install them with: {INSTALL_HINT}"
        )
    damage = tree_damage()
    if damage:
        raise UserError(
            f"the TensorFlow Lite Micro tree in {tflm_root()} is damaged ({damage}); lay it out again "
            f"with: {INSTALL_HINT}"
        )


def check_cache_writable() -> None:
    """UserError when the build cache cannot be written (builds and the harness's outputs go there)."""
    build = mcu_home() / "build"
    try:
        build.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=build, prefix=".write-check."):
            pass
    except OSError as err:
        read_only = err.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
        problem = "is read-only" if read_only else f"cannot be written ({err.strerror})"
        raise UserError(
            f"the MCU build cache {build} {problem}; make it writable, or set TRECX_MCU_HOME to a "
            f"writable folder and run {INSTALL_HINT} there"
        ) from None


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _version(tool: str) -> str:
    """A tool's version line (part of the cache keys)."""
    return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.split("\n")[0]


def _sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _file_digest(paths: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    return [(pathlib.Path(p).name, _sha256(p)) for p in paths]


def _generator_python(folder: pathlib.Path) -> dict[str, str]:
    """The environment for TFLM's make: its makefiles run `python3 generate_cc_arrays.py ...`, which imports
    NumPy and Pillow, so `python3` there is this interpreter, checked to have both. A script, not a link: a
    link to a virtual environment's python3 would start the base Python, without the environment's packages."""
    environment.require_modules(environment.TFLM_GENERATOR_MODULES, "TFLM's build (its make runs Python generators)")
    shim = folder / "python"
    shim.mkdir(exist_ok=True)
    files.write_text(shim / "python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python3").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(
    command: Sequence[str | os.PathLike],
    log_file: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    what: str = "build step",
    progress: tuple[str, int, Callable[[], int]] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run a command, appending its output to log_file; a UserError with the log's last lines and the fix
    if it fails. `progress`: (label, total, count()) shows count() of total while it runs."""
    with open(log_file, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(str(c) for c in command) + "\n")
        log.flush()
        process = subprocess.Popen([str(c) for c in command], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        if progress:
            label, total, count = progress
            bar = Progress(label, total)
            while process.poll() is None:
                time.sleep(PROGRESS_POLL_S)
                bar.advance(count() - bar.done)
            bar.finish()
        returncode = process.wait()
    if returncode != 0:
        tail = pathlib.Path(log_file).read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
        raise UserError(
            f"{what} failed (exit {returncode}); the end of its log {log_file}:\n  "
            + "\n  ".join(tail)
            + "\nThe TFLM sources were checked intact against their manifest before the build: fix what the log "
            "names, then run the same command again"
        )


class _Lock:
    """An exclusive lock on a file, so that two processes never build the same folder at once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)

    def __enter__(self) -> _Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _stamp(paths: Iterable[str | os.PathLike]) -> dict[str, list]:
    """{path: [size, sha256]} of a build's products, kept in its info.json to check them on each use."""
    return {str(path): [pathlib.Path(path).stat().st_size, _sha256(path)] for path in paths}


def _build_damage(info_file: pathlib.Path, products: _Products) -> str | None:
    """None when the build recorded in `info_file` is whole, else what is wrong: a damaged info.json, or a
    product (`products(info)`) missing or not the size and hash stamped when it was built."""
    try:
        info = json.loads(info_file.read_text())
        stamped = info.pop("stamp")
        if set(stamped) != {str(path) for path in products(info)}:
            return "its record names other files"
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{info_file.name} is damaged ({err})"
    for path, (size, digest) in stamped.items():
        if not pathlib.Path(path).is_file():
            return f"{path} is missing"
        if pathlib.Path(path).stat().st_size != size or _sha256(path) != digest:
            return f"{path} is not the file that was built"
    return None


def _cached_build(
    kind: str,
    key: str,
    build: Callable[[pathlib.Path], dict[str, Any]],
    products: _Products,
    log: Callable[[str], None],
    resume: bool = False,
) -> dict[str, Any]:
    """The info dict of a cached build, building it (under a lock) into its folder when absent; an
    interrupted build starts afresh, or with `resume` (make's own builds) continues where it stopped. The
    files `products(info)` names are stamped (size and hash) and checked on each use: a damaged build is
    deleted and built again. Each use marks the build as recently used (its info.json's time), for `_prune`."""
    folder = mcu_home() / "build" / f"{kind}-{key}"
    info_file = folder / "info.json"
    with _Lock(mcu_home() / "build" / f".{kind}-{key}.lock"):
        damage = _build_damage(info_file, products) if info_file.is_file() else None
        if damage:
            log(f"the cached {kind} build in {folder} is damaged ({damage}); building it again")
            try:
                shutil.rmtree(folder)
            except OSError as err:
                raise UserError(
                    f"the cached {kind} build in {folder} is damaged ({damage}) and cannot be deleted "
                    f"({err.strerror}); delete {folder} and run again"
                ) from None
        if not info_file.is_file():
            if folder.exists() and not resume:
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            log(f"building {kind} in {folder}")
            info = build(folder)
            files.write_text(info_file, json.dumps({**info, "stamp": _stamp(products(info))}, indent=1))
        info_file.touch()
    info = json.loads(info_file.read_text())
    info.pop("stamp")
    return info


def _prune(kind: str, keep: int) -> None:
    """Delete all but the `keep` most recently used finished builds of `kind` (each under its lock):
    every deploy.sh --mcu run links new models, so harness programs would otherwise pile up."""
    finished = sorted(mcu_home().joinpath("build").glob(f"{kind}-*/info.json"), key=lambda p: p.stat().st_mtime)
    for info_file in finished[:-keep] if keep > 0 else finished:
        with _Lock(mcu_home() / "build" / f".{info_file.parent.name}.lock"):
            shutil.rmtree(info_file.parent, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# The TFLM library


def kernel_sources(kernels: str) -> list[str]:
    """TFLM kernel sources (relative to the TFLM root) of every op in OPS, specialised for a kernel set:
    a file of the optimised kernel folder replaces the reference file of the same name."""
    base = "tensorflow/lite/micro/kernels"
    optimized = KERNEL_SETS[kernels]
    names = dict.fromkeys(COMMON_KERNEL_SRCS + tuple(src for _, srcs in OPS.values() for src in srcs))
    return [
        f"{base}/{optimized}/{name}"
        if optimized and (tflm_root() / base / optimized / name).is_file()
        else f"{base}/{name}"
        for name in names
    ]


def _check_choice(core: str, kernels: str) -> None:
    if core not in CORES:
        raise UserError(f"unknown core {core!r}; choose one of {', '.join(CORES)}")
    if kernels not in KERNEL_SETS:
        raise UserError(f"unknown kernel set {kernels!r}; choose one of {', '.join(KERNEL_SETS)}")


def _make_vars(core: str, kernels: str, gen: str | os.PathLike) -> list[str]:
    spec = CORES[core]
    # release_with_logs: NDEBUG, so no debug checks run inside the kernels' loops (TFLM's make says it
    # is the build for profiling and benchmarking); error strings stay, and with them the profiler hooks.
    values = [
        "TARGET=cortex_m_qemu",
        f"TARGET_ARCH={spec.arch}",
        f"BASE_GENDIR={gen}",
        "BUILD_TYPE=release_with_logs",
        *spec.make_vars,
        f"MICROLITE_CC_KERNEL_SRCS={' '.join(kernel_sources(kernels))}",
    ]
    return values + ([f"OPTIMIZED_KERNEL_DIR={KERNEL_SETS[kernels]}"] if KERNEL_SETS[kernels] else [])


def library(core: str = "cortex-m4", kernels: str = "cmsis-nn", log: Callable[[str], None] = print) -> Library:
    """The cached TFLM microlite `Library` for `core` and `kernels`."""
    _check_choice(core, kernels)
    check_prerequisites()
    root = tflm_root()
    stamp = (root / ".trecx-sources").read_text()
    key = f"{core}-{kernels}-" + _digest(
        BUILD_VERSION, stamp, _make_vars(core, kernels, "GEN"), _version("arm-none-eabi-gcc")
    )

    def build(folder: pathlib.Path) -> dict[str, Any]:
        gen = folder / "gen"
        make = ["make", "-f", MAKEFILE, *_make_vars(core, kernels, gen)]
        env = _generator_python(folder)
        printed = subprocess.run(
            make
            + [
                "print-CXXFLAGS",
                "print-CCFLAGS",
                "print-INCLUDES",
                "print-GENDIR",
                "print-MICROLITE_LIB_NAME",
                "print-MICROLITE_LIBS",
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        found = dict(
            line.split("=", 1)
            for line in printed.stdout.splitlines()
            if "=" in line and " " not in line.split("=", 1)[0]
        )
        if printed.returncode != 0 or "GENDIR" not in found:
            raise UserError(
                f"TFLM's make could not configure {core}/{kernels} ({printed.stderr.strip()[-500:]}); the TFLM "
                "sources were checked intact against their manifest: fix what the message names, then run the same "
                "command again"
            )
        planned = subprocess.run(make + ["-n", "microlite"], cwd=root, env=env, capture_output=True, text=True).stdout
        total = sum(1 for line in planned.splitlines() if " -c " in line)
        log(
            f"building TFLM for {core} with {kernels} kernels: {total} files, about {BUILD_MINUTES} minutes on "
            f"2 cores, once; log: {folder / 'build.log'}"
        )
        objects = pathlib.Path(found["GENDIR"])
        _run(
            make + [f"-j{os.cpu_count() or 2}", "microlite"],
            folder / "build.log",
            cwd=root,
            env=env,
            what="TFLM build",
            progress=(f"TFLM {core} {kernels}: files compiled", total, lambda: sum(1 for _ in objects.rglob("*.o"))),
        )
        includes = [
            f"-I{p if os.path.isabs(p) else root / p}" for p in (flag[2:] for flag in found["INCLUDES"].split()) if p
        ]
        return {
            "core": core,
            "kernels": kernels,
            "key": key,
            "lib": str(pathlib.Path(found["GENDIR"]) / "lib" / found["MICROLITE_LIB_NAME"]),
            "cxxflags": found["CXXFLAGS"].split(),
            "ccflags": found["CCFLAGS"].split(),
            "includes": includes,
            "libs": found.get("MICROLITE_LIBS", "-lm").split(),
        }

    return _record(Library, _cached_build("lib", key, build, lambda info: [info["lib"]], log, resume=True))


# ------------------------------------------------------------------------------------------------
# The plugin and the harness program


def plugin(log: Callable[[str], None] = print) -> str:
    """Path of the cached instruction-counting QEMU plugin (a shared object built with the host gcc)."""
    check_prerequisites()
    sources = [SRC_DIR / "insn_counter.c", SRC_DIR / "qemu_plugin_api.h"]
    key = _digest(BUILD_VERSION, _file_digest(sources), _version("gcc"))

    def build(folder: pathlib.Path) -> dict[str, str]:
        target = folder / "insn_counter.so"
        _run(
            [
                "gcc",
                "-O2",
                "-shared",
                "-fPIC",
                "-fvisibility=hidden",
                "-Wall",
                "-Wextra",
                "-I",
                SRC_DIR,
                "-o",
                target,
                sources[0],
            ],
            folder / "build.log",
            what="plugin build",
        )
        return {"plugin": str(target)}

    return _cached_build("plugin", key, build, lambda info: [info["plugin"]], log)["plugin"]


def _models_header(models: Sequence[HarnessModel], pool_bytes: int) -> str:
    """trecx_models.h: the model table, the op count and the op registrations of one program."""
    ops = sorted({op for model in models for op in model.ops})
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise UserError(
            f"the models use operators the MCU harness does not build: {', '.join(unknown)} "
            f"(known: {', '.join(OPS)}); add them to OPS in {__name__}"
        )
    roles = {"standalone": 0, "stage1": 1, "stage2": 2}
    lines = [
        "// Generated by common/deploy/mcu_build.py (T-RecX): the models of one harness program.",
        f"#define TRECX_MODEL_COUNT {len(models)}",
        f"#define TRECX_OP_COUNT {len(ops)}",
        f"#define TRECX_ARENA_POOL_BYTES {int(pool_bytes)}u",
        "#define TRECX_ADD_OPS(r) do { " + " ".join(f"r.{OPS[op][0]}();" for op in ops) + " } while (0)",
    ]
    lines += [f"extern const unsigned char {model.symbol}[];" for model in models]
    lines.append("static const TrecxModel kModels[TRECX_MODEL_COUNT] = {")
    for model in models:
        lines.append(
            f'  {{"{model.name}", {model.symbol}, {roles[model.role]}, {model.input_position}, '
            f"{model.ee_position}, {model.tap_position}}},"
        )
    return "\n".join(lines + ["};", ""])


def _sections(elf: str | os.PathLike) -> list[tuple[str, int, int]]:
    """[(name, address, size)] of an ELF's allocated sections (arm-none-eabi-objdump -h)."""
    text = subprocess.run(["arm-none-eabi-objdump", "-h", elf], capture_output=True, text=True, check=True).stdout
    lines = text.splitlines()
    sections = []
    for row, flags in zip(lines, lines[1:]):
        parts = row.split()
        if len(parts) >= 7 and parts[0].isdigit() and "ALLOC" in flags:
            sections.append((parts[1], int(parts[3], 16), int(parts[2], 16)))
    return sections


def _symbols(elf: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """{name: (address, size)} of an ELF's defined symbols (arm-none-eabi-nm -S)."""
    text = subprocess.run(["arm-none-eabi-nm", "-S", elf], capture_output=True, text=True, check=True).stdout
    symbols = {}
    for row in (line.split() for line in text.splitlines()):
        if len(row) == 4:
            symbols[row[3]] = (int(row[0], 16), int(row[1], 16))
        elif len(row) == 3:
            symbols.setdefault(row[2], (int(row[0], 16), 0))
    return symbols


def program(
    lib: Library, models: Sequence[HarnessModel], pool_bytes: int, log: Callable[[str], None] = print
) -> Program:
    """The cached harness `Program` for `models` (`HarnessModel`s) on the `Library` `lib`. `pool_bytes`:
    the static arena pool the models' arenas come from."""
    header = _models_header(models, pool_bytes)
    harness = sorted(SRC_DIR.glob("*"))
    exported = [pathlib.Path(path) for m in models for path in (m.source, m.header)]
    key = f"{lib.core}-{lib.kernels}-" + _digest(
        BUILD_VERSION, lib.key, header, _file_digest(harness), _file_digest(exported)
    )
    spec = CORES[lib.core]

    def build(folder: pathlib.Path) -> dict[str, Any]:
        build_log = folder / "build.log"
        files.write_text(folder / "trecx_models.h", header)
        layout = {
            f"@{region.upper()}_{field}@": value
            for region in ("vectors", "flash", "ram")
            for field, value in zip(("ORIGIN", "LENGTH"), getattr(spec, region))
        }
        script = (SRC_DIR / "link.ld.in").read_text()
        for field, value in layout.items():
            script = script.replace(field, f"0x{value:08x}")
        files.write_text(folder / "link.ld", script)
        for path in exported:
            shutil.copyfile(path, folder / path.name)
        cxx = ["arm-none-eabi-g++", *lib.cxxflags, *lib.includes, f"-I{folder}", "-O2"]
        cc = ["arm-none-eabi-gcc", *lib.ccflags, "-O2"]
        objects = []
        for source, compiler in [
            (SRC_DIR / "harness.cc", cxx),
            (SRC_DIR / "startup.c", cc),
            (SRC_DIR / "markers.S", cc),
        ] + [(folder / pathlib.Path(m.source).name, cxx) for m in models]:
            objects.append(folder / (source.name + ".o"))
            _run([*compiler, "-c", source, "-o", objects[-1]], build_log, what=f"compiling {source.name}")
        elf = folder / "harness.elf"
        _run(
            [
                "arm-none-eabi-g++",
                *lib.cxxflags,
                "-nostartfiles",
                "-T",
                folder / "link.ld",
                "-Wl,--gc-sections",
                "-Wl,--no-warn-rwx-segments",
                f"-Wl,-Map={folder / 'harness.map'}",
                *objects,
                lib.lib,
                *lib.libs,
                "-o",
                elf,
            ],
            build_log,
            what="linking the harness",
        )
        symbols = _symbols(elf)
        sections = _sections(elf)
        flash = sum(
            size
            for name, address, size in sections
            if name == ".data"
            or any(origin <= address < origin + length for origin, length in (spec.vectors, spec.flash))
        )
        return {
            "elf": str(elf),
            "board": spec.board,
            "core": lib.core,
            "kernels": lib.kernels,
            **{
                key: symbols[f"trecx_{marker}"][0] & ~1
                for key, marker in (
                    ("begin", "mark_begin"),
                    ("end", "mark_end"),
                    ("layer_begin", "layer_begin"),
                    ("layer_end", "layer_end"),
                )
            },
            "flash_bytes": flash,
            "ram_bytes": sum(
                size for name, address, size in sections if spec.ram[0] <= address < spec.ram[0] + spec.ram[1]
            ),
            "model_bytes": {m.name: symbols[m.symbol][1] for m in models},
        }

    info = _record(Program, _cached_build("prog", key, build, lambda info: [info["elf"]], log))
    _prune("prog", KEPT_PROGRAMS)
    return info
