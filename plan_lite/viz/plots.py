"""Figures for the lessons: ROC curves, recall by lesion size, loss curves, sampled points, HU enhancement curves.

Every function returns a matplotlib ``Figure`` built without pyplot (Agg-safe, nothing leaks between calls).
Inputs are the plain dicts that ``plan_lite.metrics`` and the training log (``log.jsonl``) produce.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from plan_lite.errors import PlanLiteError
from plan_lite.labels import LABEL_NAMES, PHASE_NAMES
from plan_lite.viz.montage import LABEL_COLORS, resolve_window

_CYCLE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _new(figsize: tuple[float, float], ax: Any = None) -> tuple[Figure, Any]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _curve(value: Any) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(fpr, tpr, auc) from ``(fpr, tpr)`` or a dict with ``fpr``, ``tpr`` and optional ``auc``."""
    if isinstance(value, Mapping):
        fpr, tpr, auc = value["fpr"], value["tpr"], value.get("auc")
    else:
        fpr, tpr = value[0], value[1]
        auc = None
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    if auc is None and len(fpr) > 1:
        order = np.argsort(fpr, kind="stable")
        trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
        auc = float(trapezoid(tpr[order], fpr[order]))
    return fpr, tpr, None if auc is None else float(auc)


def plot_roc(curves: Mapping[str, Any] | Sequence[Any], operating_point: Mapping[str, Any] | Sequence[float] | None
             = None, title: str = "Patient-level ROC", ax: Any = None) -> Figure:
    """ROC curves, one per output (``{"any_tumor": {"fpr": [...], "tpr": [...], "auc": 0.97}, ...}``), or a single
    ``(fpr, tpr)`` pair. A metrics dict whose ``"roc"`` key holds such a mapping is accepted too.

    ``operating_point``: ``(fpr, tpr)`` for a single curve, or ``{name: (fpr, tpr) or {"fpr", "tpr",
    "threshold"}}``; drawn as a marker (the threshold chosen on the validation split).
    """
    if isinstance(curves, Mapping) and "roc" in curves and isinstance(curves["roc"], Mapping):
        curves = curves["roc"]
    if isinstance(curves, Mapping) and "fpr" in curves:
        curves = {"ROC": curves}
    if not isinstance(curves, Mapping):
        curves = {"ROC": curves}
    if not curves:
        raise PlanLiteError("viz: plot_roc needs at least one curve")
    fig, ax = _new((4.6, 4.2), ax)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ops: Mapping[str, Any] = {}
    if operating_point is not None:
        ops = operating_point if isinstance(operating_point, Mapping) else {next(iter(curves)): operating_point}
        if isinstance(ops, Mapping) and "fpr" in ops:
            ops = {next(iter(curves)): ops}
    for i, (name, value) in enumerate(curves.items()):
        fpr, tpr, auc = _curve(value)
        color = _CYCLE[i % len(_CYCLE)]
        ax.plot(fpr, tpr, color=color, lw=1.6, label=name if auc is None else f"{name} (AUC {auc:.3f})",
                drawstyle="steps-post" if len(fpr) > 20 else "default")
        if name in ops:
            op = ops[name]
            ofpr, otpr = (op["fpr"], op["tpr"]) if isinstance(op, Mapping) else (op[0], op[1])
            text = f"  t={op['threshold']:.2f}" if isinstance(op, Mapping) and "threshold" in op else ""
            ax.plot([ofpr], [otpr], "o", color=color, ms=7, mfc="white", mew=2, gid="operating_point")
            if text:
                ax.annotate(text, (ofpr, otpr), fontsize=7, color=color)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    return fig


