"""Named boards: milliseconds and millijoules ESTIMATED from the emulator's executed instructions.

The emulator counts instructions, not cycles (docs/microcontroller.md). A board turns a count into time
with one number, its cycles per counted instruction, calibrated on what MLPerf Tiny published for the
same three base models (ResNet-8, DS-CNN, MobileNetV1-0.25) on that board:

    cycles per instruction = sum over the three models of (published ms x MHz x 1e3)
                             / sum of the base models' executed instructions on the board's target

(the ratio of sums: total cycles over total instructions), the instructions being the emulator's counts
of the pipeline's int8 base models kept in common/target_cost_measurements.json. Then

    estimated ms = instructions x cycles per instruction / (MHz x 1e3),  estimated mJ = ms x mW / 1e3

with the power the ratio of the published energy to the published time, summed over the three models.
Each board's error is the leave-one-model-out error: fitted on two models, the third's published ms
predicted. boards.json holds only published figures, each with its source; everything here is derived.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

from common.errors import UserError

BOARDS_FILE = pathlib.Path(__file__).with_name("boards.json")
MEASUREMENTS_FILE = pathlib.Path(__file__).with_name("target_cost_measurements.json")
MODELS = ("image_classification", "keyword_spotting", "visual_wake_words")  # the three base models


@dataclasses.dataclass(frozen=True)
class Board:
    """A board, calibrated. published_ms / base_instructions: per task (MODELS); errors in %."""

    name: str
    chip: str
    target: str
    engine: str
    mapped: str | None
    mhz: float
    cycles_per_instruction: float
    published_ms: dict
    base_instructions: dict
    fit_error_pct: dict  # each model's ms from the fit on all three, against the published ms
    leave_one_out_error_pct: dict  # each model's ms from the fit on the other two
    power_mw: float | None
    power_from: str | None  # the board whose measured power is assumed, when this one has none
    sources: dict  # figure -> where it comes from

    def ms(self, instructions: float) -> float:
        """Estimated milliseconds of `instructions` executed instructions on the board's target."""
        return instructions * self.cycles_per_instruction / (self.mhz * 1e3)

    def mj(self, instructions: float) -> float | None:
        """Estimated millijoules (None when no power is known)."""
        return None if self.power_mw is None else self.ms(instructions) * self.power_mw / 1e3

    @property
    def worst_leave_one_out_pct(self) -> float:
        return max(abs(e) for e in self.leave_one_out_error_pct.values())


def cycles_per_instruction(
    published_ms: dict, instructions: dict, mhz: float, models: list[str] | None = None
) -> float:
    """The ratio of sums over `models` (default all): published cycles / counted instructions."""
    models = list(published_ms) if models is None else models
    return sum(published_ms[m] * mhz * 1e3 for m in models) / sum(instructions[m] for m in models)


def leave_one_out(published_ms: dict, instructions: dict, mhz: float) -> dict:
    """{model: % error of its ms predicted from the cycles per instruction fitted on the other models}."""
    errors = {}
    for m in published_ms:
        cpi = cycles_per_instruction(published_ms, instructions, mhz, [o for o in published_ms if o != m])
        errors[m] = 100.0 * (instructions[m] * cpi / (mhz * 1e3) / published_ms[m] - 1.0)
    return errors


def _read(path: str | pathlib.Path, what: str) -> object:
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {what} {path} ({err}); restore it with git checkout") from None


@functools.cache
def base_instructions(target: str, path: pathlib.Path = MEASUREMENTS_FILE) -> dict:
    """{task: executed instructions of its int8 base model on `target`'s emulator} (the counts
    fit-cost-model kept)."""
    entries = _read(path, "the kept emulator counts").get(target, [])
    counts = {e["name"].split("/")[0]: float(e["instructions"]) for e in entries if e["name"].endswith("/base_int8")}
    missing = [m for m in MODELS if m not in counts]
    if missing:
        raise UserError(
            f"{path} holds no {target} count of the base model of {', '.join(missing)}; measure it with "
            f"python3 -m common.cli fit-cost-model --targets {target}"
        )
    return counts


def _board(name: str, entry: dict, entries: dict[str, dict]) -> Board:
    published = {m: 1e3 / float(entry["throughput_per_s"][m]) for m in MODELS}
    instructions = base_instructions(entry["target"])
    mhz = float(entry["mhz"])
    cpi = cycles_per_instruction(published, instructions, mhz)
    fit = {m: 100.0 * (instructions[m] * cpi / (mhz * 1e3) / published[m] - 1.0) for m in MODELS}
    power_entry = entries[entry["power_from"]] if "power_from" in entry else entry
    power = None
    if "energy_uj" in power_entry:
        times = {m: 1e3 / float(power_entry["throughput_per_s"][m]) for m in MODELS}
        power = sum(float(power_entry["energy_uj"][m]) for m in MODELS) / sum(times.values())  # uJ/ms = mW
    sources = {key[: -len("_source")]: value for key, value in entry.items() if key.endswith("_source")}
    if "power_from" in entry:
        sources["energy"] = power_entry["energy_source"]
    return Board(
        name=name,
        chip=entry["chip"],
        target=entry["target"],
        engine=entry["engine"],
        mapped=entry.get("mapped"),
        mhz=mhz,
        cycles_per_instruction=cpi,
        published_ms=published,
        base_instructions=instructions,
        fit_error_pct=fit,
        leave_one_out_error_pct=leave_one_out(published, instructions, mhz),
        power_mw=power,
        power_from=entry.get("power_from"),
        sources=sources,
    )


@functools.cache
def boards(path: pathlib.Path = BOARDS_FILE) -> dict[str, Board]:
    """{name: Board} of boards.json, calibrated."""
    entries = _read(path, "the board definitions").get("boards", {})
    try:
        return {name: _board(name, entry, entries) for name, entry in entries.items()}
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); restore it with git checkout") from None


def load_board(name: str, option: str = "--board") -> Board:
    """The calibrated board `name`; UserError listing the valid ones otherwise."""
    known = boards()
    if name not in known:
        raise UserError(f"{option}: unknown board {name!r}; valid boards: {', '.join(known)}")
    return known[name]
