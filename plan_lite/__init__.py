"""plan-lite: PLAN (Pixel-Lesion-pAtient Network, Yan et al., MICCAI 2023) for liver tumour screening and
diagnosis in CT, as a readable PyTorch package.

Stable entry points::

    cfg = plan_lite.get_preset("tiny", num_queries=8)
    model = plan_lite.build_model(cfg)
    criterion = plan_lite.build_criterion(cfg)
    losses = criterion(model(images), targets)   # dict of named terms + "total"
"""

from __future__ import annotations

from plan_lite.config import PlanConfig, get_preset
from plan_lite.errors import PlanLiteError

__version__ = "0.1.0"


def build_model(cfg: PlanConfig):
    """The PLAN network (or a baseline, by the config's switches). See ``plan_lite.model.plan``."""
    from plan_lite.model.plan import PLAN

    return PLAN(cfg)


def build_criterion(cfg: PlanConfig):
    """The Eq. 1 loss. See ``plan_lite.losses.criterion``."""
    from plan_lite.losses.criterion import PlanCriterion

    return PlanCriterion(cfg)


__all__ = ["PlanConfig", "get_preset", "build_model", "build_criterion", "PlanLiteError", "__version__"]
