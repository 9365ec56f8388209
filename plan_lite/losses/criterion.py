"""PLAN training criterion, Eq. 1 (book/design_decisions.md#dd-training, #dd-lesion-loss, #dd-consistency; D1-D6).

L = 2 (CE_pix + Dice_pix) + sum over prediction sets (2 CE_cls + 5 BCE_pts + 5 Dice_pts) + 1 BCE_patient
  + 0.1 L_consist.

* Pixel branch: nnU-Net DC + CE with ignore label 100 (``pixel_loss``), each term x ``w_pixel``.
* Lesion branch (stage 2, outputs present): per prediction set (final + each aux set if ``deep_supervision``)
  its own Hungarian matching (``matcher``); class CE over all non-padded queries (unmatched -> no-object, weight
  ``no_object_weight``, PyTorch's weighted mean); point BCE and Dice (+1 smoothing) over matched pairs, summed and
  divided by num_masks = targets in the batch, clamped >= 1 (D1). Points per pair: Sec. 2.2 FES (lesion
  targets; off for ``mask2former``) + importance + uniform (``point_sampling``), logits from the D6 rewrite.
* Patient branch: BCE-with-logits vs ``targets["patient"]`` or the soft volume labels of the patch,
  ``min(1, volume / patient_size_threshold_mm3)`` (book/design_decisions.md#dd-patient-branch; 245 mm^3 = the
  code's 100 voxels of 2.45 mm^3).
* Consistency (book/design_decisions.md#dd-consistency): 0.1 x 1/2 x sum[(det - sg(cls))^2 + (sg(det) - cls)^2],
  det = max over non-padded queries of the final set's 16-way softmax at lesion classes 7..14,
  cls = sigmoid(patient)[:, 3:11].

Point and matcher maths run in fp32 with autocast off (D4). After a call, ``last_indices`` holds the matches
(list over sets, final first; per image ``(query_idx, target_idx)``), ``last_targets`` the instance targets and,
with ``return_points=True``, ``last_points`` the final set's sampled points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plan_lite.errors import PlanLiteError
from plan_lite.labels import (
    IGNORE_LABEL,
    NUM_LESION_TYPES,
    lesion_class_ids,
    patient_labels_from_label_counts,
)
from plan_lite.losses.matcher import HungarianMatcher, point_mask_logits
from plan_lite.losses.pixel_loss import PixelDiceCELoss
from plan_lite.losses.point_sampling import point_sample, sample_points
from plan_lite.losses.targets import build_targets


def dice_loss_points(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-pair point Dice loss (n,) = 1 - (2 sum(sig y) + 1) / (sum sig + sum y + 1)
    (book/design_decisions.md#dd-lesion-loss)."""
    s = logits.sigmoid()
    return 1 - (2 * (s * labels).sum(-1) + 1) / (s.sum(-1) + labels.sum(-1) + 1)


def consistency_loss(pred_logits: Tensor, patient_logits: Tensor, query_padding_mask: Tensor | None = None,
                     weight: float = 0.1, reduction: str = "sum") -> Tensor:
    """Lesion-patient consistency, book/design_decisions.md#dd-consistency (paper: L2, weight 0.1; code: this form).

    Gradient-identical to weight x 1/2 x sum (det - cls)^2 (D1 note, book/design_decisions.md#dd-d1); the logged value
    is twice that.
    """
    det, cls = patient_readouts(pred_logits, patient_logits, query_padding_mask)
    sq = (det - cls.detach()) ** 2 + (det.detach() - cls) ** 2
    return weight * 0.5 * (sq.sum() if reduction == "sum" else sq.mean())