def _recall_table(value: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    if "recall_by_radius" in value and isinstance(value["recall_by_radius"], Mapping):
        return value["recall_by_radius"]
    return value


def plot_recall_by_size(results: Mapping[str, Any], title: str = "Lesion recall by radius", ax: Any = None
                        ) -> Figure:
    """Grouped bars of lesion recall per radius bin.

    ``results``: one table ``{bin: {"gt": n, "detected": k, "recall": r}}`` (as in ``metrics["recall_by_radius"]``),
    a metrics dict holding one, or ``{model name: table or metrics dict}`` for several models side by side.
    Each bar is labelled ``detected/gt``; bins with no ground-truth lesion show "n/a".
    """
    if not results:
        raise PlanLiteError("viz: plot_recall_by_size needs at least one table")
    first = next(iter(_recall_table(results).values()))
    single = isinstance(first, Mapping) and "gt" in first
    models = {"model": _recall_table(results)} if single else {k: _recall_table(v) for k, v in results.items()}
    bins: list[str] = []
    for table in models.values():
        bins += [b for b in table if b not in bins]
    fig, ax = _new((max(4.0, 1.1 * len(bins) * max(1, len(models)) ** 0.5 + 1.5), 3.4), ax)
    width = 0.8 / len(models)
    x = np.arange(len(bins))
    labelled: set[str] = set()
    for i, (name, table) in enumerate(models.items()):
        xs = x - 0.4 + width * (i + 0.5)
        for xi, b in zip(xs, bins):
            row = table.get(b, {})
            gt, det = int(row.get("gt", 0)), int(row.get("detected", 0))
            recall = row.get("recall")
            if recall is None and gt:
                recall = det / gt
            if not gt or recall is None or (isinstance(recall, float) and math.isnan(recall)):
                ax.text(xi, 0.02, "n/a", ha="center", fontsize=6, color="0.5")
                continue
            bars = ax.bar(xi, recall, width=width * 0.95, color=_CYCLE[i % len(_CYCLE)],
                          label=None if name in labelled else name)
            bars.patches[0].set_gid("recall_bar")
            labelled.add(name)
            ax.text(xi, recall + 0.02, f"{det}/{gt}", ha="center", fontsize=6)
    if not single:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xticks(x, [f"{b} mm" if "mm" not in str(b) else str(b) for b in bins], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("lesion radius bin")
    ax.set_ylabel("recall (detected / GT lesions)")
    ax.set_title(title, fontsize=10)
    return fig


def read_log(log: str | os.PathLike | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Records of a training log: a ``log.jsonl`` path (one JSON object per line) or an iterable of dicts."""
    if isinstance(log, (str, os.PathLike)):
        path = Path(log)
        if not path.exists():
            raise PlanLiteError(f"{path}: training log not found")
        records = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise PlanLiteError(f"{path}:{n}: not a JSON line") from None
        return records
    return [dict(r) for r in log]


def plot_loss_curves(log: str | os.PathLike | Iterable[Mapping[str, Any]], terms: Sequence[str] | None = None,
                     log_scale: bool = True, stage_boundary: int | None = None, smooth: int = 1,
                     title: str = "Training losses", ax: Any = None) -> Figure:
    """Loss terms (``loss_*`` keys and ``total``) against ``step``.

    The stage-1 -> stage-2 boundary is marked at ``stage_boundary`` or, if None, where the records' ``stage`` key
    changes. ``smooth`` > 1 applies a running mean over that many records. Records without a given term (e.g.
    stage-1 records have no lesion terms) are skipped for that term; non-finite values are dropped.
    """
    records = [r for r in read_log(log) if "step" in r]
    if not records:
        raise PlanLiteError("viz: training log has no records with a 'step'")
    if terms is None:
        terms = sorted({k for r in records for k in r if k.startswith("loss_")})
        if any("total" in r for r in records):
            terms = ["total", *terms]
    fig, ax = _new((6.4, 3.8), ax)
    for i, term in enumerate(terms):
        pts = [(r["step"], float(r[term])) for r in records
               if isinstance(r.get(term), (int, float)) and math.isfinite(float(r[term]))]
        if not pts:
            continue
        steps, vals = np.array(pts).T
        if smooth > 1 and len(vals) >= smooth:
            vals = np.convolve(vals, np.ones(smooth) / smooth, mode="valid")
            steps = steps[smooth - 1:]
        ax.plot(steps, vals, lw=2.0 if term == "total" else 1.1, color="k" if term == "total" else _CYCLE[i % 9],
                label=term)
    if stage_boundary is None:
        for prev, cur in zip(records, records[1:]):
            if "stage" in prev and "stage" in cur and prev["stage"] != cur["stage"]:
                stage_boundary = cur["step"]
                break
    if stage_boundary is not None:
        ax.axvline(stage_boundary, color="0.4", ls="--", lw=1, gid="stage_boundary")
        ax.annotate(" stage 2", (stage_boundary, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=7)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return fig


def plot_points(image2d: np.ndarray, points: np.ndarray, mask: np.ndarray | None = None,
                kinds: Sequence[Any] | None = None, window: str | tuple[float, float] = "liver",
                z_index: int | None = None, depth: int | None = None, title: str = "Sampled points",
                ax: Any = None) -> Figure:
    """Sampled points (FES lesson, Sec. 2.2) over one CT slice and the lesion mask.

    ``points``: (N, 3) (z, y, x) in [0, 1] normalised coordinates, with voxel i at (i + 0.5) / S (D4,
    book/design_decisions.md#dd-d4). With ``z_index`` and ``depth`` only the points whose z falls in that slice are
    drawn. ``kinds``: one tag per point (e.g. ``"uniform"``, ``"importance"``, ``"fes"``); each kind gets its colour
    and legend entry.
    """
    img = np.asarray(image2d)
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    kinds_arr = np.asarray(kinds if kinds is not None else ["points"] * len(pts), dtype=object)
    if len(kinds_arr) != len(pts):
        raise PlanLiteError(f"viz: {len(kinds_arr)} kinds for {len(pts)} points")
    if z_index is not None and depth is not None:
        keep = np.floor(pts[:, 0] * depth).astype(int) == int(z_index)
        pts, kinds_arr = pts[keep], kinds_arr[keep]
    h, w = img.shape
    fig, ax = _new((4.6, 4.8), ax)
    vmin, vmax = resolve_window(window)
    ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    if mask is not None and np.any(mask):
        ax.contour(np.asarray(mask, dtype=np.float32), levels=[0.5], colors=["#e41a1c"], linewidths=1.2)
    styles = {"fes": ("*", "#ffd92f", 60), "importance": ("o", "#ff7f00", 10), "uniform": (".", "#00ced1", 8)}
    for i, kind in enumerate(dict.fromkeys(kinds_arr.tolist())):
        sel = kinds_arr == kind
        marker, color, size = styles.get(str(kind), ("o", _CYCLE[i % 9], 10))
        ax.scatter(pts[sel, 2] * w - 0.5, pts[sel, 1] * h - 0.5, s=size, marker=marker, c=color,
                   label=f"{kind} ({int(sel.sum())})", linewidths=0)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    if len(pts):
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    return fig


def plot_hu_curves(phases: Sequence[str], mean_hu: Mapping[str, Sequence[float]],
                   std_hu: Mapping[str, Sequence[float]] | None = None, title: str = "Enhancement by phase",
                   ax: Any = None) -> Figure:
    """Mean HU per phase for each tissue / lesion type (data lesson): ``mean_hu = {"hcc": [40, 110, 70], ...}``.

    Names of the label map get their ``LABEL_COLORS`` colour; ``std_hu`` adds error bars.
    """
    if not mean_hu:
        raise PlanLiteError("viz: plot_hu_curves needs at least one curve")
    names = {v: k for k, v in LABEL_NAMES.items()}
    x = np.arange(len(phases))
    fig, ax = _new((5.6, 3.8), ax)
    used = {LABEL_COLORS[names[n]] for n in mean_hu if n in names}
    for i, (name, values) in enumerate(mean_hu.items()):
        if len(values) != len(phases):
            raise PlanLiteError(f"viz: {name!r} has {len(values)} values for {len(phases)} phases")
        if name in names and name not in ("cyst", "background"):  # white/black would vanish on the axes
            color = LABEL_COLORS[names[name]]
        else:
            color = next((c for c in _CYCLE if c not in used), _CYCLE[i % len(_CYCLE)])
        used.add(color)
        yerr = None if std_hu is None or name not in std_hu else np.asarray(std_hu[name], dtype=float)
        ax.errorbar(x, np.asarray(values, dtype=float), yerr=yerr, marker="o", lw=1.4, capsize=3, color=color,
                    label=name)
    ax.set_xticks(x, [PHASE_NAMES.get(p, p) for p in phases], fontsize=8)
    ax.set_ylabel("mean HU")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _val(stat: Mapping[str, Any] | None) -> tuple[float, float]:
    """(mean, sd) of a ``{"mean", "sd"}`` dict as floats (NaN for missing; sd 0 when undefined)."""
    if not stat or stat.get("mean") is None:
        return math.nan, 0.0
    return float(stat["mean"]), float(stat["sd"]) if stat.get("sd") is not None else 0.0


def plot_paired_differences(report: Mapping[str, Any], metrics: Sequence[str] = ("f1", "recall", "precision",
                                                                                   "auc_malignant"),
                            title: str | None = None, ax: Any = None) -> Figure:
    """Paired differences against ``plan`` (``plan_lite.engine.experiment`` report, ``report["paired"]``): one
    row per variant, one marker per metric at the mean (percentage points) with a bar of +- 1 sd over seeds; the
    dashed line is "no difference" (left of it: below PLAN, the paper's direction)."""
    paired = report.get("paired") or {}
    if not paired:
        raise PlanLiteError("viz: plot_paired_differences needs a report with paired differences (two variants)")
    variants = list(paired)
    fig, ax = _new((7.0, 0.5 * len(variants) + 1.4), ax)
    step = 0.7 / max(1, len(metrics))
    for j, k in enumerate(metrics):
        ys = np.arange(len(variants)) - 0.35 + step * (j + 0.5)
        vals = [_val(paired[v].get(k)) for v in variants]
        ax.errorbar([100 * m for m, _ in vals], ys, xerr=[100 * s for _, s in vals], fmt="o", ms=4, capsize=2,
                    color=_CYCLE[j % len(_CYCLE)], label=k)
    ax.axvline(0, color="0.3", ls="--", lw=1)
    ax.set_yticks(np.arange(len(variants)), [f"{v} − plan" for v in variants], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("difference (percentage points), mean ± sd over seeds")
    ax.set_title(title or "Each variant against PLAN on the same seeds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_mechanisms(report: Mapping[str, Any]) -> Figure:
    """The three mechanism measurements of an experiment report (``report["mechanisms"]``), one panel each:
    FES - recall of lesions of radius < 5 and 5-10 mm with and without FES; anchors - matched-mask Dice and
    class accuracy over the stage-2 steps with and without anchor queries (mean over seeds, band = +- 1 sd);
    consistency - the test-split gap between the lesion-derived and the patient-branch readouts and the patient
    AUCs with and without the term. A panel whose variants were not run says so."""
    mech = report.get("mechanisms") or {}
    fig = Figure(figsize=(13.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)

    def bars(ax, table, keys, labels, title):
        if len(table) < 1:
            ax.text(0.5, 0.5, "variants not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=10)
            return
        width = 0.8 / len(table)
        x = np.arange(len(keys))
        for i, (name, stats) in enumerate(table.items()):
            vals = [_val(stats.get(k)) for k in keys]
            ax.bar(x - 0.4 + width * (i + 0.5), [m for m, _ in vals], width * 0.95, yerr=[s for _, s in vals],
                   capsize=3, color=_CYCLE[i % len(_CYCLE)], label=name)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=10)

    bars(axes[0], mech.get("fes", {}), ("recall_[3,5)", "recall_[5,10)"), ("radius 3-5 mm", "radius 5-10 mm"),
         "FES: recall of small lesions")
    axes[0].set_ylabel("recall, mean ± sd over seeds")
    ax = axes[1]
    anchors = {k: v for k, v in (mech.get("anchors") or {}).items() if v.get("step")}
    for i, (name, c) in enumerate(anchors.items()):
        steps = np.asarray(c["step"], dtype=float)
        for key, ls in (("match_dice", "-"), ("match_class_acc", ":")):
            m = np.asarray([np.nan if x is None else x for x in c[key]], dtype=float)
            sd = np.asarray([0.0 if x is None else x for x in c.get(key + "_sd", [None] * len(m))], dtype=float)
            label = f"{name}: {'mask Dice' if key == 'match_dice' else 'class accuracy'}"
            ax.plot(steps, m, ls, color=_CYCLE[i % len(_CYCLE)], lw=1.5, label=label)
            ax.fill_between(steps, m - sd, m + sd, color=_CYCLE[i % len(_CYCLE)], alpha=0.12, lw=0)
    if not anchors:
        ax.text(0.5, 0.5, "variants not run", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=7)
        ax.set_ylim(0, 1.05)
    ax.set_xlabel("training step (stage 2)")
    ax.set_ylabel("matched lesion queries")
    ax.set_title("Anchors: how fast matching is learned", fontsize=10)
    ax.grid(alpha=0.3)
    bars(axes[2], {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in
                   (mech.get("consistency") or {}).items()},
         ("readout_gap", "auc_any_tumor", "auc_malignant", "auc_benign"),
         ("readout gap", "AUC tumour", "AUC malignant", "AUC benign"), "Consistency: readouts and AUCs")
    return fig



def plot_budgets(reports: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("f1", "recall", "precision")
                 ) -> Figure:
    """The same experiment at several budgets (``plan_lite.engine.experiment`` reports): one panel per metric, one
    group of bars per variant, one bar per report (mean ± 1 sd over its seeds, in %), labelled by its budget."""
    if not reports:
        raise PlanLiteError("viz: plot_budgets needs at least one experiment report")
    variants = list(dict.fromkeys(v for r in reports for v in r.get("table", {})))
    fig = Figure(figsize=(3.1 * len(metrics), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    width = 0.8 / len(reports)
    x = np.arange(len(variants))
    for ax, k in zip(axes, metrics):
        for i, r in enumerate(reports):
            m = r.get("meta", {})
            label = f"{m['max_steps']} steps" if m.get("max_steps") else f"{m.get('max_minutes')} min"
            vals = [_val(r["table"].get(v, {}).get(k)) for v in variants]
            ax.bar(x - 0.4 + width * (i + 0.5), [100 * a for a, _ in vals], width * 0.95,
                   yerr=[100 * b for _, b in vals], capsize=2, color=_CYCLE[i % len(_CYCLE)], label=label)
        ax.set_xticks(x, variants, fontsize=8, rotation=35, ha="right")
        ax.set_title(k, fontsize=11)
        ax.set_ylabel("%, mean ± sd over seeds", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_type_sources(report: Mapping[str, Any]) -> Figure:
    """Type accuracy of matched test lesions by lesion type source (``benchmarks/bench_type_source.py``'s JSON:
    ``report["results"][checkpoint]["sources"][source]``): one group of bars per checkpoint, one bar per source
    (``query`` / ``pixel`` / ``fused``, ``InferConfig.lesion_type``) with its 95 % bootstrap interval over test
    cases, and a diamond at the source's val accuracy (what a choice on val would see)."""
    results = report.get("results") or {}
    if not results:
        raise PlanLiteError("viz: plot_type_sources needs a report with results (bench_type_source.py's JSON)")
    names = list(results)
    sources = list(dict.fromkeys(s for r in results.values() for s in r.get("sources", {})))
    fig, ax = _new((1.9 * len(names) + 2.4, 3.4))
    width = 0.8 / max(1, len(sources))
    x = np.arange(len(names))
    for i, src in enumerate(sources):
        rows = [results[n].get("sources", {}).get(src, {}) for n in names]
        acc = np.array([np.nan if r.get("test_type_accuracy") is None else 100 * r["test_type_accuracy"]
                        for r in rows])
        ci = [r.get("type_accuracy_ci95") or (None, None) for r in rows]
        lo = np.array([0.0 if c[0] is None else a - 100 * c[0] for a, c in zip(acc, ci)])
        hi = np.array([0.0 if c[1] is None else 100 * c[1] - a for a, c in zip(acc, ci)])
        xs = x - 0.4 + width * (i + 0.5)
        color = _CYCLE[i % len(_CYCLE)]
        ax.bar(xs, acc, width * 0.95, yerr=[np.clip(lo, 0, None), np.clip(hi, 0, None)], capsize=3, color=color,
               label=f"{src} (test, 95 % CI)")
        val = [np.nan if r.get("val_type_accuracy") is None else 100 * r["val_type_accuracy"] for r in rows]
        ax.plot(xs, val, "D", ms=5, color="black", mfc="white", label="val" if i == 0 else None)
    ax.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("type accuracy of matched lesions (%)")
    ax.set_title("Where a lesion's type comes from: the same detections typed three ways", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig

def plot_inference_modes(report: Mapping[str, Any], group: str = "plan",
                         metrics: Sequence[str] = ("f1", "precision", "recall", "recall_>=10")) -> Figure:
    """Test figures of one checkpoint group by inference mode (``benchmarks/bench_instance_paint.py``'s JSON:
    ``report["results"][checkpoint][mode]["summary"]``; checkpoints ``<group>_s<seed>``): one group of bars per
    metric, one bar per mode (painting, +gate = pixel agreement chosen on val) at the mean over checkpoints, with
    +- 1 sd and each checkpoint as a dot. The dashed line is the mean chance level (fraction of the liver marked)."""
    import re

    results = {n: r for n, r in (report.get("results") or {}).items() if re.sub(r"_s\d+$", "", n) == group}
    if not results:
        raise PlanLiteError(f"viz: plot_inference_modes found no checkpoint of group {group!r} in the report "
                            "(bench_instance_paint.py's JSON)")
    modes = list(dict.fromkeys(m for r in results.values() for m in r))
    fig, ax = _new((1.6 * len(metrics) + 2.6, 3.4))
    width = 0.8 / max(1, len(modes))
    x = np.arange(len(metrics))
    for i, mode in enumerate(modes):
        per = [[100 * r[mode]["summary"][k] if mode in r and r[mode]["summary"].get(k) is not None else np.nan
                for r in results.values()] for k in metrics]
        mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in per])
        sd = np.array([np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0.0 for v in per])
        xs = x - 0.4 + width * (i + 0.5)
        n = max(int(np.isfinite(v).sum()) for v in per)
        color = _CYCLE[i % len(_CYCLE)]
        ax.bar(xs, mean, width * 0.95, yerr=sd, capsize=3, color=color, label=f"{mode} ({n} run{'s' * (n > 1)})")
        for xi, v in zip(xs, per):
            ax.plot([xi] * len(v), v, ".", color="black", ms=3)
    chance = [100 * m["summary"]["chance"] for r in results.values() for m in r.values()
              if m["summary"].get("chance") is not None]
    if chance:
        ax.axhline(float(np.mean(chance)), ls="--", lw=1, color="grey", label="chance (liver marked)")
    ax.set_xticks(x, [k.replace("_", " ").replace(">=10", "r >= 10 mm") for k in metrics], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("test split (%)")
    ax.set_title(f"{group}: the same weights read out by each inference mode", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


__all__ = ["plot_roc", "plot_recall_by_size", "plot_paired_differences", "plot_mechanisms", "plot_budgets", "plot_type_sources", "plot_inference_modes", "plot_loss_curves", "plot_points", "plot_hu_curves", "read_log"]
