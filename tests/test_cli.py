"""End-to-end tests of the per-task shell scripts (image_classification/{download,train,test}.sh).

Everything runs offline on synthetic CIFAR-10 files with the pretrained weights shipped in pretrained/.
The one full evaluation runs once (module-scoped fixture); the error cases fail before inference. The
command line's one list syntax (common/arguments.py) and its refusal of the old forms are checked in-process.
"""

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from image_classification.synthetic import write_cifar, write_pickle

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = REPO_ROOT / "image_classification"
N_TEST = 250  # not a multiple of the evaluation's predict batch (500), so the last batch is partial

MODELS = {  # name -> exits in path order
    "base": ["ef"],
    "trecx_ev": ["ee", "ef"],
    "trecx_noev": ["ee", "ef"],
    "sdn": ["ee1", "ee2", "ef"],
    "branchynet": ["ee1", "ee2", "ef"],
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ACC_EPS = 1e-9  # the slack common.sweep allows in `accuracy >= base - drop`
INSTRUCTIONS = "minstructions_cortex-m4"  # the benefit curve's column of the default target


def run_script(script: str, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`bash image_classification/SCRIPT ARGS` from `cwd` with the caller's environment."""
    env = dict(os.environ)
    env.setdefault("PYTHON", sys.executable)  # the interpreter running the tests has TensorFlow
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_synthetic_labels(data_dir: Path) -> np.ndarray:
    with open(data_dir / "cifar-10-batches-py" / "test_batch", "rb") as f:
        return np.asarray(pickle.load(f, encoding="bytes")[b"labels"], dtype=np.int64)


def read_curve_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------
# End to end: one full run of test.sh on 250 synthetic images.


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    data_dir = root / "data"
    write_cifar(data_dir, n_test=N_TEST, n_train_per_batch=1, seed=11)
    out = root / "results" / "nested"  # does not exist yet: test.sh must create it
    cwd = root / "elsewhere"  # neither the repository nor the data folder: paths must not depend on it
    cwd.mkdir()
    proc = run_script("test.sh", "--data-dir", data_dir, "--results-dir", out, cwd=cwd)
    summary = None
    if (out / "summary.json").is_file():
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "proc": proc,
        "out": out,
        "summary": summary,
        "labels": read_synthetic_labels(data_dir),
        "cwd": cwd,
        "data": data_dir,
    }


def _ok(evaluation: dict) -> dict:
    proc = evaluation["proc"]
    assert proc.returncode == 0, f"test.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return evaluation


def test_test_sh_succeeds_without_traceback(evaluation) -> None:
    proc = _ok(evaluation)["proc"]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert f"{N_TEST} test samples" in proc.stdout
    assert "ResNet-8 (CIFAR-10)" in proc.stdout  # Table 1 is printed too
    assert list(evaluation["cwd"].iterdir()) == []  # nothing written into the current directory


def test_summary_structure(evaluation) -> None:
    summary = _ok(evaluation)["summary"]
    assert summary is not None, "summary.json missing"
    assert summary["task"] == "image_classification"
    assert summary["num_samples"] == N_TEST
    assert summary["inputs"]["folder"] == str(evaluation["data"])  # the folder read, absolute
    assert set(summary["models"]) == set(MODELS)
    for name, exits in MODELS.items():
        model = summary["models"][name]
        assert {"exits", "accuracy", "mflops", "params", "tradeoff"} <= set(model), name
        assert model["exits"] == exits, name
        assert list(model["accuracy"]) == exits and list(model["mflops"]) == exits, name
        assert all(0.0 <= a <= 100.0 for a in model["accuracy"].values()), name
        mflops = list(model["mflops"].values())
        assert all(m > 0 for m in mflops) and mflops == sorted(mflops), f"{name}: path costs must grow"
        tradeoff = model["tradeoff"]
        assert isinstance(tradeoff, list) and len(tradeoff) == 3, name
        assert [t["drop"] for t in tradeoff] == [1, 2, 3], name
        for entry in tradeoff:
            assert {"accuracy", "mflops", "reduction_pct", "rho"} <= set(entry), name
    assert isinstance(summary["paper"], dict) and "table1" in summary["paper"]


def test_summary_costs_and_params(evaluation) -> None:
    summary = _ok(evaluation)["summary"]
    models = summary["models"]
    assert summary["target"]["name"] == "cortex-m4"
    for name, exits in MODELS.items():  # every exit path of every model, SDN and BranchyNet included
        instructions = [models[name]["minstructions"][e] for e in exits]
        assert all(m > 0 for m in instructions) and instructions == sorted(instructions), name
    assert round(models["base"]["mflops"]["ef"], 2) == 25.27
    assert round(models["trecx_ev"]["mflops"]["ee"], 2) == 11.66
    assert round(models["trecx_ev"]["mflops"]["ef"], 2) == 26.46
    assert models["base"]["params"] == 78666
    assert models["trecx_ev"]["params"] == 89780


def test_traces_match_labels_and_summary(evaluation) -> None:
    evaluation = _ok(evaluation)
    out, labels, summary = evaluation["out"], evaluation["labels"], evaluation["summary"]
    assert labels.shape == (N_TEST,) and len(np.unique(labels)) > 1
    for name, exits in MODELS.items():
        path = out / "traces" / f"{name}.npz"
        assert path.is_file(), path
        with np.load(path) as trace:
            assert set(trace.files) == {"ids", "labels", *exits}, name
            np.testing.assert_array_equal(trace["ids"], np.arange(N_TEST))
            np.testing.assert_array_equal(trace["labels"], labels)
            for exit_name in exits:
                probs = trace[exit_name]
                assert probs.shape == (N_TEST, 10), (name, exit_name)
                assert np.all(np.isfinite(probs)) and np.all(probs >= 0), (name, exit_name)
                np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
                recomputed = 100.0 * np.mean(probs.argmax(axis=1) == labels)
                assert summary["models"][name]["accuracy"][exit_name] == pytest.approx(recomputed, abs=1e-9), (
                    name,
                    exit_name,
                )


def test_benefit_curves_and_tradeoff_consistency(evaluation) -> None:
    evaluation = _ok(evaluation)
    out, models = evaluation["out"], evaluation["summary"]["models"]
    base_accuracy = models["base"]["accuracy"]["ef"]
    for name, exits in MODELS.items():
        path = out / f"benefit_curve_{name}.csv"
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        assert header == ["rho", "accuracy_pct", "mflops", INSTRUCTIONS] + [f"exit_fraction_{e}" for e in exits]
        rows = read_curve_csv(path)
        assert len(rows) == 101, name
        for row in rows:
            assert sum(row[f"exit_fraction_{e}"] for e in exits) == pytest.approx(1.0, abs=1e-9)
            for column, key in (("mflops", "mflops"), (INSTRUCTIONS, "minstructions")):
                cost = sum(row[f"exit_fraction_{e}"] * models[name][key][e] for e in exits)
                assert row[column] == pytest.approx(cost, rel=1e-6), (name, column)
        # The trade-off points chosen in the target's instructions: the cheapest qualifying point there;
        # and the instruction saving at the rho of each FLOPs trade-off point.
        base_instructions = models["base"]["minstructions"]["ef"]
        by_rho = {row["rho"]: row[INSTRUCTIONS] for row in rows}
        for entry, saving in zip(models[name]["tradeoff"], models[name]["instruction_reduction_pct_at_flops_tradeoff"]):
            if entry["rho"] is None:
                assert saving is None, (name, entry)
            else:
                assert saving == pytest.approx(100.0 * (1 - by_rho[entry["rho"]] / base_instructions)), (name, entry)
        for entry in models[name]["tradeoff_target"]:
            qualifying = [r[INSTRUCTIONS] for r in rows if r["accuracy_pct"] >= base_accuracy - entry["drop"] - ACC_EPS]
            if entry["minstructions"] is None:
                assert qualifying == [] and entry["rho"] is None, (name, entry)
                continue
            assert entry["minstructions"] == pytest.approx(min(qualifying), rel=1e-12), (name, entry)
            assert entry["reduction_pct"] == pytest.approx(100.0 * (1 - entry["minstructions"] / base_instructions))
        for entry in models[name]["tradeoff"]:
            qualifying = [r["mflops"] for r in rows if r["accuracy_pct"] >= base_accuracy - entry["drop"] - ACC_EPS]
            if entry["mflops"] is None:
                assert qualifying == [], f"{name} drop {entry['drop']}: a curve point qualifies"
                assert entry["accuracy"] is None and entry["rho"] is None
                continue
            assert entry["accuracy"] >= base_accuracy - entry["drop"] - ACC_EPS, (name, entry)
            assert entry["mflops"] == pytest.approx(min(qualifying), rel=1e-12), (name, entry)
            base_mflops = models["base"]["mflops"]["ef"]
            assert entry["reduction_pct"] == pytest.approx(100.0 * (1 - entry["mflops"] / base_mflops))
    # The base model has one exit: every drop is met at its own cost, no reduction.
    for entry in models["base"]["tradeoff"]:
        assert entry["accuracy"] == pytest.approx(base_accuracy)
        assert entry["reduction_pct"] == pytest.approx(0.0, abs=1e-9)


def test_table_and_figures(evaluation) -> None:
    out = _ok(evaluation)["out"]
    table = (out / "table1.md").read_text(encoding="utf-8")
    assert "ResNet-8 (CIFAR-10)" in table
    assert "25.27" in table
    assert "| Instructions predicted on | cortex-m4 |" in table  # the predicted instruction rows
    # How many samples from which folder (250 synthetic images read as 250 of CIFAR-10's would not be).
    assert f"| Test samples | {N_TEST} |" in table
    assert f"ResNet-8 (CIFAR-10), {N_TEST} samples from `{evaluation['data']}`" in table
    for figure in ("Fig4a", "Fig7a", "Fig4a_instructions", "Fig7a_instructions"):
        png, pdf = out / f"{figure}.png", out / f"{figure}.pdf"
        assert png.read_bytes()[:8] == PNG_SIGNATURE, png
        assert pdf.read_bytes()[:4] == b"%PDF", pdf
        assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000
    leftovers = [p.name for p in out.rglob("*.tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


# ---------------------------------------------------------------------------------------------
# User errors: exit status 2, one "error:" line, no traceback. All fail before any inference.


def _no_data_dir(tmp: Path) -> list:
    return ["--data-dir", tmp / "does-not-exist"]


def _no_cifar_folder(tmp: Path) -> list:
    (tmp / "data" / "something-else").mkdir(parents=True)
    return ["--data-dir", tmp / "data"]


def _corrupt_test_batch(tmp: Path) -> list:
    folder = write_cifar(tmp / "data", n_test=5, n_train_per_batch=1)
    # Fixed bytes that are no pickle (0xff is not a pickle opcode), then seeded random garbage.
    garbage = b"\xff" + np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (folder / "test_batch").write_bytes(garbage)
    return ["--data-dir", tmp / "data"]


def _short_rows(tmp: Path) -> list:
    folder = write_cifar(tmp / "data", n_test=5, n_train_per_batch=1)
    write_pickle(
        folder / "test_batch",
        {b"data": np.zeros((4, 3000), np.uint8), b"labels": [0, 1, 2, 3], b"batch_label": b"testing batch 1 of 1"},
    )
    return ["--data-dir", tmp / "data"]


def _trained_missing(tmp: Path) -> list:
    write_cifar(tmp / "data", n_test=7, n_train_per_batch=1)
    (tmp / "models").mkdir()
    return ["--data-dir", tmp / "data", "--models", "trained", "--models-dir", tmp / "models"]


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (_no_data_dir, ["does-not-exist", "not found", "download.sh"]),
        (_no_cifar_folder, ["cifar-10-batches-py", "not found", "download.sh"]),
        (_corrupt_test_batch, ["test_batch", "not a valid pickle"]),
        (_short_rows, ["test_batch", "(4, 3000)", "3072"]),
        (
            _trained_missing,
            [
                "no trained base, trecx_ev, trecx_noev, sdn, branchynet model(s)",
                "train.sh base trecx_ev trecx_noev sdn branchynet",
                "--models pretrained",
            ],
        ),
    ],
    ids=["no-data-dir", "no-cifar-folder", "corrupt-test-batch", "short-rows", "trained-missing"],
)
def test_test_sh_user_errors(tmp_path, make_args, expected) -> None:
    args = make_args(tmp_path)
    out = tmp_path / "results"
    proc = run_script("test.sh", *args, "--results-dir", out, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert "error:" in proc.stderr
    message = proc.stderr[proc.stderr.index("error:") :]
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert "predicting" not in proc.stdout  # failed before inference
    assert not out.exists()  # and left no partial results


def test_train_sh_unknown_model_lists_valid_ones(tmp_path) -> None:
    proc = run_script("train.sh", "nosuchmodel", "--models-dir", tmp_path / "models", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert "error:" in proc.stderr and "nosuchmodel" in proc.stderr
    for name in MODELS:
        assert name in proc.stderr, name
    assert not (tmp_path / "models").exists()


# ---------------------------------------------------------------------------------------------
# --help


@pytest.mark.parametrize(
    "script, options",
    [
        ("download.sh", ["--data-dir", "--mirror"]),
        ("train.sh", ["--data-dir", "--set", "--models-dir", "--force"]),
        ("test.sh", ["--data-dir", "--results-dir", "--models", "--models-dir"]),
        ("deploy.sh", ["--data-dir", "--rho", "--calibration-data", "--kernels"]),
    ],
)
def test_help(tmp_path, script, options) -> None:
    proc = run_script(script, "--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The usage names the script the user ran, without the task argument the script passes itself.
    usage = proc.stdout.split("\n\n")[0]
    assert usage.startswith(f"usage: bash image_classification/{script} [-h]"), usage
    assert "task" not in usage and "common.cli" not in proc.stdout
    for option in options:
        assert option in proc.stdout, option
    assert "Traceback" not in proc.stderr


def test_download_sh_from_a_mirror_folder(tmp_path) -> None:
    """download.sh --mirror DIR takes the archive from DIR, checks its md5, and skips a second time."""
    import hashlib

    from image_classification import data
    from image_classification.synthetic import make_cifar_archive

    archive = make_cifar_archive(tmp_path / "mirror", n_test=7, n_train_per_batch=3)
    real_md5 = data.CIFAR10_MD5
    script = REPO_ROOT / "image_classification" / "download.sh"
    result = subprocess.run(
        ["bash", str(script), "--data-dir", str(tmp_path / "data"), "--mirror", str(archive.parent)],
        capture_output=True,
        text=True,
    )
    # The synthetic archive is not the official file, so its md5 cannot match: a clear refusal.
    assert hashlib.md5(archive.read_bytes()).hexdigest() != real_md5
    assert result.returncode == 2 and "md5" in result.stderr.lower() and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


# ---------------------------------------------------------------------------------------------
# One list syntax: comma-separated option values, one parser, old forms refused (in-process, no TensorFlow)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("base", ("base",)),
        ("base,trecx_ev", ("base", "trecx_ev")),
        (" base , trecx_ev ,", ("base", "trecx_ev")),
        ("", ()),
        (" , ", ()),
        ("all", ("all",)),  # a plain name where the option has no "all"
    ],
)
def test_comma_list(text, expected) -> None:
    from common.arguments import comma_list

    assert comma_list(text) == expected


def test_comma_list_all_stands_for_every_item() -> None:
    from common.arguments import comma_list

    assert comma_list(" all ", every=("a", "b")) == ("a", "b")
    assert comma_list("b,a", every=("a", "b")) == ("b", "a")


def test_choice_list_refuses_an_unknown_item_listing_the_valid_ones() -> None:
    import argparse

    from common.arguments import choice_list

    parse = choice_list(("image_classification", "keyword_spotting"))
    assert parse("all") == ("image_classification", "keyword_spotting")
    assert parse("keyword_spotting") == ("keyword_spotting",)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown 'kws'; give some of image_classification, keyword"):
        parse("image_classification,kws")
    with pytest.raises(argparse.ArgumentTypeError, match="no item"):
        parse(",")


def _list_options() -> dict[str, list]:
    """command -> its options whose help says they take a comma-separated list."""
    from common.cli import build_parser

    commands = next(action for action in build_parser()._actions if action.dest == "command").choices
    return {
        name: [action for action in sub._actions if "comma-separated" in (action.help or "")]
        for name, sub in commands.items()
    }


def test_every_list_option_is_given_once_and_known_to_the_old_form_check() -> None:
    from common.arguments import GivenOnce
    from common.cli import build_parser

    commands = next(action for action in build_parser()._actions if action.dest == "command").choices
    found = {}
    for name, actions in _list_options().items():
        for action in actions:
            assert isinstance(action, GivenOnce), (name, action.option_strings)
            assert action.option_strings[0] in commands[name].get_default("list_options"), (name, action)
            found.setdefault(name, []).append(action.option_strings[0])
    assert found == {
        "test": ["--model"],
        "deploy": ["--mcu"],
        "fit-cost-model": ["--targets"],
        "design-exit": ["--taps", "--branches"],
    }


def _refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one-line error `python3 -m common.cli ARGV` exits 2 with, before importing TensorFlow."""
    from common import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["test", "image_classification", "--models", "trained", "base", "trecx_ev"],
            "--models takes only the weights' source, pretrained or trained; name the models with --model, one "
            "comma-separated list: --models trained --model base,trecx_ev",
        ),
        (
            ["test", "image_classification", "--models", "base"],
            "'base' is not a source, pretrained or trained; a model is named with --model, e.g. --model base",
        ),
        (
            ["deploy", "image_classification", "--mcu", "cortex-m4", "cortex-m7", "--rho", "0.5"],
            "--mcu takes one comma-separated list, not separate words: --mcu cortex-m4,cortex-m7",
        ),
        (
            ["deploy", "image_classification", "--mcu=cortex-m4", "cortex-m7"],
            "--mcu takes one comma-separated list, not separate words: --mcu cortex-m4,cortex-m7",
        ),
        (
            ["design-exit", "image_classification", "--taps", "stack1", "stack2"],
            "--taps takes one comma-separated list, not separate words: --taps stack1,stack2",
        ),
        (
            ["fit-cost-model", "--targets", "cortex-m4", "cortex-m7"],
            "--targets takes one comma-separated list, not separate words: --targets cortex-m4,cortex-m7",
        ),
        (
            ["deploy", "image_classification", "--mcu", "cortex-m4", "--mcu", "cortex-m7"],
            "--mcu given twice; give it once, with every item in one comma-separated list: --mcu cortex-m4,cortex-m7",
        ),
        (
            ["test", "image_classification", "--model", "base", "--model", "sdn"],
            "--model given twice; give it once, with every item in one comma-separated list: --model base,sdn",
        ),
        # deploy's --model takes one name: a second word is not a list to join
        (["deploy", "image_classification", "--model", "trecx_ev", "trecx_noev"], "unrecognized arguments: trecx_noev"),
    ],
    ids=[
        "test-models-source-then-names",
        "test-models-name",
        "mcu-words",
        "mcu-equals-words",
        "taps-words",
        "targets-words",
        "mcu-twice",
        "model-twice",
        "deploy-model-words",
    ],
)
def test_old_list_forms_are_refused_naming_the_new_form(capsys, argv, expected) -> None:
    message = _refused(capsys, *argv)
    assert message.endswith(f"error: {expected}") or message.endswith(f"argument --models: {expected}"), message


def test_test_model_option_selects_the_named_models(monkeypatch) -> None:
    """test --models trained --model a,b hands run_test the source and the names, in order."""
    import types

    from common import cli

    seen = {}

    def fake_run_test(task, models, data_dir, results_dir, **options):
        seen.update(source=models.source, names=list(models.names))
        return {}, Path("out")

    # A stand-in for the evaluation module, which would import TensorFlow.
    stand_in = types.SimpleNamespace(run_test=fake_run_test, ModelSelection=types.SimpleNamespace)
    monkeypatch.setitem(sys.modules, "common.evaluation", stand_in)
    args = cli.build_parser().parse_args(
        ["test", "image_classification", "--models", "trained", "--model", " trecx_ev, base"]
    )
    assert cli.cmd_test(args) == Path("out")
    assert seen == {"source": "trained", "names": ["trecx_ev", "base"]}


def test_install_mcu_toolchain_build_takes_one_comma_separated_list(tmp_path) -> None:
    """--build A,B is read (the usage follows); --build A --build B is refused naming the one-list form."""
    script = str(REPO_ROOT / "install_mcu_toolchain.sh")
    listed = subprocess.run(
        ["bash", script, "--build", "cortex-m4:cmsis-nn, cortex-m7:cmsis-nn", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert listed.returncode == 0 and listed.stdout.startswith("Usage: bash install_mcu_toolchain.sh"), listed.stderr
    twice = subprocess.run(
        ["bash", script, "--build", "cortex-m4:cmsis-nn", "--build", "cortex-m7:cmsis-nn", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert twice.returncode == 2
    assert twice.stderr.strip() == (
        "install_mcu_toolchain.sh: --build given twice; give one comma-separated list: "
        "--build cortex-m4:cmsis-nn,cortex-m7:cmsis-nn"
    )
    half = subprocess.run(["bash", script, "--build", "cortex-m4:cmsis-nn,cortex-m7"], capture_output=True, text=True)
    assert half.returncode == 2 and "--build needs CORE:KERNELS" in half.stderr
