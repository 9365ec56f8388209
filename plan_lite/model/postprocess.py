"""Inference: the lesion branch's outputs as voxel maps, and lesion-instance extraction.

``instance_inference`` (Mask2Former's instance / panoptic inference; book page "Paper vs code"): per real query,
a **score** = its lesion probability (summed over the 8 types) x its mask quality (mean sigmoid inside its
binary mask); queries whose lesion probability beats every other class and whose score exceeds
``score_threshold`` are kept, and each voxel inside at least one kept mask goes to the kept query with the
largest score x mask probability. With ``paint="panoptic"`` (Mask2Former's panoptic inference) the stuff queries
(background, organs) compete for the voxels too, so a lesion query paints only where it beats them; with
``overlap_threshold`` (Mask2Former panoptic: 0.8) a kept lesion query left with less than that fraction of its
mask paints nothing. The painted maps (type probabilities, score, coverage) are what the sliding
window stitches; each connected painted region is then one lesion with the type and score of its queries.

``semantic_inference`` (PLAN ``plan/det_head.py``; book/design_decisions.md#dd-inference): per voxel, sum over the
real (non-padded) queries of softmax(class)[:C] (no-object dropped) x sigmoid(mask logit), renormalised to sum 1
(PLAN's addition to Mask2Former). Chunked over queries: full-resolution mask logits are never held for all queries
at once (D6). Without a lesion branch (``pixel_only`` or stage-1 outputs) it is softmax(pixel_logits). A C + 1 head
(``lesion_stuff_targets=False``) classifies lesions only: background and organs come from the pixel branch.

``extract_lesions`` (book/design_decisions.md#dd-inference, PLAN ``nnunet/inference/post_process.py``): 26-connected
components of lesion-labelled voxels, drop < 25 mm^3, drop components whose centroid is > 3 mm from the liver (the
connected liver + lesion region that contains liver voxels), one record per kept lesion.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
import torch
from scipy import ndimage

from plan_lite.labels import LABEL_NAMES, LESION_LABELS, LIVER_LABEL, NUM_CLASSES, NUM_LESION_TYPES

FIRST_LESION = min(LESION_LABELS)
#: channels of ``instance_inference``'s painted map: 8 type probabilities, the score, the coverage
INSTANCE_CHANNELS = NUM_LESION_TYPES + 2
#: ``InferConfig.instance_paint``: which kept queries compete for a voxel (``instance_inference``)
INSTANCE_PAINTS = ("lesion", "panoptic")


def _class_probs(outputs: dict) -> torch.Tensor:
    """Softmax class probabilities (B, Q, K + 1) with padded queries zeroed."""
    cls = torch.softmax(outputs["pred_logits"].float(), dim=-1)
    return cls * (~outputs["query_padding_mask"])[..., None].to(cls)


def _lesion_columns(num_classes: int) -> slice:
    """Columns of the 8 lesion types in the class logits (15 + 1 head: 7..14; C + 1 head: 0..7)."""
    return slice(0, NUM_LESION_TYPES) if num_classes == NUM_LESION_TYPES else slice(FIRST_LESION, NUM_CLASSES)


@torch.no_grad()
def semantic_inference(outputs: dict, chunk: int = 8) -> torch.Tensor:
    """Class probabilities (B, 15, D, H, W) float32, summing to 1 per voxel."""
    if "pred_logits" not in outputs:
        return torch.softmax(outputs["pixel_logits"].float(), dim=1)
    feats = outputs["mask_features"].float()
    b, _, *shape = feats.shape
    feats = feats.flatten(2)  # (B, M, N)
    cls = _class_probs(outputs)[..., :-1]  # no-object dropped
    k = cls.shape[-1]
    emb = outputs["pred_mask_embed"].float()
    acc = feats.new_zeros(b, k, feats.shape[-1])
    for s in range(0, emb.shape[1], chunk):
        masks = torch.einsum("bqm,bmn->bqn", emb[:, s:s + chunk], feats).sigmoid_()
        acc += torch.einsum("bqc,bqn->bcn", cls[:, s:s + chunk], masks)
    if k == NUM_CLASSES:
        probs = acc
    else:  # C + 1 head: lesions from the queries, background and organs from the pixel branch
        pix = torch.softmax(outputs["pixel_logits"].float(), dim=1).flatten(2)
        lesion = acc.clamp(0, 1)
        probs = torch.cat([pix[:, :FIRST_LESION] * (1 - lesion.sum(1, keepdim=True).clamp(0, 1)), lesion], 1)
    probs = probs / probs.sum(1, keepdim=True).clamp_min(1e-12)
    return probs.reshape(b, NUM_CLASSES, *shape)


@torch.no_grad()
def instance_inference(outputs: dict, score_threshold: float = 0.5, mask_threshold: float = 0.5,
                       chunk: int = 8, paint: str = "lesion", overlap_threshold: float = 0.0) -> torch.Tensor:
    """Painted lesion instances (B, 10, D, H, W): channels 0..7 the kept query's 8 type probabilities, 8 its
    score, 9 the coverage (1 where a kept query paints the voxel, else 0). See the module docstring.

    ``paint``: ``"lesion"`` - a voxel inside any kept lesion query's mask goes to the kept lesion query with the
    largest score x mask probability; ``"panoptic"`` (Mask2Former's panoptic inference) - the stuff queries
    (background, organs: a stuff class beats the lesion probability and no-object) compete too, so a lesion
    query paints a voxel only where its score x mask probability beats every kept query's. ``overlap_threshold``
    (Mask2Former panoptic: 0.8; 0 = off): a kept lesion query whose painted voxels are fewer than this fraction of
    its mask paints nothing (a query mostly covered by others is not a lesion of its own).

    Needs the lesion-branch outputs (``"pred_logits"``); a ``pixel_only`` model has no instances.
    """
    if paint not in INSTANCE_PAINTS:
        raise ValueError(f"paint must be one of {INSTANCE_PAINTS}, got {paint!r}")
    feats = outputs["mask_features"].float()
    b, _, *shape = feats.shape
    feats = feats.flatten(2)
    cls = _class_probs(outputs)  # (B, Q, K + 1)
    cols = _lesion_columns(cls.shape[-1] - 1)
    types = cls[..., cols]  # (B, Q, 8)
    p_lesion = types.sum(-1)
    stuff = torch.cat([cls[..., :cols.start], cls[..., cols.stop:-1]], -1)  # (B, Q, 7) (none for a C + 1 head)
    p_stuff = stuff.max(-1).values if stuff.shape[-1] else torch.zeros_like(p_lesion)
    others = torch.maximum(p_stuff, cls[..., -1])
    emb = outputs["pred_mask_embed"].float()
    n = feats.shape[-1]
    best = feats.new_zeros(b, n)  # best score x mask probability of a kept lesion query
    best_stuff = feats.new_zeros(b, n)  # ... of a kept stuff query ("panoptic")
    winner = torch.full((b, n), -1, dtype=torch.long, device=feats.device)
    scores = torch.zeros_like(p_lesion)
    area = torch.zeros_like(p_lesion)  # voxels inside each kept lesion query's mask
    for s in range(0, emb.shape[1], chunk):
        m = torch.einsum("bqm,bmn->bqn", emb[:, s:s + chunk], feats).sigmoid_()
        inside = m > mask_threshold
        quality = (m * inside).sum(-1) / inside.sum(-1).clamp_min(1)
        score = p_lesion[:, s:s + chunk] * quality
        keep = (score > score_threshold) & (p_lesion[:, s:s + chunk] > others[:, s:s + chunk])
        scores[:, s:s + chunk] = score
        area[:, s:s + chunk] = (inside & keep[..., None]).sum(-1).to(area)
        val = score[..., None] * m * (inside & keep[..., None])
        cmax, carg = val.max(1)
        upd = cmax > best
        best = torch.where(upd, cmax, best)
        winner = torch.where(upd, carg + s, winner)
        if paint == "panoptic":
            ps, pl, pn = p_stuff[:, s:s + chunk], p_lesion[:, s:s + chunk], cls[:, s:s + chunk, -1]
            is_stuff = (ps > pl) & (ps > pn)
            best_stuff = torch.maximum(best_stuff, ((ps * quality)[..., None] * m * is_stuff[..., None]).max(1).values)
    painted = (winner >= 0) & (best > best_stuff)
    if overlap_threshold > 0:
        won = torch.zeros_like(p_lesion).scatter_add_(1, winner.clamp_min(0), painted.to(area))
        ok = won >= overlap_threshold * area.clamp_min(1)
        painted &= torch.gather(ok, 1, winner.clamp_min(0))
    idx = winner.clamp_min(0)
    out = feats.new_zeros(b, INSTANCE_CHANNELS, n)
    gather = torch.gather(types, 1, idx[..., None].expand(-1, -1, NUM_LESION_TYPES))  # (B, N, 8)
    out[:, :NUM_LESION_TYPES] = gather.transpose(1, 2) * painted[:, None]
    out[:, NUM_LESION_TYPES] = torch.gather(scores, 1, idx) * painted
    out[:, NUM_LESION_TYPES + 1] = painted.float()
    return out.reshape(b, INSTANCE_CHANNELS, *shape)


def channel_argmax(x) -> torch.Tensor:
    """Index of the largest channel per voxel of a (C, ...) CPU array (int64; ties: the first channel, as
    ``torch.argmax``). NumPy's reduction over the leading axis is ~5x faster than ``torch.argmax(0)`` on a CPU, and
    post-processing takes it for every threshold that calibration tries."""
    return torch.from_numpy(np.argmax(torch.as_tensor(x).detach().cpu().numpy(), axis=0))


def instance_labels(stuff_probs, painted, coverage_threshold: float = 0.5, score_threshold: float = 0.0):
    """Label map (D, H, W) uint8, per-voxel lesion score and type probabilities from stitched maps.

    ``stuff_probs`` (>= 7, D, H, W): class probabilities whose channels 0..6 decide background and organs;
    ``painted`` (10, D, H, W): stitched ``instance_inference`` channels. A voxel is a lesion where the stitched
    coverage exceeds ``coverage_threshold`` (most windows that saw it painted it) and whose mean painted score
    exceeds ``score_threshold``; its type is the argmax of the painted type probabilities. Returns ``(label, score, type_probs)`` with score and type probabilities divided
    by the coverage (the mean over the windows that painted the voxel).
    """
    stuff = torch.as_tensor(stuff_probs).float()
    painted = torch.as_tensor(painted).float()
    cover = painted[NUM_LESION_TYPES + 1]
    denom = cover.clamp_min(1e-6)
    type_probs = painted[:NUM_LESION_TYPES] / denom
    score = painted[NUM_LESION_TYPES] / denom
    lesion = (cover > coverage_threshold) & (score > score_threshold)
    label = torch.where(lesion, channel_argmax(type_probs) + FIRST_LESION, channel_argmax(stuff[:FIRST_LESION]))
    return (label.numpy().astype(np.uint8), (score * lesion).numpy(),
            (type_probs * lesion).numpy())


LESION_DECISIONS = ("argmax", "merged")


def decide_labels(probs, lesion_decision: str = "argmax") -> np.ndarray:
    """Label map (D, H, W) uint8 from class probabilities (15, D, H, W) (numpy or torch).

    ``"argmax"``: the most probable of the 15 classes (nnU-Net and the official code). ``"merged"``: a voxel is a
    lesion when the summed lesion probability (labels 7-14) beats every non-lesion class, and then takes the most
    probable lesion type; otherwise the most probable non-lesion class. This is the argmax over {0..6, lesion},
    the same grouping the anchors (Sec. 2.2) and the paper's lesion metrics use; it differs from ``"argmax"``
    only where the lesion probability is split among types, which is common early in training.
    """
    if lesion_decision not in LESION_DECISIONS:
        raise ValueError(f"lesion_decision must be one of {LESION_DECISIONS}, got {lesion_decision!r}")
    p = torch.as_tensor(probs).float()
    if lesion_decision == "argmax":
        return channel_argmax(p).numpy().astype(np.uint8)
    first = min(LESION_LABELS)
    stuff = p[:first]
    lesion = p[first:first + len(LESION_LABELS)]
    is_lesion = lesion.sum(0) > stuff.max(0).values
    out = torch.where(is_lesion, channel_argmax(lesion) + first, channel_argmax(stuff))
    return out.numpy().astype(np.uint8)


def _liver_region(label_map: np.ndarray, lesion: np.ndarray, liver_label: int) -> np.ndarray:
    """Connected components of (liver | lesion) voxels that contain at least one liver voxel (26-conn.)."""
    cc = cc3d.connected_components((label_map == liver_label) | lesion, connectivity=26)
    ids = np.unique(cc[label_map == liver_label])
    return np.isin(cc, ids[ids > 0])


def label_lesions(label_map, probs=None, spacing=(1.0, 1.0, 1.0), min_volume_mm3: float = 25.0,
                  liver_label: int = LIVER_LABEL, max_liver_distance_mm: float | None = 3.0, scores=None):
    """Lesion records and the instance map (D, H, W) int32 (0 = none, i = record with ``id`` i).

    ``label_map`` (D, H, W) ints; ``probs`` optional (15, D, H, W) class probabilities (numpy or torch);
    ``spacing`` (z, y, x) mm. Records: ``id``, ``label`` (= ``type``, the majority lesion label, ties to the
    smaller label), ``type_name``, ``probability`` (mean summed lesion probability; 1.0 without ``probs``),
    ``type_probs`` {name: mean probability} (voxel fractions of each label without ``probs``); with ``scores``
    (D, H, W: the instance score per voxel, ``instance_labels``) ``probability`` is the mean score instead,
    ``volume_mm3``, ``radius_mm`` = (3V / 4pi)^(1/3), ``num_voxels``, ``centroid`` voxel (z, y, x),
    ``bbox`` (z0, y0, x0, z1, y1, x1) with exclusive ends. When the image has no liver voxel the liver
    distance test is skipped.
    """
    label_map = np.asarray(label_map)
    if torch.is_tensor(probs):
        probs = probs.detach().float().cpu().numpy()
    spacing = tuple(float(s) for s in spacing)
    voxel_mm3 = math.prod(spacing)
    lesion = np.isin(label_map, LESION_LABELS)
    cc, n = cc3d.connected_components(lesion, connectivity=26, return_N=True)
    instances = np.zeros(label_map.shape, dtype=np.int32)
    records: list[dict] = []
    if n == 0:
        return records, instances
    dist = None
    if max_liver_distance_mm is not None and (label_map == liver_label).any():
        dist = ndimage.distance_transform_edt(~_liver_region(label_map, lesion, liver_label), sampling=spacing)
    for i, sl in enumerate(ndimage.find_objects(cc), start=1):
        if sl is None:
            continue
        comp = cc[sl] == i
        nvox = int(comp.sum())
        volume = nvox * voxel_mm3
        if volume < min_volume_mm3:
            continue
        idx = np.argwhere(comp) + [s.start for s in sl]
        centroid = tuple(float(c) for c in idx.mean(0))
        if dist is not None:
            cz, cy, cx = (int(round(c)) for c in centroid)
            if dist[cz, cy, cx] > max_liver_distance_mm:
                continue
        counts = np.bincount(label_map[sl][comp].astype(np.int64), minlength=NUM_CLASSES)[list(LESION_LABELS)]
        label = int(LESION_LABELS[int(np.argmax(counts))])  # argmax takes the first max: ties -> smaller label
        if probs is not None:
            p = probs[(slice(None), *sl)][:, comp]  # (15, nvox)
            type_probs = {LABEL_NAMES[k]: float(p[k].mean()) for k in LESION_LABELS}
            probability = float(p[list(LESION_LABELS)].sum(0).mean())
            if scores is not None:
                probability = float(np.asarray(scores)[sl][comp].mean())
        else:
            type_probs = {LABEL_NAMES[k]: float(c / nvox) for k, c in zip(LESION_LABELS, counts)}
            probability = 1.0
        rid = len(records) + 1
        instances[sl][comp] = rid
        records.append({
            "id": rid, "label": label, "type": label, "type_name": LABEL_NAMES[label],
            "probability": probability, "type_probs": type_probs, "volume_mm3": volume,
            "radius_mm": (3 * volume / (4 * math.pi)) ** (1 / 3), "num_voxels": nvox, "centroid": centroid,
            "bbox": tuple(s.start for s in sl) + tuple(s.stop for s in sl),
        })
    return records, instances


LESION_TYPE_SOURCES = ("query", "pixel", "fused")


def retype_lesions(label_map: np.ndarray, instances: np.ndarray, records: list[dict], query_types, pixel_types,
                   source: str) -> None:
    """Give each lesion one type from the chosen source, in place (``InferConfig.lesion_type``).

    ``label_map`` / ``instances``: the output of ``label_lesions`` (record ``id`` i = voxels ``instances == i``);
    ``query_types`` / ``pixel_types`` (8, D, H, W): the lesion branch's and the pixel branch's probabilities of the
    8 lesion types (numpy or torch). ``"query"`` changes nothing (the lesion branch's per-voxel types stand).
    Otherwise, per lesion, each source's mean over the lesion's voxels is normalised to sum 1; ``"pixel"`` takes
    the pixel branch's, ``"fused"`` the mean of both. The lesion's voxels get the argmax type, and its record's
    ``label`` / ``type`` / ``type_name`` / ``type_probs`` follow (``probability``, the detection score, is kept).
    """
    if source not in LESION_TYPE_SOURCES:
        raise ValueError(f"lesion type source must be one of {LESION_TYPE_SOURCES}, got {source!r}")
    if source == "query" or not records:
        return
    q_all = torch.as_tensor(query_types).float().numpy()
    p_all = torch.as_tensor(pixel_types).float().numpy()
    objs = ndimage.find_objects(instances)

    def dist(values: np.ndarray) -> np.ndarray:
        m = values.mean(1).astype(np.float64)
        return m / m.sum() if m.sum() > 0 else np.full(len(m), 1.0 / len(m))

    for r in records:
        sl = objs[r["id"] - 1]
        comp = instances[sl] == r["id"]
        q, p = dist(q_all[(slice(None), *sl)][:, comp]), dist(p_all[(slice(None), *sl)][:, comp])
        d = p if source == "pixel" else 0.5 * (q + p)
        label = int(LESION_LABELS[int(np.argmax(d))])
        label_map[sl][comp] = label
        r.update(label=label, type=label, type_name=LABEL_NAMES[label],
                 type_probs={LABEL_NAMES[k]: float(v) for k, v in zip(LESION_LABELS, d)})


#: ``InferConfig.patient_no_lesion="pixel"``: a case without kept lesions scores this fraction of its pixel evidence
NO_LESION_SCALE = 0.01


def no_lesion_patient_scores(pixel_lesion, region: np.ndarray | None, groups, scale: float = NO_LESION_SCALE
                             ) -> list[float]:
    """Patient scores of a case where no lesion is kept (``InferConfig.patient_no_lesion="pixel"``).

    ``pixel_lesion`` (8, D, H, W): the pixel branch's probabilities of the lesion labels 7-14 (numpy or torch);
    ``region`` (D, H, W) bool: where to look (the predicted liver; None or empty: everywhere); ``groups``: the
    ``labels.PATIENT_GROUPS`` entry of the model (output name, lesion labels). Each output scores ``scale`` x the
    highest summed probability of its labels in the region: at most 1 % by default, so below the patient-branch
    scores of cases with a lesion (the official rule gives all of them 0 and lets them tie), yet ordered by how near
    the pixel branch came to calling a lesion.
    """
    pix = torch.as_tensor(pixel_lesion).float()
    if region is not None and np.asarray(region).any():
        pix = pix[:, torch.from_numpy(np.asarray(region, dtype=bool))]
    else:
        pix = pix.reshape(pix.shape[0], -1)
    return [scale * float(pix[[k - FIRST_LESION for k in labels]].sum(0).max()) for _, labels in groups]


#: ``InferConfig.patient_readout``: where the patient scores of a case with kept lesions come from
PATIENT_READOUTS = ("patient", "lesion", "fused")


def lesion_patient_scores(records: list[dict], groups) -> list[float]:
    """Patient scores read from the kept lesions (``InferConfig.patient_readout="lesion"``, half of ``"fused"``).

    ``records``: the case's lesion records (``probability`` = the instance score, ``type_probs`` {lesion type name:
    probability}); ``groups``: the ``labels.PATIENT_GROUPS`` entry of the model. Each output scores the highest,
    over the lesions, of the lesion's probability times the share of its type distribution that falls on the
    output's labels (``any_tumor`` of the paper's groups: the highest lesion probability). 0 for every output
    without lesions. The lesion-patient consistency loss (Sec. 2.3) asks the two readouts to agree; this one reads
    the patient off the lesions directly.
    """
    out = []
    for _, labels in groups:
        names = {LABEL_NAMES[k] for k in labels}
        best = 0.0
        for r in records:
            tp = r["type_probs"]
            total = sum(tp.values())
            share = sum(v for k, v in tp.items() if k in names) / total if total > 0 else 0.0
            best = max(best, float(r["probability"]) * share)
        out.append(best)
    return out


def gate_lesions(instances: np.ndarray, records: list[dict], pixel_lesion, threshold: float) -> list[dict]:
    """Keep the lesions that the pixel branch also sees (``InferConfig.pixel_agreement``), in place on ``instances``.

    ``instances`` / ``records``: the output of ``label_lesions``; ``pixel_lesion`` (D, H, W): the pixel branch's
    summed lesion probability (labels 7-14; numpy or torch). Every record gets ``pixel_probability``, the maximum of
    ``pixel_lesion`` over its voxels; records below ``threshold`` are removed and their voxels set to 0 in
    ``instances`` (0 keeps every lesion). Returns the kept records (ids unchanged).

    Why: after a short training the lesion branch's false positives are small masks where the pixel branch's
    lesion probability is ~0, with scores like the true lesions' (the book's lesson on evaluation).
    """
    if not records:
        return records
    pix = torch.as_tensor(pixel_lesion).float().numpy()
    objs = ndimage.find_objects(instances)
    kept = []
    for r in records:
        sl = objs[r["id"] - 1]
        comp = instances[sl] == r["id"]
        r["pixel_probability"] = float(pix[sl][comp].max())
        if r["pixel_probability"] >= threshold:
            kept.append(r)
        else:
            instances[sl][comp] = 0
    return kept


def extract_lesions(label_map, probs=None, spacing=(1.0, 1.0, 1.0), min_volume_mm3: float = 25.0,
                    liver_label: int = LIVER_LABEL, max_liver_distance_mm: float | None = 3.0) -> list[dict]:
    """Lesion records of a predicted label map (see ``label_lesions``, which also returns the instance map)."""
    return label_lesions(label_map, probs, spacing, min_volume_mm3, liver_label, max_liver_distance_mm)[0]