def patient_readouts(pred_logits: Tensor, patient_logits: Tensor,
                     query_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The two patient-level answers that the consistency loss compares (Sec. 2.3), each (B, 8) in [0, 1]:
    ``det`` = max over non-padded queries of the softmax at the 8 lesion types, ``cls`` = the patient branch's
    type sigmoids (outputs 3..10)."""
    prob = pred_logits.float().softmax(-1)
    if query_padding_mask is not None:
        prob = prob.masked_fill(query_padding_mask.unsqueeze(-1), 0.0)
    n_cls = prob.shape[-1] - 1
    det = prob.max(1).values[:, n_cls - NUM_LESION_TYPES:n_cls]
    return det, patient_logits.float().sigmoid()[:, 3:3 + NUM_LESION_TYPES]


def dense_mask_logits(pred: dict, mask_features: Tensor | None, b: int, qi: Tensor) -> Tensor:
    """Mask logits (n, D, H, W) of queries ``qi`` of image ``b``: ``pred_masks`` when the outputs hold them, else the
    mask embeddings times the mask features (the same volume, D6)."""
    if "pred_masks" in pred:
        return pred["pred_masks"][b, qi].float()
    return torch.einsum("nm,mdhw->ndhw", pred["pred_mask_embed"][b, qi].float(), mask_features[b].float())


def soft_patient_labels(labels: Tensor, groups: str = "paper", size_threshold: float | None = 100.0) -> Tensor:
    """(B, 11) patient labels of the patch label maps (B, D, H, W) (book/design_decisions.md#dd-patient-branch; ignore
    voxels not counted)."""
    rows = []
    for lab in labels:
        lab = lab.reshape(-1)
        counts = torch.bincount(lab[lab != IGNORE_LABEL].long().clamp(0, 255), minlength=16).tolist()
        rows.append(patient_labels_from_label_counts(dict(enumerate(counts)), groups, size_threshold))
    return torch.tensor(rows, dtype=torch.float32, device=labels.device)


def patient_targets(labels: Tensor, cfg) -> Tensor:
    """(B, 11) patient targets of patch label maps (B, D, H, W) as the config asks (Eq. 1 ``L_patient``;
    book/design_decisions.md#dd-patient-branch).

    The one home of this rule: with ``loss.patient_soft_labels`` the official code's soft volume labels
    ``min(1, volume / patient_size_threshold_mm3)`` per group (the threshold converted to voxels at the training
    spacing, so every spacing means the same volume), else hard 0/1 labels.
    """
    lc = cfg.loss
    thr = cfg.voxels(lc.patient_size_threshold_mm3) if lc.patient_soft_labels else None
    return soft_patient_labels(labels, cfg.model.patient_groups, thr)


class PlanCriterion(nn.Module):
    """``PlanCriterion(cfg)(outputs, targets, stage=2, patient_active=True) -> dict`` of weighted scalar terms.

    ``targets``: ``labels`` (B, D, H, W) long (100 = ignore), optional ``patient`` (B, 11) and optional
    ``instances`` (``build_targets`` output, to skip recomputing the connected components).
    ``generator``: optional ``torch.Generator`` for all random points (reproducible notebooks).
    """

    def __init__(self, cfg, generator: torch.Generator | None = None):
        super().__init__()
        lc = cfg.loss
        if lc.fes_pad not in ("repeat", "random"):
            raise PlanLiteError("config: fes_pad must be 'repeat' or 'random'")
        self.cfg, self.lc = cfg, lc
        self.pixel_loss = PixelDiceCELoss(batch_dice=lc.pixel_batch_dice)
        self.matcher = HungarianMatcher(lc.w_class, lc.w_mask, lc.w_dice, lc.num_points,
                                        fg_points=lc.fes_fg_points if lc.matcher_fg_points else 0,
                                        fg_norm=lc.fes_point_norm)
        self.use_fes = lc.fes
        self.generator = generator
        self.point_path = "auto"  # "auto" | "features" (D6) | "logits": how point logits are formed (exact)
        self.last_indices: list[list[tuple[Tensor, Tensor]]] = []
        self.last_targets: list[dict] = []
        self.last_points: dict | None = None

    # -- lesion branch -----------------------------------------------------------------------------------
    def class_loss(self, logits: Tensor, indices, targets, padding: Tensor | None) -> Tensor:
        """CE over all non-padded queries; unmatched -> no-object with weight ``no_object_weight``
        (book/design_decisions.md#dd-lesion-loss)."""
        bsz, nq, k1 = logits.shape
        n_cls = k1 - 1
        tgt = torch.full((bsz, nq), n_cls, dtype=torch.long, device=logits.device)
        for b, (qi, ti) in enumerate(indices):
            if len(qi):
                tgt[b, qi.to(logits.device)] = lesion_class_ids(targets[b]["labels"][ti.to(logits.device)], n_cls)
        weight = torch.ones(k1, device=logits.device)
        weight[-1] = self.lc.no_object_weight
        valid = torch.ones_like(tgt, dtype=torch.bool) if padding is None else ~padding
        return F.cross_entropy(logits[valid].float(), tgt[valid], weight)

    def mask_losses(self, pred: dict, mask_features: Tensor | None, indices, targets, num_masks: float,
                    keep_points: bool = False) -> tuple[Tensor, Tensor]:
        """Point BCE and Dice over matched pairs, each summed and divided by num_masks
        (book/design_decisions.md#dd-lesion-loss, #dd-fes)."""
        lc = self.lc
        ref = pred["pred_logits"]
        bce_sum = ref.sum().float() * 0.0
        dice_sum = bce_sum.clone()
        points = []
        for b, (qi, ti) in enumerate(indices):
            if len(qi) == 0:
                continue
            qi, ti = qi.to(ref.device), ti.to(ref.device)
            tmasks = targets[b]["masks"][ti]
            n_fg = 0
            if self.use_fes:
                fes_on = targets[b]["is_thing"][ti] | lc.fes_fg_on_stuff
                n_fg = (fes_on.long() * lc.fes_fg_points).cpu()

            full = self._full_logits(pred, mask_features, b, qi)  # (n, 1, D, H, W) or None (D6 path)
            if full is not None:
                logit_src = full.detach()
            else:
                def logit_src(c, b=b, qi=qi):
                    return point_mask_logits(pred, mask_features, b, qi, c)

            coords, n_fes = sample_points(logit_src, tmasks, lc.num_points, n_fg, lc.oversample_ratio,
                                          lc.importance_ratio, lc.fes_point_norm, lc.fes_pad,
                                          num_boxes=len(qi), device=ref.device, generator=self.generator)
            if full is not None:
                logits = point_sample(full, coords)[:, 0]
            else:
                logits = point_mask_logits(pred, mask_features, b, qi, coords)  # (n, K), with grad
            with torch.no_grad():
                labels = point_sample(tmasks.float().unsqueeze(1), coords)[:, 0]
            bce_sum = bce_sum + F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum()
            dice_sum = dice_sum + dice_loss_points(logits, labels).sum()
            if keep_points:
                points.append({"batch": b, "query_idx": qi.cpu(), "target_idx": ti.cpu(), "coords": coords.cpu(),
                               "n_fes": n_fes.cpu(), "labels": labels.cpu()})
        if keep_points:
            self.last_points = {"pairs": points}
        return bce_sum / num_masks, dice_sum / num_masks

    def _full_logits(self, pred: dict, mask_features: Tensor | None, b: int, qi: Tensor) -> Tensor | None:
        """Full-resolution logits (n, 1, D, H, W) of the matched queries of image ``b``, or None for the D6 path.

        Both paths are exact rewrites of each other (sampling is linear). ``point_path="auto"``: on CPU
        ``grid_sampler_3d`` costs per channel, so one matmul to n full logit volumes + 1-channel sampling beats
        sampling M feature channels at n x 3K points (~6x on ``tiny``); on GPU the D6 feature path saves memory
        unless ``cfg.model.mask_logits_from_features`` is off. ``"features"`` / ``"logits"`` force a path.
        """
        if "pred_masks" not in pred:
            path = self.point_path
            if path == "auto":
                cpu = mask_features.device.type == "cpu"
                path = "logits" if cpu or not self.cfg.model.mask_logits_from_features else "features"
            if path != "logits":
                return None
        return dense_mask_logits(pred, mask_features, b, qi).unsqueeze(1)

    @torch.no_grad()
    def match_quality(self, outputs: dict) -> dict[str, float]:
        """How well the last call's final-set matches fit their **lesion** targets (a training diagnostic, not a
        loss): ``match_dice`` = mean hard Dice (mask logit > 0 vs target, at the target's resolution) and
        ``match_class_acc`` = fraction whose argmax class is the target's, over matched lesion (thing) targets;
        ``match_n`` = their number (0: no lesion target in the batch, both figures NaN). Used to show how fast
        anchor queries let the lesion branch learn to match (lesson 7)."""
        nan = float("nan")
        if not self.last_indices or "pred_logits" not in outputs:
            return {}
        pred, mf = outputs, outputs.get("mask_features")
        dices, hits = [], []
        for b, (qi, ti) in enumerate(self.last_indices[0]):
            tgt = self.last_targets[b]
            keep = tgt["is_thing"][ti.to(tgt["is_thing"].device)]
            qi, ti = qi[keep.cpu()], ti[keep.cpu()]
            if len(qi) == 0:
                continue
            logits = dense_mask_logits(pred, mf, b, qi.to(pred["pred_logits"].device))
            tm = tgt["masks"][ti.to(tgt["masks"].device)].to(logits.device)
            if logits.shape[1:] != tm.shape[1:]:
                logits = F.interpolate(logits[None], size=tm.shape[1:], mode="trilinear", align_corners=False)[0]
            m = logits > 0
            inter = (m & tm).flatten(1).sum(1).float()
            dices += (2 * inter / (m.flatten(1).sum(1) + tm.flatten(1).sum(1)).clamp(min=1)).tolist()
            n_cls = pred["pred_logits"].shape[-1] - 1
            want = lesion_class_ids(tgt["labels"][ti.to(tgt["labels"].device)], n_cls).to(logits.device)
            hits += (pred["pred_logits"][b, qi.to(logits.device)].argmax(-1) == want).tolist()
        n = len(dices)
        return {"match_dice": sum(dices) / n if n else nan, "match_class_acc": sum(hits) / n if n else nan,
                "match_n": n}

    # -- forward -------------------------------------------------------------------------------------------
    def forward(self, outputs: dict, targets: dict, stage: int = 2, patient_active: bool = True,
                return_points: bool = False) -> dict[str, Tensor]:
        """Eq. 1 terms (weighted) and ``total``; absent terms are not in the dict."""
        lc = self.lc
        labels = targets["labels"]
        device = outputs["pixel_logits"].device
        losses: dict[str, Tensor] = {}
        ce, dice = self.pixel_loss(outputs["pixel_logits"], labels.to(device))
        losses["loss_pixel_ce"] = lc.w_pixel * ce
        losses["loss_pixel_dice"] = lc.w_pixel * dice
        self.last_indices, self.last_points = [], None
        lesion = stage >= 2 and "pred_logits" in outputs
        with torch.autocast(device_type=device.type, enabled=False):
            if lesion:
                self._lesion_terms(outputs, targets, labels, losses, return_points)
            if stage >= 2 and patient_active and "patient_logits" in outputs:
                plog = outputs["patient_logits"].float()
                ptgt = targets.get("patient")
                if ptgt is None:
                    ptgt = patient_targets(labels, self.cfg)
                losses["loss_patient"] = lc.w_patient * F.binary_cross_entropy_with_logits(
                    plog, ptgt.to(plog.device).float())
                if lc.consistency and lesion:
                    losses["loss_consistency"] = consistency_loss(
                        outputs["pred_logits"], plog, outputs.get("query_padding_mask"), lc.w_consistency,
                        lc.consistency_reduction)
        losses["total"] = sum(losses.values())
        return losses

    def _lesion_terms(self, outputs, targets, labels, losses, return_points):
        lc = self.lc
        inst = targets.get("instances")
        if inst is None:
            inst = build_targets(labels.to(outputs["pixel_logits"].device), self.cfg)
        self.last_targets = inst
        num_masks = float(max(sum(len(t["labels"]) for t in inst), 1))
        mf = outputs.get("mask_features")
        padding = outputs.get("query_padding_mask")
        sets = [outputs]
        if lc.deep_supervision:
            sets += list(outputs.get("aux_outputs", []))
        aux = None
        for i, pred in enumerate(sets):
            idx = self.matcher(pred, inst, mf, padding, generator=self.generator)
            self.last_indices.append(idx)
            l_cls = lc.w_class * self.class_loss(pred["pred_logits"], idx, inst, padding)
            bce, dsc = self.mask_losses(pred, mf, idx, inst, num_masks, keep_points=return_points and i == 0)
            l_mask, l_dice = lc.w_mask * bce, lc.w_dice * dsc
            if i == 0:
                losses["loss_class"], losses["loss_mask"], losses["loss_dice"] = l_cls, l_mask, l_dice
            else:
                aux = l_cls + l_mask + l_dice if aux is None else aux + l_cls + l_mask + l_dice
        if aux is not None:
            losses["loss_aux"] = aux


__all__ = ["PlanCriterion", "consistency_loss", "patient_readouts", "soft_patient_labels", "patient_targets", "dice_loss_points"]
