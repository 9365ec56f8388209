"""PLAN losses (Eq. 1): pixel DC + CE, Hungarian-matched lesion-branch point losses with Sec. 2.2 FES,
patient BCE and lesion-patient consistency (book/design_decisions.md#dd-training, #dd-matcher, #dd-lesion-loss, #dd-fes,
#dd-consistency, #dd-dc-ce)."""

from plan_lite.losses.criterion import PlanCriterion, consistency_loss, patient_targets, soft_patient_labels
from plan_lite.losses.matcher import HungarianMatcher, hungarian_match
from plan_lite.losses.pixel_loss import PixelDiceCELoss
from plan_lite.losses.point_sampling import fes_points, importance_points, point_sample, sample_points
from plan_lite.losses.targets import build_targets

__all__ = [
    "PlanCriterion", "HungarianMatcher", "hungarian_match", "PixelDiceCELoss", "build_targets",
    "point_sample", "importance_points", "fes_points", "sample_points", "consistency_loss",
    "soft_patient_labels",
    "patient_targets",
]
