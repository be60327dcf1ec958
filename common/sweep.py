"""Confidence-threshold sweep of an early-exit model: accuracy and cost for each threshold rho, and the
choice of rho on such a curve (`choose_rho`).

A model has K exits in path order (K=1: base model; K=2: T-RecX "ee", "ef"; K=3-4: SDN/BranchyNet).
A sample leaves at the first early exit k < K-1 whose max softmax passes rho, else at the last exit:
"strict" (T-RecX) passes when max softmax > rho, "cascade" (SDN/BranchyNet) when it is >= rho.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RHOS = np.linspace(0.01, 1.0, 101)
RULES = ("strict", "cascade")

# Slack (in accuracy percentage points) absorbing float rounding in `accuracy >= base - drop`.
_ACC_EPS = 1e-9


@dataclass(frozen=True, eq=False)  # arrays: identity equality, no elementwise ==
class Curve:
    """A benefit curve: one point per threshold.

    rho: (R,) thresholds; accuracy: (R,) percent; mflops: (R,) mean MFLOPs per sample;
    exit_fraction: (R, K) fraction of samples leaving at each exit (rows sum to 1).
    """

    rho: np.ndarray
    accuracy: np.ndarray
    mflops: np.ndarray
    exit_fraction: np.ndarray

    def points(self) -> np.ndarray:
        """(R, 2) array of (accuracy %, MFLOPs) pairs, in rho order."""
        return np.column_stack([self.accuracy, self.mflops])


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown exit rule {rule!r}; valid rules: {', '.join(RULES)}")


def exit_index(confidence: np.ndarray, rhos: np.ndarray, rule: str) -> np.ndarray:
    """Exit taken by each sample at each threshold.

    confidence: (N, K-1) max softmax of each early exit (K-1 may be 0); rhos: (R,).
    Returns (R, N) int array with values in [0, K-1].
    """
    _check_rule(rule)
    confidence = np.asarray(confidence, dtype=np.float64)
    rhos = np.asarray(rhos, dtype=np.float64)
    if confidence.ndim != 2:
        raise ValueError(f"confidence must have shape (N, K-1), got {confidence.shape}")
    if rhos.ndim != 1:
        raise ValueError(f"rhos must be one-dimensional, got shape {rhos.shape}")
    n, n_early = confidence.shape
    if n_early == 0:
        return np.zeros((rhos.size, n), dtype=np.int64)
    compare = np.greater if rule == "strict" else np.greater_equal
    passes = compare(confidence[None, :, :], rhos[:, None, None])  # (R, N, K-1)
    first = np.argmax(passes, axis=2)
    return np.where(passes.any(axis=2), first, n_early).astype(np.int64)


def benefit_curve(
    softmaxes: Sequence[np.ndarray],
    labels: np.ndarray,
    path_mflops: Sequence[float],
    rule: str,
    rhos: np.ndarray = RHOS,
) -> Curve:
    """Accuracy and mean cost of the early-exit model at every threshold.

    softmaxes: K arrays (N, C) in exit order; labels: (N,) int class ids;
    path_mflops: K MFLOPs of the cumulative path ending at each exit; rule: one of RULES.
    """
    _check_rule(rule)
    if len(softmaxes) == 0:
        raise ValueError("softmaxes must hold at least one exit")
    probs = [np.asarray(s) for s in softmaxes]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must have shape (N,) with N >= 1, got {labels.shape}")
    for k, p in enumerate(probs):
        if p.ndim != 2 or p.shape != probs[0].shape or p.shape[0] != labels.size:
            raise ValueError(
                f"softmax of exit {k} has shape {p.shape}; every exit needs shape "
                f"(N, C) = ({labels.size}, C) with the same C"
            )
    cost = np.asarray(path_mflops, dtype=np.float64)
    if cost.shape != (len(probs),):
        raise ValueError(f"path_mflops must have {len(probs)} entries (one per exit), got shape {cost.shape}")

    n_exits, n = len(probs), labels.size
    correct = np.stack([p.argmax(axis=1) == labels for p in probs])  # (K, N)
    confidence = np.column_stack([p.max(axis=1) for p in probs[:-1]] or [np.empty((n, 0))])
    idx = exit_index(confidence, rhos, rule)  # (R, N)
    return Curve(
        rho=np.asarray(rhos, dtype=np.float64),
        accuracy=100.0 * correct[idx, np.arange(n)].mean(axis=1),
        mflops=cost[idx].mean(axis=1),
        exit_fraction=(idx[:, :, None] == np.arange(n_exits)).mean(axis=1),
    )


def mean_cost(curve: Curve, path_costs: Sequence[float]) -> np.ndarray:
    """(R,) mean cost per sample at each threshold of `curve`, for K per-path costs in any unit (the
    exit fractions weigh the paths, as `benefit_curve` weighs the MFLOPs)."""
    path_costs = np.asarray(path_costs, dtype=np.float64)
    if path_costs.shape != (curve.exit_fraction.shape[1],):
        raise ValueError(f"need {curve.exit_fraction.shape[1]} path costs (one per exit), got shape {path_costs.shape}")
    return curve.exit_fraction @ path_costs


def tradeoff_points(
    curve: Curve,
    base_accuracy: float,
    base_cost: float,
    drops: Sequence[int] = (1, 2, 3),
    cost: np.ndarray | None = None,
    unit: str = "mflops",
) -> list[dict]:
    """Cheapest curve point within each accuracy drop (percentage points) of the base model.

    cost: (R,) mean cost per sample at each rho (`mean_cost`), default the curve's MFLOPs; unit: its
    key in the result; base_cost: the base model's, in that unit. Ties go to higher accuracy, then lower
    rho. Returns one JSON-ready dict per drop with keys drop, accuracy (%), UNIT, reduction_pct (% of
    base_cost saved), rho; all None but drop when no point qualifies.
    """
    cost = curve.mflops if cost is None else np.asarray(cost, dtype=np.float64)
    order = np.lexsort((curve.rho, -curve.accuracy, cost))
    points = []
    for drop in drops:
        ok = order[curve.accuracy[order] >= base_accuracy - drop - _ACC_EPS]
        drop = int(drop) if float(drop).is_integer() else float(drop)
        entry = {"drop": drop, "accuracy": None, unit: None, "reduction_pct": None, "rho": None}
        if ok.size:
            i = ok[0]
            entry.update(
                {
                    "accuracy": float(curve.accuracy[i]),
                    unit: float(cost[i]),
                    "reduction_pct": float(100.0 * (1.0 - cost[i] / base_cost)),
                    "rho": float(curve.rho[i]),
                }
            )
        points.append(entry)
    return points


@dataclass(frozen=True)
class ChosenRho:
    """The rho `choose_rho` chose: the cheapest within `drop` accuracy points of the base model, or, when
    none reaches that accuracy (`met` False), the most accurate (cheapest among equals).

    accuracy: % at rho; cost: mean cost per sample there, in `unit`; reduction_pct: % of the base model's
    cost saved. `to_json()` is the record deploy.json and design.json hold, the cost under its unit's key.
    """

    drop: float
    accuracy: float
    cost: float
    reduction_pct: float
    rho: float
    met: bool
    unit: str = "mflops"

    def to_json(self) -> dict[str, float | bool]:
        """{drop, accuracy, UNIT, reduction_pct, rho, met}, in that order."""
        return {
            "drop": self.drop,
            "accuracy": self.accuracy,
            self.unit: self.cost,
            "reduction_pct": self.reduction_pct,
            "rho": self.rho,
            "met": self.met,
        }


def choose_rho(
    curve: Curve,
    base_accuracy: float,
    base_cost: float,
    drop: float,
    cost: np.ndarray | None = None,
    unit: str = "mflops",
) -> ChosenRho:
    """The trade-off point of `curve` (a validation benefit curve) at `drop` points below `base_accuracy`:
    the cheapest rho whose accuracy is at least base_accuracy - drop (`tradeoff_points`), cheapest in `cost`
    ((R,) per rho, `unit` its name; default the curve's MFLOPs) against the base model's `base_cost`; when
    no rho reaches that accuracy, the most accurate point (cheapest among equals), `met` False.
    """
    cost = curve.mflops if cost is None else np.asarray(cost, np.float64)
    point = tradeoff_points(curve, base_accuracy, base_cost, drops=(drop,), cost=cost, unit=unit)[0]
    if point["rho"] is not None:
        return ChosenRho(
            point["drop"], point["accuracy"], point[unit], point["reduction_pct"], point["rho"], True, unit
        )
    best = np.lexsort((cost, -curve.accuracy))[0]
    return ChosenRho(
        drop=point["drop"],
        accuracy=float(curve.accuracy[best]),
        cost=float(cost[best]),
        reduction_pct=float(100.0 * (1.0 - cost[best] / base_cost)),
        rho=float(curve.rho[best]),
        met=False,
        unit=unit,
    )


def standalone_accuracy(softmax: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (percent) of one exit on its own; softmax: (N, C), labels: (N,)."""
    softmax, labels = np.asarray(softmax), np.asarray(labels)
    if softmax.ndim != 2 or labels.shape != (softmax.shape[0],):
        raise ValueError(f"need softmax (N, C) and labels (N,), got {softmax.shape} and {labels.shape}")
    return float(100.0 * np.mean(softmax.argmax(axis=1) == labels))
