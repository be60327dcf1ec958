"""Hand-computed checks of the threshold sweep (common/sweep.py)."""

import numpy as np
import pytest

from common import sweep
from common.sweep import RHOS, RULES, Curve, benefit_curve, exit_index, standalone_accuracy, tradeoff_points


def onehot_softmax(preds, conf, n_classes=3):
    """(N, C) rows whose argmax is preds[i] with max value conf[i] (rest spread evenly)."""
    preds, conf = np.asarray(preds), np.asarray(conf, dtype=float)
    out = np.repeat(((1.0 - conf) / (n_classes - 1))[:, None], n_classes, axis=1)
    out[np.arange(len(preds)), preds] = conf
    return out


# Tiny two-exit model, N=5. Early exit: confidences and correctness; final exit: correctness.
LABELS = np.array([0, 1, 2, 0, 1])
EE = onehot_softmax([0, 1, 0, 1, 1], [0.9, 0.8, 0.6, 0.7, 0.5])  # correct: T T F F T
EF = onehot_softmax([0, 1, 2, 2, 1], [0.9, 0.9, 0.9, 0.9, 0.9])  # correct: T T T F T
PATH = [2.0, 10.0]


def test_two_exit_hand_computed():
    curve = benefit_curve([EE, EF], LABELS, PATH, "strict", rhos=np.array([0.4, 0.65, 0.85, 0.95]))
    # rho=0.4: all leave early -> correct T T F F T = 60 %, cost 2.
    # rho=0.65: samples 0,1,3 early (T T F), 2,4 final (T T) -> 80 %, (3*2 + 2*10)/5 = 5.2.
    # rho=0.85: sample 0 early (T); 1..4 final (T T F T) -> 80 %, (2 + 40)/5 = 8.4.
    # rho=0.95: all final -> 80 %, cost 10.
    np.testing.assert_allclose(curve.accuracy, [60.0, 80.0, 80.0, 80.0])
    np.testing.assert_allclose(curve.mflops, [2.0, 5.2, 8.4, 10.0])
    np.testing.assert_allclose(curve.exit_fraction, [[1.0, 0.0], [0.6, 0.4], [0.2, 0.8], [0.0, 1.0]])
    np.testing.assert_allclose(curve.rho, [0.4, 0.65, 0.85, 0.95])
    np.testing.assert_allclose(curve.points(), np.column_stack([curve.accuracy, curve.mflops]))


def test_default_grid():
    assert RHOS.shape == (101,) and RHOS[0] == 0.01 and RHOS[-1] == 1.0
    assert RULES == ("strict", "cascade")
    curve = benefit_curve([EE, EF], LABELS, PATH, "strict")
    assert curve.accuracy.shape == curve.mflops.shape == (101,)
    assert curve.exit_fraction.shape == (101, 2)
    # rho=0.01: everything leaves early; rho=1.0 (strict): nothing does.
    assert curve.accuracy[0] == 60.0 and curve.mflops[0] == 2.0
    assert curve.accuracy[-1] == 80.0 and curve.mflops[-1] == 10.0


