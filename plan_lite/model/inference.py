"""Inference: semantic map from the lesion branch and lesion-instance extraction.

``semantic_inference`` (plan_reference.md §2.6, PLAN ``plan/det_head.py``): per voxel,
sum over the real (non-padded) queries of softmax(class)[:15] (no-object dropped) x sigmoid(mask logit),
renormalised to sum 1 (PLAN's addition to Mask2Former). Chunked over queries: full-resolution mask logits
are never held for all queries at once (D6). Without a lesion branch (``pixel_only`` or stage-1 outputs)
it is softmax(pixel_logits).

``extract_lesions`` (§4.8, PLAN ``nnunet/inference/post_process.py``): 26-connected components of
lesion-labelled voxels, drop < 25 mm^3, drop components whose centroid is > 3 mm from the liver (the
connected liver + lesion region that contains liver voxels), one record per kept lesion.
"""

from __future__ import annotations

import math

import cc3d
import numpy as np
import torch
from scipy import ndimage

from plan_lite.labels import LABEL_NAMES, LESION_LABELS, LIVER_LABEL, NUM_CLASSES


@torch.no_grad()
def semantic_inference(outputs: dict, chunk: int = 8) -> torch.Tensor:
    """Class probabilities (B, 15, D, H, W) float32, summing to 1 per voxel."""
    if "pred_logits" not in outputs:
        return torch.softmax(outputs["pixel_logits"].float(), dim=1)
    feats = outputs["mask_features"].float()
    b, _, *shape = feats.shape
    feats = feats.flatten(2)  # (B, M, N)
    cls = torch.softmax(outputs["pred_logits"].float(), dim=-1)[..., :NUM_CLASSES]
    cls = cls * (~outputs["query_padding_mask"])[..., None].to(cls)  # padded queries contribute nothing
    emb = outputs["pred_mask_embed"].float()
    probs = feats.new_zeros(b, NUM_CLASSES, feats.shape[-1])
    for s in range(0, emb.shape[1], chunk):
        masks = torch.einsum("bqm,bmn->bqn", emb[:, s:s + chunk], feats).sigmoid_()
        probs += torch.einsum("bqc,bqn->bcn", cls[:, s:s + chunk], masks)
    probs /= probs.sum(1, keepdim=True).clamp_min(1e-12)
    return probs.reshape(b, NUM_CLASSES, *shape)


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
        return p.argmax(0).numpy().astype(np.uint8)
    first = min(LESION_LABELS)
    stuff = p[:first]
    lesion = p[first:first + len(LESION_LABELS)]
    is_lesion = lesion.sum(0) > stuff.max(0).values
    out = torch.where(is_lesion, lesion.argmax(0) + first, stuff.argmax(0))
    return out.numpy().astype(np.uint8)


def _liver_region(label_map: np.ndarray, lesion: np.ndarray, liver_label: int) -> np.ndarray:
    """Connected components of (liver | lesion) voxels that contain at least one liver voxel (26-conn.)."""
    cc = cc3d.connected_components((label_map == liver_label) | lesion, connectivity=26)
    ids = np.unique(cc[label_map == liver_label])
    return np.isin(cc, ids[ids > 0])


def label_lesions(label_map, probs=None, spacing=(1.0, 1.0, 1.0), min_volume_mm3: float = 25.0,
                  liver_label: int = LIVER_LABEL, max_liver_distance_mm: float | None = 3.0):
    """Lesion records and the instance map (D, H, W) int32 (0 = none, i = record with ``id`` i).

    ``label_map`` (D, H, W) ints; ``probs`` optional (15, D, H, W) class probabilities (numpy or torch);
    ``spacing`` (z, y, x) mm. Records: ``id``, ``label`` (= ``type``, the majority lesion label, ties to the
    smaller label), ``type_name``, ``probability`` (mean summed lesion probability; 1.0 without ``probs``),
    ``type_probs`` {name: mean probability} (voxel fractions of each label without ``probs``),
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


def extract_lesions(label_map, probs=None, spacing=(1.0, 1.0, 1.0), min_volume_mm3: float = 25.0,
                    liver_label: int = LIVER_LABEL, max_liver_distance_mm: float | None = 3.0) -> list[dict]:
    """Lesion records of a predicted label map (see ``label_lesions``, which also returns the instance map)."""
    return label_lesions(label_map, probs, spacing, min_volume_mm3, liver_label, max_liver_distance_mm)[0]
