"""What deploy.sh measures, as typed results: deploy.json is `DeploySummary.to_json()`, and deploy.md
(common/deploy/markdown.py) reads the same objects, so no result is read back through string keys.

Homogeneous maps (sizes per model part, latency statistics, instruction statistics per model) stay
dicts of numbers; every record with fields of its own is a dataclass here. A field marked `OPTIONAL`
is left out of the JSON when it is None (what a run without a target or without --mcu does not have).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from common.records import OPTIONAL, to_json


@dataclasses.dataclass(frozen=True)
class PrecisionResult:
    """One precision's exported models on the test set at rho, beside the base model.

    size_kb, weights_kb: per part (stage1, stage2, base); latencies: {"mean", "p50", "p99"} ms per sample;
    savings in % of the base model; tap_transfer: "direct" or "requantized".
    """

    size_kb: dict[str, float]
    weights_kb: dict[str, float]
    accuracy: float
    base_accuracy: float
    exit_rate: float
    mflops: float
    base_mflops: float
    mflops_saving_pct: float
    latency_ms: dict[str, float]
    base_latency_ms: dict[str, float]
    latency_saving_pct: float
    latency_over_flops_saving: float | None
    stage2_invocations: int
    tap_transfer: str
    full_path_latency_ms: dict[str, float]


@dataclasses.dataclass(frozen=True)
class FlopsChoice:
    """The rho FLOPs would have chosen, beside one chosen in a target's instructions."""

    rho: float
    accuracy: float
    flops_reduction_pct: float
    instruction_reduction_pct: float
    exit_rate: float


@dataclasses.dataclass(frozen=True)
class RhoChoice:
    """rho chosen on the validation split: the cheapest within `drop` points of the base model there, in
    `chosen_in` ("MFLOPs" or "instructions on TARGET"); `reduction_pct` is its saving in that currency.
    met: whether any rho reached the accuracy (else the most accurate one). With a target: its
    instructions and saving, whether it saves anything, and the FLOPs choice beside it."""

    num_samples: int
    base_accuracy: float
    target_accuracy: float
    drop: float
    accuracy: float
    mflops: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    instructions: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    reduction_pct: float = 0.0
    rho: float = 1.0
    met: bool = False
    flops_reduction_pct: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    instruction_reduction_pct: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    exit_rate: float | None = dataclasses.field(default=None, metadata=OPTIONAL)
    chosen_in: str = "MFLOPs"
    saves: bool | None = dataclasses.field(default=None, metadata=OPTIONAL)
    flops_choice: FlopsChoice | None = dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class TargetCostResult:
    """The deployed models' predicted instructions on the target (common.target_cost) at the int8 test
    exit rate, and whether early exit pays there: deploy is "early exit" or "base model"; message says
    why, when it does not pay."""

    target: str
    instructions: dict[str, float]
    break_even_exit_rate: float
    exit_rate: float
    expected_instructions: float
    instruction_saving_pct: float
    saves: bool
    deploy: str
    message: str | None = dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class PredictedCounts:
    """A target's cost model beside the emulator: its instructions of stage 1, stage 2, base and the
    expected count per sample, each with its error (%) against the count, and its predicted saving."""

    cost_model: str
    instructions: dict[str, float]
    error_pct: dict[str, float]
    instruction_saving_pct: float


@dataclasses.dataclass(frozen=True)
class McuTargetResult:
    """One emulated target's run of the int8 export (common/deploy/mcu_measure.py): agreement with
    LiteRT, instructions per model (stats: mean, min, max, samples), the expected count and saving at
    the test set's exit rate, memory, where stage 1's instructions go, and the cost model's prediction."""

    core: str
    kernels: str
    board: str
    samples: int
    agreement_with_litert_int8: dict[str, Any]
    exit_rate_samples: float
    stage2_invocations: int
    samples_not_exited: int
    instructions: dict[str, dict | None]
    early_exit_instructions_samples: dict | None
    exit_rate_test: float
    expected_instructions: float
    instruction_saving_pct: float
    flops_saving_pct: float
    instruction_over_flops_saving: float | None
    arena_used_bytes: dict[str, int]
    flash_bytes: dict[str, int]
    ram_bytes: int
    stage1_shares: dict[str, dict[str, float]]
    predicted: PredictedCounts | None = dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class McuResults:
    """Every target of deploy.sh --mcu on the first `samples` test samples; figure_target: the target
    whose instructions mcu_benefit.png draws."""

    samples: int
    note: str
    targets: list[McuTargetResult]
    figure_target: str


@dataclasses.dataclass(frozen=True)
class DeployData:
    """What a deployment read, so that its results are never taken for another test set's: the models'
    source (pretrained or trained), the test set folder (its `num_samples` samples are the summary's), the
    folder rho was chosen on (None when given) and the int8 calibration inputs, how many and where from
    (`calibration_from`: "the training split" or "the test-layout folder" of `calibration`). Folders are
    absolute paths."""

    models: str
    test: str
    validation: str | None
    calibration: str
    calibration_from: str
    calibration_samples: int


@dataclasses.dataclass(frozen=True)
class DeploySummary:
    """deploy.json: one T-RecX model deployed against its base model."""

    task: str
    model: str
    num_samples: int
    data: DeployData
    rho: float
    rho_source: str  # "given" or "validation"
    float32: PrecisionResult
    int8: PrecisionResult
    validation: RhoChoice | None
    drop: float
    path_mflops: dict[str, float]
    base_mflops: float
    runtime: str
    kernels: str
    num_threads: int
    int8_size_reduction_pct: dict[str, float]
    int8_weights_reduction_pct: dict[str, float]
    target: TargetCostResult | None = dataclasses.field(default=None, metadata=OPTIONAL)
    mcu: McuResults | None = dataclasses.field(default=None, metadata=OPTIONAL)

    def precision(self, name: str) -> PrecisionResult:
        """float32 or int8."""
        return {"float32": self.float32, "int8": self.int8}[name]

    def to_json(self) -> dict:
        return to_json(self)