def test_tie_at_rho_strict_stays_cascade_exits():
    conf = np.array([[0.5], [0.25], [0.75]])  # exactly representable
    rhos = np.array([0.25, 0.5, 0.75])
    strict = exit_index(conf, rhos, "strict")
    cascade = exit_index(conf, rhos, "cascade")
    np.testing.assert_array_equal(strict, [[0, 1, 0], [1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(cascade, [[0, 0, 0], [0, 1, 0], [1, 1, 0]])
    # Same tie through benefit_curve: sample 1 is wrong early, right at the end.
    labels = np.array([0, 1])
    ee = onehot_softmax([0, 0], [0.5, 0.5])
    ef = onehot_softmax([0, 1], [0.9, 0.9])
    rho = np.array([0.5])
    assert benefit_curve([ee, ef], labels, [1.0, 4.0], "strict", rho).accuracy[0] == 100.0
    assert benefit_curve([ee, ef], labels, [1.0, 4.0], "cascade", rho).accuracy[0] == 50.0


def test_confidence_one_exits_only_under_cascade_at_rho_one():
    conf = np.array([[1.0]])
    assert exit_index(conf, np.array([1.0]), "strict")[0, 0] == 1
    assert exit_index(conf, np.array([1.0]), "cascade")[0, 0] == 0


@pytest.mark.parametrize("rule", RULES)
def test_early_exit_that_never_fires(rule):
    # 400 classes let the max softmax (0.005) sit below every rho in RHOS.
    ee = onehot_softmax([0, 1, 2, 0, 1], [0.005] * 5, n_classes=400)  # all correct, never used
    ef = onehot_softmax([0, 1, 2, 2, 1], [0.9] * 5, n_classes=400)  # correct: T T T F T
    curve = benefit_curve([ee, ef], LABELS, PATH, rule)
    np.testing.assert_array_equal(curve.accuracy, np.full(101, 80.0))
    np.testing.assert_array_equal(curve.mflops, np.full(101, 10.0))
    np.testing.assert_array_equal(curve.exit_fraction[:, 1], np.ones(101))


def test_three_exit_cascade_takes_first_passing_exit():
    labels = np.array([0, 0, 0])
    # Sample 0 passes at both early exits (must leave at exit 0, where it is wrong);
    # sample 1 passes only at exit 1 (right there); sample 2 passes at neither.
    e1 = onehot_softmax([1, 0, 0], [0.8, 0.3, 0.3])
    e2 = onehot_softmax([0, 0, 1], [0.9, 0.8, 0.3])
    ef = onehot_softmax([0, 1, 0], [0.9, 0.9, 0.9])
    curve = benefit_curve([e1, e2, ef], labels, [1.0, 3.0, 9.0], "cascade", np.array([0.8]))
    np.testing.assert_allclose(curve.exit_fraction, [[1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(curve.accuracy, [200 / 3])  # wrong, right, right
    np.testing.assert_allclose(curve.mflops, [(1.0 + 3.0 + 9.0) / 3])


def test_base_model_single_exit():
    preds = onehot_softmax([0, 1, 1, 0], [0.9, 0.4, 0.7, 0.99])
    labels = np.array([0, 1, 2, 1])
    curve = benefit_curve([preds], labels, [7.5], "strict")
    np.testing.assert_array_equal(curve.accuracy, np.full(101, 50.0))
    np.testing.assert_array_equal(curve.mflops, np.full(101, 7.5))
    np.testing.assert_array_equal(curve.exit_fraction, np.ones((101, 1)))
    idx = exit_index(np.empty((4, 0)), RHOS, "cascade")
    assert idx.shape == (101, 4) and not idx.any()


def test_n_not_multiple_of_100():
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    ee = onehot_softmax([0, 1, 0, 0, 2, 2, 1], [0.95, 0.9, 0.85, 0.3, 0.2, 0.6, 0.99])  # T T F T F T F
    ef = onehot_softmax([0, 1, 2, 1, 1, 2, 0], [0.9] * 7)  # T T T F T T T
    curve = benefit_curve([ee, ef], labels, [3.0, 10.0], "strict", np.array([0.5, 0.92]))
    # rho=0.5: early 0,1,2,5,6 (T T F T F), final 3,4 (F T) -> 4/7; cost (5*3 + 2*10)/7 = 5.
    # rho=0.92: early 0,6 (T F), final 1..5 (T T F T T) -> 5/7; cost (2*3 + 5*10)/7 = 8.
    np.testing.assert_allclose(curve.accuracy, [400 / 7, 500 / 7])
    np.testing.assert_allclose(curve.mflops, [5.0, 8.0])


def make_curve(acc, mflops, rho=None):
    acc, mflops = np.asarray(acc, float), np.asarray(mflops, float)
    rho = np.linspace(0.1, 0.1 * len(acc), len(acc)) if rho is None else np.asarray(rho, float)
    return Curve(rho=rho, accuracy=acc, mflops=mflops, exit_fraction=np.ones((len(acc), 1)))


def test_tradeoff_picks_lowest_mflops_qualifying_point():
    curve = make_curve([85.0, 87.5, 88.0, 89.0, 90.0], [2.0, 4.0, 5.0, 7.0, 9.0])
    points = tradeoff_points(curve, base_accuracy=90.0, base_cost=10.0)
    assert [p["drop"] for p in points] == [1, 2, 3]
    assert points[0] == {
        "drop": 1,
        "accuracy": 89.0,
        "mflops": 7.0,
        "reduction_pct": pytest.approx(30.0),
        "rho": pytest.approx(0.4),
    }
    assert points[1]["mflops"] == 5.0 and points[1]["accuracy"] == 88.0  # 88.0 == 90 - 2 qualifies
    assert points[2]["mflops"] == 4.0 and points[2]["reduction_pct"] == pytest.approx(60.0)
    assert all(type(p[k]) is float for p in points for k in ("accuracy", "mflops", "reduction_pct", "rho"))


def test_tradeoff_rounded_boundary_still_qualifies():
    # In floating point 100 * 644 / 1000 - 1 = 63.400000000000006 > 100 * 634 / 1000 = 63.4.
    assert 100 * 634 / 1000 < 100 * 644 / 1000 - 1
    curve = make_curve([100 * 634 / 1000], [1.0])
    assert tradeoff_points(curve, 100 * 644 / 1000, 2.0, drops=(1,))[0]["mflops"] == 1.0


def test_tradeoff_none_when_nothing_qualifies():
    curve = make_curve([80.0, 85.0], [1.0, 2.0])
    points = tradeoff_points(curve, base_accuracy=90.0, base_cost=10.0, drops=(1, 5))
    assert points[0] == {"drop": 1, "accuracy": None, "mflops": None, "reduction_pct": None, "rho": None}
    assert points[1]["mflops"] == 2.0


def test_tradeoff_tie_breaks_higher_accuracy_then_lower_rho():
    curve = make_curve([88.0, 89.5, 89.5, 95.0], [3.0, 3.0, 3.0, 8.0], rho=[0.2, 0.9, 0.4, 0.6])
    point = tradeoff_points(curve, base_accuracy=90.0, base_cost=6.0, drops=(3,))[0]
    assert point["accuracy"] == 89.5 and point["rho"] == 0.4
    assert point["reduction_pct"] == pytest.approx(50.0)  # negative savings are possible too
    assert tradeoff_points(curve, 96.0, 6.0, drops=(1,))[0]["reduction_pct"] == pytest.approx(-100 / 3)


def naive_curve(softmaxes, labels, path_mflops, rule, rhos):
    """Per-sample reference implementation of the exit rule."""
    acc, cost = [], []
    for rho in rhos:
        n_correct, total = 0, 0.0
        for i, label in enumerate(labels):
            k = len(softmaxes) - 1
            for j in range(len(softmaxes) - 1):
                c = softmaxes[j][i].max()
                if (c > rho) if rule == "strict" else (c >= rho):
                    k = j
                    break
            n_correct += int(softmaxes[k][i].argmax() == label)
            total += path_mflops[k]
        acc.append(100.0 * n_correct / len(labels))
        cost.append(total / len(labels))
    return np.array(acc), np.array(cost)


@pytest.mark.parametrize("rule", RULES)
def test_vectorised_matches_naive_reference(rule):
    rng = np.random.default_rng(7)
    n, c = 1000, 10
    labels = rng.integers(0, c, n)
    softmaxes = []
    for sharpness in (1.0, 2.0, 3.0, 4.0):
        logits = sharpness * rng.normal(size=(n, c))
        e = np.exp(logits)
        softmaxes.append(e / e.sum(axis=1, keepdims=True))
    softmaxes[0][:5] = onehot_softmax(labels[:5], RHOS[[15, 30, 50, 70, 100]], c)  # exact ties with rho
    softmaxes[1][5:8] = onehot_softmax(labels[5:8], RHOS[[20, 40, 60]], c)
    path = [0.5, 1.7, 3.1, 6.0]
    curve = benefit_curve(softmaxes, labels, path, rule)
    acc, cost = naive_curve(softmaxes, labels, path, rule, RHOS)
    np.testing.assert_allclose(curve.accuracy, acc)
    np.testing.assert_allclose(curve.mflops, cost)
    np.testing.assert_allclose(curve.exit_fraction.sum(axis=1), 1.0)
    assert len(np.unique(curve.mflops)) > 10  # the sweep really moves samples between exits


def test_standalone_accuracy():
    assert standalone_accuracy(EE, LABELS) == 60.0
    assert standalone_accuracy(EF, LABELS) == 80.0
    assert type(standalone_accuracy(EF, LABELS)) is float
    with pytest.raises(ValueError):
        standalone_accuracy(EF, LABELS[:4])


@pytest.mark.parametrize(
    "args, match",
    [
        (([EE, EF], LABELS, PATH, "greedy"), "strict, cascade"),
        (([EE, EF], LABELS, [2.0], "strict"), "path_mflops"),
        (([EE, EF[:4]], LABELS, PATH, "strict"), "exit 1"),
        (([EE, EF[:, :2]], LABELS, PATH, "strict"), "same C"),
        (([EE, EF], LABELS[:4], PATH, "strict"), "exit 0"),
        (([EE, EF], LABELS[:, None], PATH, "strict"), "labels"),
        (([], LABELS, [], "strict"), "at least one exit"),
        (([EE[0], EF[0]], LABELS, PATH, "strict"), "exit 0"),
    ],
)
def test_invalid_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        benefit_curve(*args)


def test_exit_index_invalid_inputs():
    with pytest.raises(ValueError, match="strict, cascade"):
        exit_index(np.zeros((3, 1)), RHOS, "loose")
    with pytest.raises(ValueError, match="N, K-1"):
        exit_index(np.zeros(3), RHOS, "strict")
    with pytest.raises(ValueError, match="one-dimensional"):
        exit_index(np.zeros((3, 1)), RHOS[:, None], "strict")


def test_choose_rho_takes_the_cheapest_point_within_the_drop():
    rho = np.array([0.2, 0.5, 0.8, 1.0])
    curve = sweep.Curve(
        rho=rho,
        accuracy=np.array([80.0, 88.5, 89.5, 90.0]),
        mflops=np.array([5.0, 6.0, 7.0, 9.0]),
        exit_fraction=np.zeros((4, 2)),
    )
    point = sweep.choose_rho(curve, base_accuracy=90.0, base_cost=10.0, drop=1.0)
    assert point.rho == 0.8 and point.met and point.reduction_pct == pytest.approx(30.0)
    assert sweep.choose_rho(curve, 90.0, 10.0, drop=2.0).rho == 0.5
    missed = sweep.choose_rho(curve, base_accuracy=95.0, base_cost=10.0, drop=1.0)
    assert missed.rho == 1.0 and not missed.met  # the most accurate point


def test_chosen_rho_is_recorded_under_its_units_key_in_order():
    """deploy.json and design.json hold the choice as {drop, accuracy, UNIT, reduction_pct, rho, met}."""
    curve = sweep.Curve(
        rho=np.array([0.2, 1.0]),
        accuracy=np.array([89.5, 90.0]),
        mflops=np.array([5.0, 10.0]),
        exit_fraction=np.zeros((2, 2)),
    )
    chosen = sweep.choose_rho(curve, 90.0, 10.0, drop=1, cost=np.array([2.0, 4.0]), unit="minstructions")
    assert list(chosen.to_json().items()) == [
        ("drop", 1),
        ("accuracy", 89.5),
        ("minstructions", 2.0),
        ("reduction_pct", 80.0),
        ("rho", 0.2),
        ("met", True),
    ]
    assert isinstance(chosen.to_json()["drop"], int)  # an integer drop stays one, as the records always held
