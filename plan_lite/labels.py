"""The fixed label map (book/design_decisions.md#dd-d3) and the patient-level output groups.

Arrays in plan-lite are indexed (z, y, x) = (D, H, W). Labels 0-6 are "stuff" (background and organs),
7-14 are lesion ("thing") types.
"""

from __future__ import annotations

LABEL_NAMES: dict[int, str] = {
    0: "background",
    1: "liver",
    2: "gallbladder",
    3: "hepatic_vessels",
    4: "spleen",
    5: "stomach",
    6: "pancreas",
    7: "hcc",
    8: "icc",
    9: "metastasis",
    10: "hepatoblastoma",
    11: "hemangioma",
    12: "fnh",
    13: "cyst",
    14: "other",
}
NUM_CLASSES = len(LABEL_NAMES)  # pixel-branch classes (15)
STUFF_LABELS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
LESION_LABELS: tuple[int, ...] = (7, 8, 9, 10, 11, 12, 13, 14)
NUM_LESION_TYPES = len(LESION_LABELS)  # C = 8
LIVER_LABEL = 1
NO_OBJECT = NUM_CLASSES  # lesion-branch no-object index (15)
IGNORE_LABEL = 100  # voxels belonging to no target (official code's ignore label)

MALIGNANT_LABELS: tuple[int, ...] = (7, 8, 9, 10)
BENIGN_LABELS: tuple[int, ...] = (11, 12, 13)

LESION_TYPE_NAMES: tuple[str, ...] = tuple(LABEL_NAMES[k] for k in LESION_LABELS)

# Patient outputs, C + 3 = 11 (Sec. 2.3 of the paper; book/design_decisions.md#dd-d3).
PATIENT_GROUPS: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "paper": (
        ("any_tumor", LESION_LABELS),
        ("benign", BENIGN_LABELS),
        ("malignant", MALIGNANT_LABELS),
        *((f"type_{LABEL_NAMES[k]}", (k,)) for k in LESION_LABELS),
    ),
    # Official code: tumour without cyst, malignant, benign = hemangioma + FNH only.
    "code": (
        ("any_tumor", (7, 8, 9, 10, 11, 12, 14)),
        ("malignant", MALIGNANT_LABELS),
        ("benign", (11, 12)),
        *((f"type_{LABEL_NAMES[k]}", (k,)) for k in LESION_LABELS),
    ),
}
NUM_PATIENT_OUTPUTS = 3 + NUM_LESION_TYPES  # 11
PHASES: tuple[str, ...] = ("nc", "la", "pv")
PHASE_NAMES: dict[str, str] = {"nc": "non-contrast", "la": "late arterial", "pv": "portal venous"}


def lesion_branch_labels(stuff_targets: bool) -> tuple[int, ...]:
    """Label ids of the lesion branch's classes, in the order of its class logits (no-object is the extra last one).

    With stuff targets (official code) the decoder classifies all 15 labels; without them it is the paper's
    C + 1 head: the 8 lesion types (labels 7..14) + no-object.
    """
    return tuple(range(NUM_CLASSES)) if stuff_targets else tuple(LESION_LABELS)


def lesion_class_ids(labels, num_classes: int):
    """Label ids (tensor) -> lesion-branch class ids for a head of ``num_classes`` (+ no-object) classes."""
    return labels - min(LESION_LABELS) if num_classes == NUM_LESION_TYPES else labels


def patient_output_names(groups: str = "paper") -> list[str]:
    """Names of the C + 3 patient outputs, in order, for ``patient_groups`` ``paper`` or ``code``."""
    return [name for name, _ in PATIENT_GROUPS[groups]]


def patient_labels_from_label_counts(voxel_counts: dict[int, int], groups: str = "paper",
                                     size_threshold: float | None = None) -> list[float]:
    """C + 3 patient labels from per-label voxel counts.

    ``size_threshold=None`` gives hard 0/1 labels (any voxel present); a number gives the official code's soft
    volume labels ``min(1, voxels / size_threshold)`` (book/design_decisions.md#dd-patient-branch, size_th = 100).
    """
    out = []
    for _, labels in PATIENT_GROUPS[groups]:
        n = sum(int(voxel_counts.get(k, 0)) for k in labels)
        out.append(float(n > 0) if size_threshold is None else min(1.0, n / float(size_threshold)))
    return out
