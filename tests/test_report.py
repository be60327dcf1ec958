"""Writers (common/report.py), figures (common/plots.py) and summary.json (common/summary.py)."""

import csv
import json
import os
import pathlib

import matplotlib.image as mpimg
import numpy as np
import pytest
from scripts import damage

from common.errors import UserError
from common.plots import benefit_figure
from common.report import table1_markdown, write_curve_csv, write_json, write_text
from common.summary import Summary, load_summary
from common.sweep import Curve

CURVE = Curve(
    rho=np.array([0.01, 0.5, 1.0]),
    accuracy=np.array([80.0, 85.25, 86.5]),
    mflops=np.array([3.0, 7.125, 12.5]),
    exit_fraction=np.array([[1.0, 0.0], [0.4, 0.6], [0.0, 1.0]]),
)


def test_json_round_trip_with_numpy_types(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sub" / "r.json"
    obj = {
        "acc": np.float32(91.5),
        "n": np.int64(7),
        "ok": np.bool_(True),
        "arr": np.arange(3),
        "mat": np.eye(2),
        "tup": (1, 2.5),
        "nan": float("nan"),
        3: "int key",
        "nested": [{"x": np.float64(0.1)}],
    }
    write_json(path, obj)
    text = path.read_text()
    assert "\n  " in text  # indented
    back = json.loads(text)
    assert back == {
        "acc": 91.5,
        "n": 7,
        "ok": True,
        "arr": [0, 1, 2],
        "mat": [[1.0, 0.0], [0.0, 1.0]],
        "tup": [1, 2.5],
        "nan": None,
        "3": "int key",
        "nested": [{"x": 0.1}],
    }
    assert type(back["acc"]) is float and type(back["n"]) is int
    write_json(path, {"curve": CURVE})  # dataclasses are written field by field
    assert json.loads(path.read_text())["curve"]["mflops"] == [3.0, 7.125, 12.5]
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["r.json"]  # no temp files left


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):
        write_text(path, 123)  # fails inside the temp-file write
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_write_text(tmp_path: pathlib.Path) -> None:
    write_text(tmp_path / "t.md", "héllo –\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "héllo –\n"


def test_curve_csv_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "curve.csv"
    write_curve_csv(path, CURVE, ["ee", "ef"])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["rho", "accuracy_pct", "mflops", "exit_fraction_ee", "exit_fraction_ef"]
    assert rows[2] == ["0.5", "85.25", "7.125", "0.4", "0.6"]
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_array_equal(data[:, 0], CURVE.rho)
    np.testing.assert_array_equal(data[:, 1], CURVE.accuracy)
    np.testing.assert_array_equal(data[:, 2], CURVE.mflops)
    np.testing.assert_array_equal(data[:, 3:], CURVE.exit_fraction)
    with pytest.raises(ValueError, match="3 exit names"):
        write_curve_csv(path, CURVE, ["ee1", "ee2", "ef"])


ROW = {
    "model": "ResNet-8 (CIFAR-10)",
    "measured": {
        "baseline_accuracy": 86.123,
        "baseline_mflops": 12.5,
        "baseline_params": 78666,
        "tradeoff_mflops": [9.876, 8.0, None],
        "tradeoff_reduction_pct": [20.992, 36.0, None],
        "trecx_params": 79914,
        "standalone_ee": 61.2,
        "standalone_ef": 85.0,
        "test_samples": 1185,
        "test_skipped": 3,
        "test_folder": "/data/cifar10_test",
    },
    "paper": {
        "baseline_accuracy": 85.91,
        "baseline_mflops": 12.64,
        "baseline_params": 78700,
        "tradeoff_mflops": [9.56, 8.23, 7.08],
        "tradeoff_reduction_pct": None,
        "trecx_params": 1_234_567,
        "standalone_ee": None,
        "standalone_ef": 85.42,
    },
}


def test_table1_markdown() -> None:
    md = table1_markdown([ROW, {"model": "DS-CNN (KWS)", "measured": {}, "paper": {"baseline_params": 999}}])
    lines = md.splitlines()
    assert "Measured / paper" in lines[0] and "Instructions" not in lines[0]  # no target: no instruction rows
    table = [line for line in lines if line.startswith("|")]
    # One row per quantity, one column per task (narrow: three columns for two tasks).
    assert table[0] == "| | ResNet-8 (CIFAR-10) | DS-CNN (KWS) |" and all(line.count("|") == 4 for line in table)
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}
    assert rows == {
        "Test samples": ["1,185 (3 skipped)", "–"],
        "Baseline accuracy %": ["86.12 / 85.91", "– / –"],
        "Baseline MFLOPs": ["12.50 / 12.64", "– / –"],
        "Baseline parameters": ["78.7K / 78.7K", "– / 999"],
        "T-RecX parameters": ["79.9K / 1.23M", "– / –"],
        "Standalone accuracy %, early exit": ["61.20 / –", "– / –"],
        "Standalone accuracy %, final exit": ["85.00 / 85.42", "– / –"],
        "MFLOPs at 1 % drop (reduction)": ["9.88 (21.0 %) / 9.56", "– / –"],
        "MFLOPs at 2 % drop (reduction)": ["8.00 (36.0 %) / 8.23", "– / –"],
        "MFLOPs at 3 % drop (reduction)": ["– / 7.08", "– / –"],
    }
    # Each task's test set: how many samples, from which folder.
    assert "Test sets: ResNet-8 (CIFAR-10), 1,185 samples from `/data/cifar10_test`; DS-CNN (KWS), – samples" in md


