"""Pixel-, lesion- and patient-level evaluation of PLAN predictions (paper Tables 1 and 2).

The protocol (lesions = 26-connected tumour components, 3 mm radius rule, one-to-one matching at lesion Dice > 0.2,
recall by radius bin, majority lesion type; patient sensitivity/specificity at a val-chosen threshold, AUCs) is
documented in the submodules: ``lesion``, ``pixel``, ``patient``, ``evaluate``, ``report``.
"""

from plan_lite.metrics.evaluate import (
    bootstrap_intervals,
    evaluate_case,
    evaluate_folders,
    flatten_metrics,
    marked_liver_fraction,
    recall_from_bins,
)
from plan_lite.metrics.lesion import (
    bin_names,
    equivalent_radius,
    lesion_metrics_case,
    match_lesions,
    summarize_lesions,
    tumor_mask,
)
from plan_lite.metrics.patient import (
    choose_threshold,
    patient_metrics,
    read_cases_table,
    read_patient_scores,
    readout_gap,
    roc_curves,
)
from plan_lite.metrics.pixel import mask_dice, pixel_dice, summarize_pixel
from plan_lite.metrics.report import tables_markdown

__all__ = [
    "bin_names", "bootstrap_intervals", "choose_threshold", "equivalent_radius", "evaluate_case", "evaluate_folders", "flatten_metrics", "marked_liver_fraction",
    "lesion_metrics_case", "mask_dice", "match_lesions", "patient_metrics", "pixel_dice", "read_cases_table",
    "read_patient_scores", "readout_gap", "recall_from_bins", "roc_curves", "summarize_lesions", "summarize_pixel", "tables_markdown", "tumor_mask",
]
