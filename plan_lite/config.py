"""One typed config for model, losses, data and training; presets by name (nanoGPT style).

Defaults are the paper's values (``paper`` preset); where the paper is silent they follow the official code
(alibaba-damo-academy/pixel-lesion-patient-network @ 4ca24452). Every paper/code difference is a field here,
see book/design_decisions.md#dd-d1 and ``plan-lite config --preset paper --diff official``.

Tensors are (B, C, D, H, W) with (D, H, W) = (z, y, x). Spacings are (z, y, x) in mm.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints

from plan_lite.errors import PlanLiteError

Triple = tuple[int, int, int]


@dataclass
class ModelConfig:
    """Architecture (Fig. 1): backbone + FPN, pixel branch, anchor queries, lesion branch, patient branch."""

    in_channels: int = 3  # one per CT phase (NC, late arterial, portal venous)
    # nnU-Net-style encoder for 0.7 x 0.7 x 5 mm (book/design_decisions.md#dd-backbone)
    stage_widths: tuple[int, ...] = (32, 64, 128, 256, 320, 320, 320)
    stage_strides: tuple[Triple, ...] = ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2))
    stage_kernels: tuple[Triple, ...] = ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    convs_per_stage: int = 2
    hidden_dim: int = 64  # M: FPN width, pixel embedding P and query width
    # Lesion branch (Mask2Former decoder, Sec. 2.2). Levels = encoder stage indices whose resolution the
    # transformer attends to, coarsest first: stages 4/3/2 = in-plane strides 16/8/4.
    transformer_levels: tuple[int, ...] = (4, 3, 2)
    num_queries: int = 20  # Q learned queries (paper 20, code 50)
    num_heads: int = 8
    dim_feedforward: int = 512
    dec_layers: int = 3
    pre_norm: bool = False
    dropout: float = 0.0
    query_pos_embed: bool = False  # official PLAN: unused; its Mask2Former baseline uses it
    fp32_attention: bool = True
    mask_logits_from_features: bool = True  # D6: exact memory-saving rewrite
    # Anchor queries (Sec. 2.2; book/design_decisions.md#dd-anchor-queries)
    anchor_queries: bool = True
    anchor_threshold: float = 0.1
    anchor_min_volume_mm3: float = 24.5  # components must be larger (code: 10 voxels at 0.7 x 0.7 x 5 mm)
    anchor_max_lesions: int = 20
    anchor_connectivity: int = 18
    lesion_stuff_targets: bool = True  # D2: background + organs are stuff targets/anchors (code)
    # Patient branch (Sec. 2.3; book/design_decisions.md#dd-patient-branch)
    patient_branch: bool = True
    patient_sources: tuple[tuple[str, int], ...] = (("enc", 2), ("enc", 4), ("fpn", 4), ("fpn", 2))
    patient_token_grid: Triple = (3, 8, 8)  # pixel tokens per source (patch-embed kernel = size / grid)
    patient_memory_tokens: int = 192
    patient_dim: int = 128
    patient_heads: int = 8
    patient_mlp_ratio: float = 4.0
    patient_dropout: float = 0.2
    patient_drop_path: float = 0.2
    patient_groups: Literal["paper", "code"] = "paper"  # labels.PATIENT_GROUPS
    # The lesion branch (Sec. 2.2); off = the nnU-Net-like pixel-only baseline (VARIANTS["pixel_only"])
    lesion_branch: bool = True


@dataclass
class LossConfig:
    """Eq. 1: L = 2 L_pixel + sum over prediction sets (2 CE + 5 BCE + 5 Dice) + 1 L_patient + 0.1 L_consist."""

    w_pixel: float = 2.0  # applied to CE and Dice of the pixel branch each (code: seg_CE*2, seg_DC*2)
    w_class: float = 2.0
    w_mask: float = 5.0
    w_dice: float = 5.0
    w_patient: float = 1.0
    w_consistency: float = 0.1
    no_object_weight: float = 0.1
    num_points: int = 12544  # K
    oversample_ratio: float = 3.0
    importance_ratio: float = 0.75
    fes: bool = True  # foreground-enhanced sampling (Sec. 2.2)
    fes_fg_points: int = 3  # n (paper 3; code int(0.0002 * K) = 2)
    fes_fg_on_stuff: bool = False  # code: FES points on stuff targets too
    fes_point_norm: Literal["center", "code"] = "center"  # "center": (i + 0.5) / S; "code": i / (S - 1)
    fes_pad: Literal["repeat", "random"] = "repeat"  # target < n voxels: "repeat" its voxels (all FES points fg); "random": any voxel (code)
    matcher_fg_points: bool = False  # D5 opt-in
    consistency: bool = True
    consistency_reduction: Literal["sum", "mean"] = "sum"  # "sum" (code) or "mean"
    patient_soft_labels: bool = True
    patient_size_threshold_mm3: float = 245.0  # lesion volume for a soft label of 1 (code: 100 voxels of 2.45 mm^3)
    deep_supervision: bool = True  # Mask2Former aux losses on every decoder layer
    pixel_batch_dice: bool = False


@dataclass
class DataConfig:
    """Data and preprocessing (nnU-Net CT normalisation)."""

    phases: tuple[str, ...] = ("nc", "la", "pv")
    spacing: tuple[float, float, float] = (5.0, 0.7, 0.7)  # (z, y, x) mm
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    liver_crop_margin_mm: float = 20.0
    min_lesion_volume_mm3: float = 24.5  # smaller lesions -> ignore label in training (code: 10 voxels of 2.45 mm^3)


@dataclass
class TrainConfig:
    """Optimisation (paper: RAdam 1e-4, batch 2, patch 24 x 256 x 256; the rest from the official code)."""

    patch_size: Triple = (24, 256, 256)
    batch_size: int = 2
    optimizer: Literal["radam"] = "radam"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    grad_clip: float = 12.0
    amp: bool = True  # used on GPU only
    iters_per_epoch: int = 250
    stage1_epochs: int = 500  # pixel branch only
    stage2_epochs: int = 500  # all branches
    patient_start_epoch: int = 50  # of stage 2: patient + consistency terms start
    fg_oversample: float = 0.33
    augment: bool = True
    elastic: bool = False
    val_every: int = 250
    seed: int = 0
    # Stage switch. The official stages are two runs: stage 2 loads the stage-1 weights into a fresh optimizer
    # with its own poly schedule. "continue" keeps the stage-1 RAdam state (this package before 0.2).
    stage2_optimizer: Literal["fresh", "continue"] = "fresh"
    stage2_warmup: float = 0.0  # fraction of stage 2 with a linear LR warm-up from 0
    stage2_backbone_lr_scale: float = 1.0  # LR factor of backbone + pixel branch in stage 2
    heads_lr_scale: float = 1.0  # LR factor of the lesion and patient branches (the transformer heads), every stage


@dataclass
class InferConfig:
    """How predictions are made (saved in every checkpoint, so ``predict`` reproduces what training validated).

    ``lesion_output``: ``"instance"`` (Mask2Former instance inference: a score per query = its lesion probability x
    its mask quality, queries above ``score_threshold`` painted by score x mask probability; the default) or
    ``"semantic"`` (PLAN's semantic merge of all queries, then ``lesion_decision``; the official code).
    ``semantic``: the per-voxel class probabilities for background and organs (and for ``"semantic"`` output):
    ``"lesion"`` (lesion branch), ``"pixel"`` (pixel branch softmax) or ``"fused"`` (their mean).
    ``instance_paint``: ``"lesion"`` (only lesion queries paint; the default) or ``"panoptic"`` (Mask2Former's panoptic
    inference: the stuff queries compete for the voxels too; +11 F1 points at 4,000 CPU-recipe steps, but after
    1,200 steps no lesion query beats them and nothing is found: benchmarks/results/instance_paint_cpu.md);
    ``overlap_threshold`` drops a query left with less than that fraction of its mask (0 = off).
    ``pixel_agreement`` (0 = off): a lesion of the instance output is kept only where the pixel branch's summed
    lesion probability reaches this value somewhere inside it (``postprocess.gate_lesions``); both branches must
    see the lesion. Calibration chooses it on val next to ``score_threshold`` (``plan_lite.engine.calibrate``):
    lesion F1 38.8 -> 62.4 % at 4,000 CPU-recipe steps (benchmarks/results/instance_paint_cpu.md).
    ``lesion_type``: where each predicted lesion's type comes from: ``"query"`` (the lesion branch's class head,
    per voxel; the paper), ``"pixel"`` (the pixel branch's mean type probabilities over the lesion) or ``"fused"``
    (the mean of the two distributions); the lesion is then one type throughout (``postprocess.retype_lesions``).
    Post-processing: lesions under ``drop_lesions_below_mm3`` or farther than ``max_liver_distance_mm``
    from the predicted liver are dropped (book/design_decisions.md#dd-inference).
    ``patient_no_lesion``: the patient scores of a case where no lesion is kept. ``"zero"`` (the official code):
    all 0, so every such case ties. ``"pixel"`` (plan-lite's addition; ``CPU_RECIPE`` sets it): 1 % of the pixel
    branch's highest probability of the output's lesion labels in the predicted liver
    (``postprocess.no_lesion_patient_scores``), below the scores of the cases with a lesion but ordered by how near
    the pixel branch came to one. After 10 CPU minutes the patient branch itself does not yet rank patients (AUC
    0.51 from its output over the liver), so the tie decides much of the ROC (test AUC any tumour 0.82 -> 0.86,
    after 5 minutes 0.80 -> 0.88; benchmarks/results/bench_budget_cpu.md).
    ``patient_readout``: the patient scores of a case with kept lesions. ``"patient"`` (the paper and official code):
    the patient branch's stitched outputs averaged over the predicted lesion voxels. ``"lesion"``: for each output
    the highest kept-lesion score times the share of that lesion's type probabilities on the output's labels
    (``postprocess.lesion_patient_scores``). ``"fused"`` (plan-lite's addition; ``CPU_RECIPE`` sets it): the mean of
    the two. A case without kept lesions follows ``patient_no_lesion`` whatever the readout.
    """

    lesion_output: Literal["instance", "semantic"] = "instance"
    semantic: Literal["lesion", "pixel", "fused"] = "lesion"
    lesion_decision: Literal["argmax", "merged"] = "argmax"  # semantic output
    lesion_type: Literal["query", "pixel", "fused"] = "query"
    score_threshold: float = 0.5  # instance output: keep queries whose score exceeds it
    instance_paint: Literal["lesion", "panoptic"] = "lesion"  # instance output: which kept queries compete per voxel
    overlap_threshold: float = 0.0  # instance output: drop a query that paints < this fraction of its mask (M2F 0.8)
    pixel_agreement: float = 0.0  # instance output: drop a lesion whose max pixel-branch lesion probability is below
    mask_threshold: float = 0.5  # instance output: a query's mask = sigmoid > this
    overlap: float = 0.5  # sliding-window overlap
    drop_lesions_below_mm3: float = 25.0
    max_liver_distance_mm: float = 3.0
    patient_no_lesion: Literal["zero", "pixel"] = "zero"  # patient scores of a case without kept lesions
    patient_readout: Literal["patient", "lesion", "fused"] = "patient"  # patient scores of a case with kept lesions


@dataclass
class PlanConfig:
    """Everything that defines a PLAN run. ``get_preset(name, **overrides)`` builds one."""

    name: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel at the training spacing (``data.spacing``)."""
        z, y, x = self.data.spacing
        return float(z * y * x)

    def voxels(self, volume_mm3: float) -> float:
        """A volume in mm^3 as a voxel count at the training spacing (size thresholds are set in mm^3)."""
        return float(volume_mm3) / self.voxel_volume_mm3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanConfig:
        """The config a ``to_dict`` wrote. Unknown keys are an error (as in ``apply_overrides``), except the two
        meta-flags of configs saved before 0.3 (``model.pixel_only`` / ``model.mask2former``), which are expanded
        into the plain flags of their variant."""
        d = _upgrade(d)
        unknown = [g for g in d if g not in ("name", *_GROUPS)]
        if unknown:
            raise PlanLiteError(f"config: unknown group(s) {', '.join(map(repr, unknown))}")

        def build(group, kind, values):
            names = {f.name for f in fields(kind)}
            bad = [k for k in values if k not in names]
            if bad:
                raise PlanLiteError(f"config: unknown option(s) {', '.join(f'{group}.{k}' for k in bad)}")
            base = kind()
            return kind(**{k: _coerce(getattr(base, k), v) for k, v in values.items()})

        cfg = cls(name=d.get("name", "custom"),
                  **{g: build(g, kind, d.get(g, {})) for g, kind in zip(_GROUPS, _KINDS)})
        validate_config(cfg)
        return cfg

    def flat(self) -> dict[str, Any]:
        """Dotted-key view, e.g. ``{"model.num_queries": 20, ...}``."""
        return {f"{g}.{k}": v for g in _GROUPS for k, v in asdict(getattr(self, g)).items()}


_GROUPS = ("model", "loss", "data", "train", "infer")
_KINDS = (ModelConfig, LossConfig, DataConfig, TrainConfig, InferConfig)


def _upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """Expand the meta-flags of configs saved before 0.3 into the plain flags they switched; a config saved before
    ``infer.instance_paint`` existed keeps the painting it was calibrated with (``"lesion"``)."""
    if "instance_paint" not in d.get("infer", {}):
        d = {**d, "infer": {**d.get("infer", {}), "instance_paint": "lesion"}}
    model = dict(d.get("model", {}))
    if "pixel_only" not in model and "mask2former" not in model and "num_classes" not in model:
        return d
    d = {**d, "model": model, "loss": dict(d.get("loss", {})), "train": dict(d.get("train", {}))}
    model.pop("num_classes", None)
    d["train"].pop("num_workers", None)
    for flag in ("pixel_only", "mask2former"):
        if model.pop(flag, False):
            for key, value in VARIANTS[flag].items():
                group = next(g for g, kind in zip(_GROUPS, _KINDS) if key in {f.name for f in fields(kind)})
                d[group][key] = value
    return d


def _choices() -> dict[str, tuple[str, ...]]:
    """``{"group.field": allowed values}`` of every ``Literal`` field (the one list of string options)."""
    out = {}
    for g, kind in zip(_GROUPS, _KINDS):
        for name, hint in get_type_hints(kind).items():
            if get_origin(hint) is Literal:
                out[f"{g}.{name}"] = get_args(hint)
    return out


def _coerce(default: Any, value: Any) -> Any:
    """Convert JSON/CLI values (lists, strings) to the type of the default."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            if value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif isinstance(default, tuple) and "," in value:  # CLI shorthand: patch_size=8,48,48
                try:
                    value = [json.loads(x) for x in value.split(",")]
                except json.JSONDecodeError:
                    raise PlanLiteError(f"config: cannot parse value {value!r}") from None
            else:
                raise PlanLiteError(f"config: cannot parse value {value!r}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise PlanLiteError(f"config: expected true/false, got {value!r}")
        return value
    if isinstance(default, tuple):
        def tup(v):
            return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
        return tup(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def apply_overrides(cfg: PlanConfig, **overrides: Any) -> PlanConfig:
    """Return a copy with overrides applied. Keys are field names (``num_queries``) or dotted (``model.num_queries``)."""
    cfg = replace(cfg, model=replace(cfg.model), loss=replace(cfg.loss), data=replace(cfg.data),
                  train=replace(cfg.train), infer=replace(cfg.infer))
    for key, value in overrides.items():
        if "." in key:
            group, name = key.split(".", 1)
            groups = [group] if group in _GROUPS else []
        else:
            name = key
            groups = [g for g in _GROUPS if name in {f.name for f in fields(getattr(cfg, g))}]
        groups = [g for g in groups if name in {f.name for f in fields(getattr(cfg, g))}]
        if key == "name":
            cfg.name = str(value)
            continue
        if len(groups) != 1:
            raise PlanLiteError(f"config: unknown option {key!r}")
        sub = getattr(cfg, groups[0])
        setattr(sub, name, _coerce(getattr(sub, name), value))
    validate_config(cfg)
    return cfg


def validate_config(cfg: PlanConfig) -> None:
    """Raise ``PlanLiteError`` for inconsistent settings."""
    m, d = cfg.model, cfg.data
    n = len(m.stage_widths)
    if not (len(m.stage_strides) == len(m.stage_kernels) == n):
        raise PlanLiteError("config: stage_widths, stage_strides and stage_kernels must have the same length")
    if any(not 0 <= i < n for i in m.transformer_levels):
        raise PlanLiteError(f"config: transformer_levels {m.transformer_levels} outside 0..{n - 1}")
    if m.in_channels != len(d.phases):
        raise PlanLiteError(f"config: in_channels={m.in_channels} but {len(d.phases)} phases {d.phases}")
    if m.hidden_dim % m.num_heads:
        raise PlanLiteError("config: hidden_dim must be divisible by num_heads")
    if not m.lesion_branch and (m.anchor_queries or cfg.loss.consistency):
        raise PlanLiteError("config: anchor_queries and consistency need the lesion branch (model.lesion_branch); "
                            "the pixel-only baseline is --variant pixel_only")
    t, inf = cfg.train, cfg.infer
    for key, allowed in _choices().items():
        group, name = key.split(".")
        value = getattr(getattr(cfg, group), name)
        if value not in allowed:
            raise PlanLiteError(f"config: {key} must be one of {', '.join(allowed)}, got {value!r}")
    if not 0.0 <= t.stage2_warmup < 1.0 or t.stage2_backbone_lr_scale < 0 or t.heads_lr_scale <= 0:
        raise PlanLiteError("config: stage2_warmup must be in [0, 1), stage2_backbone_lr_scale >= 0 and "
                            "heads_lr_scale > 0")
    if not 0.0 <= inf.overlap < 1.0:
        raise PlanLiteError(f"config: infer.overlap must be in [0, 1), got {inf.overlap}")
    if not 0.0 <= inf.overlap_threshold <= 1.0:
        raise PlanLiteError(f"config: infer.overlap_threshold must be in [0, 1], got {inf.overlap_threshold}")
    if not 0.0 <= inf.pixel_agreement <= 1.0:
        raise PlanLiteError(f"config: infer.pixel_agreement must be in [0, 1], got {inf.pixel_agreement}")
    total = total_stride(cfg)
    if any(p % t for p, t in zip(cfg.train.patch_size, total)):
        raise PlanLiteError(f"config: patch_size {cfg.train.patch_size} not divisible by total stride {total}")


def cumulative_strides(cfg: PlanConfig) -> list[Triple]:
    """Cumulative (z, y, x) stride of every encoder stage."""
    out, cur = [], (1, 1, 1)
    for s in cfg.model.stage_strides:
        cur = tuple(c * x for c, x in zip(cur, s))
        out.append(cur)
    return out


def total_stride(cfg: PlanConfig) -> Triple:
    """(z, y, x) stride of the deepest encoder stage: every input size must be a multiple of it."""
    return cumulative_strides(cfg)[-1]


def _paper() -> PlanConfig:
    return PlanConfig(name="paper")


def _paper_nc() -> PlanConfig:
    cfg = _paper()
    cfg.name = "paper_nc"
    cfg.model.in_channels = 1
    cfg.data.phases = ("nc",)
    return cfg


def _official() -> PlanConfig:
    """The official code's differences from the paper (book/design_decisions.md#dd-d1)."""
    cfg = _paper()
    cfg.name = "official"
    cfg.model.num_queries = 50
    cfg.model.patient_groups = "code"
    cfg.loss.fes_fg_points = 2
    cfg.loss.fes_fg_on_stuff = True
    cfg.loss.fes_point_norm = "code"
    cfg.loss.fes_pad = "random"
    cfg.infer.lesion_output = "semantic"
    return cfg


def _tiny() -> PlanConfig:
    """Same code, CPU teaching size: 5 stages, widths 8..64, M = 16, Q = 8, K = 2048, patch 16 x 96 x 96.

    M = 16 (2 heads of 8, the paper's head width) rather than 32: the full-resolution FPN/pixel convs cost ~M^2 and
    dominate a CPU step (measured 7.5 vs 3.0 CPU-s per stage-2 step, batch 2, one thread).
    """
    cfg = _paper()
    cfg.name = "tiny"
    m = cfg.model
    m.stage_widths = (8, 16, 32, 64, 64)
    m.stage_strides = ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    m.stage_kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    m.hidden_dim = 16
    m.num_queries = 8
    m.num_heads = 2
    m.dim_feedforward = 128
    m.patient_token_grid = (2, 3, 3)
    m.patient_memory_tokens = 16
    m.patient_dim = 32
    m.patient_heads = 4
    m.patient_dropout = 0.0
    m.patient_drop_path = 0.0
    cfg.loss.num_points = 2048
    cfg.data.spacing = (5.0, 2.5, 2.5)
    cfg.train.patch_size = (16, 96, 96)
    cfg.train.lr = 1e-3
    cfg.train.iters_per_epoch = 25
    cfg.train.stage1_epochs = 4
    cfg.train.stage2_epochs = 8
    cfg.train.patient_start_epoch = 2
    cfg.train.val_every = 50
    return cfg


def _tiny_nc() -> PlanConfig:
    cfg = _tiny()
    cfg.name = "tiny_nc"
    cfg.model.in_channels = 1
    cfg.data.phases = ("nc",)
    return cfg


PRESETS = {"paper": _paper, "paper_nc": _paper_nc, "official": _official, "tiny": _tiny, "tiny_nc": _tiny_nc}
# Variants (ablations and baselines) as overrides on any preset.
VARIANTS: dict[str, dict[str, Any]] = {
    "plan": {},
    "no_anchor": {"anchor_queries": False},
    "no_fes": {"fes": False},
    "no_consistency": {"consistency": False},
    # nnU-Net-like: backbone + pixel branch; patient score from the predicted tumour volume
    "pixel_only": {"lesion_branch": False, "anchor_queries": False, "patient_branch": False, "fes": False,
                   "consistency": False},
    # PLAN's 3D Mask2Former baseline: learned queries with positional embedding, no anchors, FES, patient branch
    "mask2former": {"anchor_queries": False, "patient_branch": False, "fes": False, "consistency": False,
                    "query_pos_embed": True},
}

# A few CPU minutes of training that find lesions (lessons 5-7, the end-to-end test, ``benchmarks/bench_budget.py``).
# Overrides on ``tiny``; every entry departs from the paper for speed, measured on a 2-core CPU (one torch thread):
# * spacing 5 x 4 x 4 mm and patch 8 x 48 x 48: ~0.07 s per pixel-only step, ~0.15 s per PLAN stage-2 step
#   (batch 2; 16 x 96 x 96 at 2.5 mm: ~5 s);
# * fg_oversample 0.33 (the paper's): 1.0 never shows a lesion-free patch and every model over-calls
#   (precision 0.05-0.13); 0.33 raised pixel-only precision to 0.24 at 1200 steps;
# * augment False: augmentation slows early learning (nnU-Net's list is for hundreds of epochs);
# * lr 1e-2 (RAdam): 600 steps reach test recall 0.33 at 4.3x chance; lr 3e-3 needs 900 for the same;
# * stage 1 = half of the steps (stage1_epochs 1, stage2_epochs 1), patient terms from the stage switch; stage 2
#   starts a fresh optimizer (as the official two runs) with a 10 % warm-up. Measured, PLAN 4000 steps on the
#   default cohort (benchmarks/bench_budget.py): with 80 % stage 1 the lesion branch's best val F1 was 0.30, with
#   50 % 0.43; keeping the stage-1 optimizer raised the pixel loss from 1.73 to 2.66 over the first 60 stage-2
#   steps, a fresh one with warm-up to 1.78;
# * patient_no_lesion "pixel" (inference): a case without kept lesions is ranked by the pixel branch instead of
#   tying at 0 (InferConfig; patient AUC any tumour after 10 CPU minutes 0.82 -> 0.86);
# * patient_readout "fused" (inference): a case with kept lesions scores the mean of the patient branch's readout and
#   its highest lesion score. Measured on the budget runs' predictions (8 runs, 2.5-10 min, both cohorts): val AUC
#   any tumour at least that of the patient branch alone in all 8 (e.g. 10 min 0.895 -> 0.924), test in all 8.
#   The lesion readout alone was higher on val in 6 of 8 (mean 0.887 vs 0.880) but lower on test in 7 of 8.
CPU_RECIPE: dict[str, Any] = {
    "spacing": (5.0, 4.0, 4.0), "patch_size": (8, 48, 48), "fg_oversample": 0.33, "augment": False, "lr": 1e-2,
    "stage1_epochs": 1, "stage2_epochs": 1, "patient_start_epoch": 0, "stage2_warmup": 0.1,
    "patient_no_lesion": "pixel", "patient_readout": "fused",
}
# The cohort of the lessons that train (5-7) and of the end-to-end test: the realistic generator (default lesion
# contrast and noise) at the CPU recipe's grid, 5 x 4 x 4 mm, 24 x 96 x 96 (``plan-lite synth --spacing 5 4 4
# --shape 24 96 96``; ``make data`` writes 60 cases to ``data/synthetic_cpu``).
CPU_SYNTH: dict[str, Any] = {"spacing": (5.0, 4.0, 4.0), "shape": (24, 96, 96)}
# An easier cohort (``generate_dataset(..., **EASY_SYNTH)``, ``plan-lite synth
# --lesion-contrast 2 --noise-scale 0.5 --spacing 5 4 4 --shape 24 96 96``): lesion contrast doubled, noise halved
# (benchmarks/bench_budget.py's second cohort).
EASY_SYNTH: dict[str, Any] = {"spacing": (5.0, 4.0, 4.0), "shape": (24, 96, 96), "lesion_contrast": 2.0,
                              "noise_scale": 0.5}


def get_preset(name: str = "paper", **overrides: Any) -> PlanConfig:
    """A preset by name (``paper``, ``paper_nc``, ``official``, ``tiny``, ``tiny_nc``) with overrides applied."""
    if name not in PRESETS:
        raise PlanLiteError(f"config: unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    validate_config(cfg)
    return apply_overrides(cfg, **overrides) if overrides else cfg


def config_diff(a: PlanConfig, b: PlanConfig) -> list[tuple[str, Any, Any]]:
    """Rows (dotted key, value in a, value in b) where the two configs differ (``name`` excluded)."""
    fa, fb = a.flat(), b.flat()
    return [(k, fa[k], fb[k]) for k in fa if fa[k] != fb[k]]


def config_diff_markdown(a: PlanConfig, b: PlanConfig) -> str:
    """The diff as a markdown table (shown in the book's "paper vs official code" page)."""
    rows = [f"| option | {a.name} | {b.name} |", "|---|---|---|"]
    rows += [f"| `{k}` | {va} | {vb} |" for k, va, vb in config_diff(a, b)]
    return "\n".join(rows)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["num_queries=50", "model.fes=false"]`` -> dict (values parsed later against field types)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise PlanLiteError(f"config: override {item!r} must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


__all__ = [
    "ModelConfig", "LossConfig", "DataConfig", "TrainConfig", "InferConfig", "PlanConfig", "get_preset", "apply_overrides",
    "config_diff", "config_diff_markdown", "parse_overrides", "cumulative_strides", "total_stride", "PRESETS", "VARIANTS", "CPU_RECIPE",
    "EASY_SYNTH", "CPU_SYNTH",
]