def test_table1_shows_one_instruction_figure_where_the_two_agree() -> None:
    instructions = {
        "target": "cortex-m4",
        "baseline_minstructions": 29.7712,
        "instruction_reduction_pct_at_flops_tradeoff": [12.61, 15.04, None],
        "tradeoff_instruction_reduction_pct": [12.61, 16.2, None],
    }
    agreeing = {**instructions, "tradeoff_instruction_reduction_pct": [12.61, 15.04, None]}
    rows = [{**ROW, "measured": {**ROW["measured"], **instructions}}, {"model": "Other", "measured": agreeing}]
    md = table1_markdown(rows)
    assert "| Instructions predicted on | cortex-m4 | cortex-m4 |" in md
    assert "| Baseline M instructions | 29.77 | 29.77 |" in md
    assert "| Instructions saved % at 1 % drop | 12.6 | 12.6 |" in md
    assert "| Instructions saved % at 2 % drop | 15.0 (16.2) | 15.0 |" in md
    assert "| Instructions saved % at 3 % drop | – | – |" in md
    assert "two figures A (B): A at the rho of the FLOPs trade-off point, B at the rho chosen" in md
    assert "two figures" not in table1_markdown(rows[1:])  # the note only where a cell has two


def _check_figure(paths: list[pathlib.Path], stem: pathlib.Path) -> None:
    png, pdf = paths
    assert png == stem.parent / "fig.v1.png" and pdf == stem.parent / "fig.v1.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:4] == b"%PDF"
    image = mpimg.imread(png)
    assert image.shape[0] > 500 and image.shape[1] > 500  # 200 dpi
    rgb = image[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 50  # not a blank canvas
    red = (rgb[:, 0] > 0.9) & (rgb[:, 1] < 0.2) & (rgb[:, 2] < 0.2)
    assert red.sum() > 100  # the red baseline cross and guides were drawn


def test_benefit_figure_linear_and_log(tmp_path: pathlib.Path) -> None:
    other = Curve(CURVE.rho, CURVE.accuracy - 2.0, CURVE.mflops * 1.5, CURVE.exit_fraction)
    curves = {"T-RecX": CURVE, "SDN": other}
    images = []
    for log_y in (False, True):
        stem = tmp_path / str(log_y) / "fig.v1"
        paths = benefit_figure(curves, (86.0, 12.0), "ResNet-8", stem, log_y=log_y)
        _check_figure(paths, stem)
        assert sorted(os.listdir(stem.parent)) == ["fig.v1.pdf", "fig.v1.png"]
        images.append(mpimg.imread(paths[0]))
    assert images[0].shape == images[1].shape and not np.array_equal(*images)


def test_benefit_figure_explicit_limits_and_log_needs_positive(tmp_path: pathlib.Path) -> None:
    stem = tmp_path / "fig.v1"
    _check_figure(benefit_figure({"a": CURVE}, (86.0, 12.0), "t", stem, xlim=(70, 90), ylim=(0, 15)), stem)
    zero = Curve(CURVE.rho, CURVE.accuracy, np.array([0.0, 1.0, 2.0]), CURVE.exit_fraction)
    with pytest.raises(ValueError, match="positive"):
        benefit_figure({"a": zero}, (86.0, 12.0), "t", tmp_path / "bad", log_y=True)


# ------------------------------------------------------------------------------------------------
# summary.json: written from the dataclasses of common/summary.py and read back into them


def _points(unit: str) -> list[dict]:
    points = [{"drop": d, "accuracy": 86.5, unit: 20.0 - d, "reduction_pct": 20.0 + d, "rho": 0.75} for d in (1, 2)]
    return [*points, {"drop": 3, "accuracy": None, unit: None, "reduction_pct": None, "rho": None}]


def _model(exits: list[str], params: int) -> dict:
    return {
        "exits": exits,
        "accuracy": {e: 80.0 + i for i, e in enumerate(exits)},
        "mflops": {e: 10.0 * (i + 1) for i, e in enumerate(exits)},
        "params": params,
        "tradeoff": _points("mflops"),
        "minstructions": {e: 1.5 * (i + 1) for i, e in enumerate(exits)},
        "tradeoff_target": _points("minstructions"),
        "instruction_reduction_pct_at_flops_tradeoff": [21.5, 22.0, None],
    }


SUMMARY = {  # as test.sh writes it, keys in its order
    "task": "image_classification",
    "num_samples": 3,
    "inputs": {"folder": "/data/cifar", "found": 4, "scored": 3, "skipped": [{"id": "7", "reason": "unreadable"}]},
    "source": "trained",
    "baseline": {"model": "base", "source": "pretrained"},
    "models": {"base": _model(["ef"], 78666), "trecx_ev": _model(["ee", "ef"], 89780)},
    "paper": {"table1": {"baseline_accuracy": 87.0}},
    "target": {"name": "cortex-m4", "unit": "M instructions", "cost_model": "target_costs.json"},
}


def test_summary_round_trip_writes_the_same_bytes(tmp_path: pathlib.Path) -> None:
    write_json(tmp_path / "a.json", SUMMARY)
    summary = Summary.from_json(json.loads((tmp_path / "a.json").read_text()))
    assert summary.models["trecx_ev"].tradeoff[2].mflops is None and summary.target.name == "cortex-m4"
    assert summary.inputs.skipped[0].reason == "unreadable" and summary.models["base"].params == 78666
    write_json(tmp_path / "b.json", summary.to_json())
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()


def test_summary_without_target_leaves_the_instruction_fields_out() -> None:
    plain = json.loads(json.dumps(SUMMARY))
    del plain["target"]
    for model in plain["models"].values():
        for key in ("minstructions", "tradeoff_target", "instruction_reduction_pct_at_flops_tradeoff"):
            del model[key]
    assert Summary.from_json(plain).to_json() == plain


def test_summary_of_an_older_run_reads_without_the_later_fields() -> None:
    older = json.loads(json.dumps(SUMMARY))
    for key in ("inputs", "source", "baseline", "paper", "target"):
        del older[key]
    summary = Summary.from_json(older)
    assert summary.inputs is None and summary.baseline is None and summary.paper == {}


def _damaged(path: tuple, value: object = KeyError) -> dict:
    return damage(json.loads(json.dumps(SUMMARY)), path, value)


@pytest.mark.parametrize(
    "path, value, problem",
    [
        (("num_samples",), 3.5, "num_samples is float, expected a whole number"),
        (("num_samples",), True, "num_samples is bool, expected a whole number"),
        (("inputs", "folder"), 3, "inputs.folder is int, expected a string or null"),
        (("inputs",), [], "inputs is not a JSON object"),
        (("models", "base"), KeyError, "models.base is missing"),
        (("models", "trecx_ev", "accuracy", "ee"), KeyError, "models.trecx_ev.accuracy.ee is missing"),
        (("models", "base", "minstructions"), KeyError, "models.base.minstructions is missing"),
        (("models", "trecx_ev", "tradeoff", 1, "mflops"), "12", "tradeoff.1.mflops is str, expected a number or null"),
        (("models", "trecx_ev", "tradeoff_target", 0, "rho"), KeyError, "tradeoff_target.0.rho is missing"),
        (("models", "base", "tradeoff"), [], "models.base.tradeoff is empty"),
        (("target", "name"), None, "target.name is NoneType, expected a string"),
    ],
)
def test_damaged_summary_names_the_file_and_the_key(
    tmp_path: pathlib.Path, path: tuple, value: object, problem: str
) -> None:
    file = tmp_path / "summary.json"
    file.write_text(json.dumps(_damaged(path, value)))
    with pytest.raises(UserError) as raised:
        load_summary(file, "image_classification")
    assert str(raised.value).startswith(f"{file} is damaged: ") and problem in str(raised.value)
    assert str(raised.value).endswith("; run bash image_classification/test.sh again to rewrite it")


@pytest.mark.parametrize("text, problem", [("[1, 2]", "the file is not a JSON object"), ("{", "JSONDecodeError")])
def test_summary_that_is_no_json_object_names_the_file(tmp_path: pathlib.Path, text: str, problem: str) -> None:
    file = tmp_path / "summary.json"
    file.write_text(text)
    with pytest.raises(UserError, match=f"is damaged.*{problem}"):
        load_summary(file, "image_classification")
