"""Markdown tables shaped like the paper's Table 1 (patient-level screening) and Table 2 (lesion level).
ROC curves are drawn by :func:`plan_lite.viz.plots.plot_roc`."""

from __future__ import annotations


def _pct(v) -> str:
    return "n/a" if v is None else f"{100.0 * v:.1f}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)])


def tables_markdown(metrics: dict, title: str | None = None) -> str:
    """Table 1 (patient level) when patient metrics exist, and Table 2 (lesion level). Values in %."""
    parts = [f"## {title}\n"] if title else []
    pat = metrics.get("patient") or {}
    if pat.get("available", pat.get("sensitivity") is not None):
        types = _pct(pat.get("auc_types_mean"))
        parts += [
            f"**Table 1 - patient level** (n={pat.get('n', '?')}, scores: {pat.get('score_source', '?')}, "
            f"threshold {pat.get('threshold', float('nan')):.4g}: {pat.get('threshold_source', '')})\n",
            _table(["Sensitivity", "Specificity (normal)", "Specificity (hard)", "Specificity (all)",
                    "AUC tumour", "AUC malignant", "AUC benign", "AUC types (mean)"],
                   [[_pct(pat.get("sensitivity")), _pct(pat.get("specificity_normal")),
                     _pct(pat.get("specificity_hard")), _pct(pat.get("specificity")),
                     _pct(pat.get("auc_any_tumor")), _pct(pat.get("auc_malignant")), _pct(pat.get("auc_benign")),
                     f"{types} ({pat.get('auc_types_n', 0)} types)"]]),
            "",
        ]
    les = metrics.get("lesion") or {}
    pix = metrics.get("pixel") or {}
    bins = les.get("recall_by_radius") or {}
    prot = metrics.get("protocol") or {}
    header = ["Precision", "Recall", *(f"Recall r{b} mm (n)" for b in bins), "Type acc.", "Dice", "Dice incl. empty"]
    row = [_pct(les.get("precision")), _pct(les.get("recall")),
           *(f"{_pct(v.get('recall'))} ({v.get('gt', 0)})" for v in bins.values()),
           _pct(les.get("type_accuracy")), _pct(pix.get("dice")), _pct(pix.get("dice_incl_empty"))]
    parts += [
        f"**Table 2 - lesion level** (cases={metrics.get('n_cases', '?')}, TP={les.get('tp')}, FP={les.get('fp')}, "
        f"FN={les.get('fn')}; lesion Dice > {prot.get('dice_threshold', 0.2)}, radius >= "
        f"{prot.get('min_radius_mm', 3)} mm)\n",
        _table(header, [row]),
    ]
    return "\n".join(parts) + "\n"


