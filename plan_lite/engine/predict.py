"""Prediction: sliding window, lesion instances, patient scores, outputs in the input's grid.

Per case (book/design_decisions.md#dd-inference; book page "Paper vs code"):

1. Preprocess with the checkpoint's ``Preprocessor`` statistics (orientation, spacing, normalisation; liver crop
   only when a liver mask is known: ``two_pass=True`` predicts once, then again on the crop around the predicted
   liver).
2. MONAI ``sliding_window_inference`` (roi = patch size, overlap 0.5, Gaussian weighting). The window function
   returns the 15 semantic probabilities (``semantic_inference`` of the lesion branch; softmax of the
   pixel logits for ``pixel_only`` or a stage-1 checkpoint), with ``cfg.infer.lesion_output="instance"`` the
   10 painted channels of Mask2Former's instance inference (``instance_inference``), **plus the 11 patient
   sigmoids broadcast as constant channels** over the window, so the patient outputs are stitched like
   segmentation channels.
3. Labels: instance output (default) = lesions where the stitched instance coverage > 0.5, typed by the painted
   type probabilities, background and organs from the semantic map (``instance_labels``); semantic output =
   ``decide_labels`` (``"argmax"`` of the 15 classes or ``"merged"``). Lesion instances by
   ``plan_lite.model.postprocess.label_lesions`` (26-connected, drop < 25 mm^3, drop centroids > 3 mm from the
   predicted liver unless ``keep_outside_liver``); voxels of dropped components get their best non-lesion class.
   Every setting defaults to the checkpoint's ``cfg.infer`` (what training validated with); arguments override.
4. Patient score = mean of the stitched patient channels over voxels whose argmax is a lesion class, 0 if none
   (PLAN ``nnunet/inference/post_process.py``; ``infer.patient_no_lesion="pixel"``: 1 % of the pixel branch's
   highest lesion probability in the liver instead of 0, ``postprocess.no_lesion_patient_scores``;
   ``infer.patient_readout="lesion"`` / ``"fused"``: the highest kept-lesion score of the output's labels / the mean
   of both, ``postprocess.lesion_patient_scores``). Without a patient branch:
   ``min(1, lesion volume of the group / 245 mm^3)`` (the soft-label rule).
5. ``plan_lite.data.preprocess.invert`` maps labels (and the instance map) back to the input grid; the label NIfTI is written
   with **the input's affine and shape**; lesion geometry (volume, radius, centre in world mm via the affine,
   bounding box) is measured in that grid.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from plan_lite.errors import PlanLiteError
from plan_lite.labels import (
    LABEL_NAMES,
    LESION_LABELS,
    LIVER_LABEL,
    NUM_CLASSES,
    PATIENT_GROUPS,
    patient_output_names,
)
from plan_lite.utils import atomic_write_json, atomic_write_text

SEMANTIC_SOURCES = ("lesion", "pixel", "fused")


@dataclass
class CasePrediction:
    case_id: str
    label: np.ndarray  # (D, H, W) uint8 in the input grid
    affine: np.ndarray
    spacing: tuple[float, float, float]
    lesions: list[dict] = field(default_factory=list)
    patient: dict[str, float] = field(default_factory=dict)
    #: (D, H, W) int32 in the input grid: 0 = no lesion, i = ``lesions[i - 1]``
    instances: np.ndarray | None = None


class Predictor:
    """``Predictor(checkpoint)`` or ``Predictor(model=..., cfg=..., stats=...)``; ``predict_case(case)``."""

    def __init__(self, checkpoint=None, *, model=None, cfg=None, stats=None, stage: int | None = None,
                 device: str | torch.device | None = None, overlap: float | None = None, sw_batch_size: int = 2,
                 keep_outside_liver: bool = False, min_volume_mm3: float | None = None,
                 max_liver_distance_mm: float | None = None, two_pass: bool = False, semantic: str | None = None,
                 lesion_decision: str | None = None, lesion_output: str | None = None,
                 score_threshold: float | None = None, lesion_type: str | None = None,
                 pixel_agreement: float | None = None, instance_paint: str | None = None,
                 patient_no_lesion: str | None = None, patient_readout: str | None = None):
        from plan_lite.engine.training_data import make_preprocessor
        from plan_lite.model.postprocess import INSTANCE_PAINTS, LESION_TYPE_SOURCES, PATIENT_READOUTS

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if checkpoint is not None:
            from plan_lite.config import PlanConfig
            from plan_lite.engine.checkpoint import load_checkpoint
            from plan_lite.model import PLAN

            state = load_checkpoint(checkpoint)
            cfg = PlanConfig.from_dict(state["config"])
            model = PLAN(cfg)
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as exc:
                raise PlanLiteError(f"{checkpoint}: weights do not fit the saved config "
                                    f"({str(exc).splitlines()[0]})") from None
            stats = state.get("preprocess")
            stage = int(state.get("stage", 2)) if stage is None else stage
            self.source = {"checkpoint": str(checkpoint), "step": int(state.get("step", 0)),
                           "checkpoint_stage": int(state.get("stage", 2))}
        else:
            self.source = {"checkpoint": None, "step": None, "checkpoint_stage": None}
        if model is None or cfg is None:
            raise PlanLiteError("Predictor: give a checkpoint, or model and cfg")
        self.model, self.cfg, self.stats = model.to(self.device).eval(), cfg, stats
        self.stage = 2 if stage is None else int(stage)
        self.pre = make_preprocessor(cfg, stats)
        inf = cfg.infer

        def pick(value, default):
            return default if value is None else value

        self.semantic = pick(semantic, inf.semantic)
        self.lesion_decision = pick(lesion_decision, inf.lesion_decision)
        self.lesion_output = pick(lesion_output, inf.lesion_output)
        self.score_threshold = float(pick(score_threshold, inf.score_threshold))
        self.lesion_type = pick(lesion_type, inf.lesion_type)
        self.pixel_agreement = float(pick(pixel_agreement, inf.pixel_agreement))
        self.instance_paint = pick(instance_paint, inf.instance_paint)
        self.patient_no_lesion = pick(patient_no_lesion, inf.patient_no_lesion)
        self.patient_readout = pick(patient_readout, inf.patient_readout)
        for name, value, allowed in (("semantic", self.semantic, SEMANTIC_SOURCES),
                                     ("patient_no_lesion", self.patient_no_lesion, ("zero", "pixel")),
                                     ("patient_readout", self.patient_readout, PATIENT_READOUTS),
                                     ("lesion_type", self.lesion_type, LESION_TYPE_SOURCES),
                                     ("instance_paint", self.instance_paint, INSTANCE_PAINTS),
                                     ("lesion_decision", self.lesion_decision, ("argmax", "merged")),
                                     ("lesion_output", self.lesion_output, ("instance", "semantic"))):
            if value not in allowed:
                raise PlanLiteError(f"Predictor: {name} must be one of {', '.join(allowed)}, got {value!r}")
        self.overlap, self.sw_batch_size = float(pick(overlap, inf.overlap)), sw_batch_size
        self.max_dist = None if keep_outside_liver else float(pick(max_liver_distance_mm, inf.max_liver_distance_mm))
        self.min_volume_mm3 = float(pick(min_volume_mm3, inf.drop_lesions_below_mm3))
        self.two_pass = two_pass
        # instance output needs the lesion branch's queries (stage 2 of a model that has them)
        self.instance = self.lesion_output == "instance" and cfg.model.lesion_branch and self.stage >= 2
        # the pixel branch's 8 lesion-type channels, stitched when lesion types come from it or the instance output
        # is gated by it (every lesion's ``pixel_probability``), and nothing else holds them
        self.has_patient = cfg.model.patient_branch and self.stage >= 2
        self.pixel_types = ((self.lesion_type != "query" or self.instance
                             or (self.has_patient and self.patient_no_lesion == "pixel"))
                            and self.semantic != "pixel" and cfg.model.lesion_branch and self.stage >= 2)
        self.names = patient_output_names(cfg.model.patient_groups)

    def settings(self) -> dict:
        """Where the weights come from (checkpoint, step, stage) and the inference settings used."""
        return {**self.source, "stage": self.stage,
                "lesion_output": "instance" if self.instance else "semantic", "semantic": self.semantic,
                "lesion_decision": self.lesion_decision, "lesion_type": self.lesion_type,
                "score_threshold": self.score_threshold,
                "mask_threshold": self.cfg.infer.mask_threshold, "instance_paint": self.instance_paint,
                "overlap_threshold": self.cfg.infer.overlap_threshold, "pixel_agreement": self.pixel_agreement,
                "overlap": self.overlap, "two_pass": self.two_pass, "patient_no_lesion": self.patient_no_lesion,
                "patient_readout": self.patient_readout,
                "keep_outside_liver": self.max_dist is None, "min_volume_mm3": self.min_volume_mm3}

    # ------------------------------------------------------------------------------------------ network
    def _window(self, x: torch.Tensor) -> torch.Tensor:
        from plan_lite.model.postprocess import instance_inference, semantic_inference

        out = self.model(x, stage=self.stage)
        if self.semantic == "pixel":
            probs = torch.softmax(out["pixel_logits"].float(), dim=1)
        elif self.semantic == "fused":
            probs = 0.5 * (semantic_inference(out) + torch.softmax(out["pixel_logits"].float(), dim=1))
        else:
            probs = semantic_inference(out)
        if self.instance:
            inf = self.cfg.infer
            painted = instance_inference(out, self.score_threshold, inf.mask_threshold, paint=self.instance_paint,
                                         overlap_threshold=inf.overlap_threshold)
            probs = torch.cat([probs, painted], 1)
        if self.pixel_types:
            probs = torch.cat([probs, torch.softmax(out["pixel_logits"].float(), dim=1)[:, min(LESION_LABELS):]], 1)
        if self.has_patient and "patient_logits" in out:
            pat = torch.sigmoid(out["patient_logits"].float())[:, :, None, None, None]
            probs = torch.cat([probs, pat.expand(-1, -1, *probs.shape[2:])], 1)
        return probs

    @torch.no_grad()
    def stitched(self, image: np.ndarray) -> torch.Tensor:
        """(15 [+ 10] [+ 8] [+ 11], D, H, W) Gaussian-stitched semantic probabilities [, painted instances]
        [, the pixel branch's lesion types] [, patient channels] of a preprocessed (C, D, H, W) image."""
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(self.device)
        amp = self.device.type == "cuda" and self.cfg.train.amp
        with torch.autocast(self.device.type, enabled=amp):
            out = sliding_window_inference(x, tuple(self.cfg.train.patch_size), self.sw_batch_size, self._window,
                                           overlap=self.overlap, mode="gaussian")
        return out[0].float().cpu()

    # ------------------------------------------------------------------------------------------ one case
    def predict_case(self, case) -> CasePrediction:
        """``case``: a ``plan_lite.data.io.Case`` (its label, if any, is not used)."""
        prep, out = self.stitch_case(case)
        return self.finish_case(case, prep, out)

    def stitch_case(self, case):
        """Preprocess (one or two passes) and run the sliding window: ``(preprocessed case, stitched channels)``."""
        from plan_lite.data.preprocess import invert
        from plan_lite.model.postprocess import decide_labels

        case.label = None
        prep = self.pre(case, crop=False)
        out = self.stitched(prep.image)
        if self.two_pass:
            liver = invert(decide_labels(out[:NUM_CLASSES], self.lesion_decision), prep.meta) == LIVER_LABEL
            if liver.any():
                prep = self.pre(case, liver_mask=liver, crop=True)
                out = self.stitched(prep.image)
        return prep, out

    def finish_case(self, case, prep, out: torch.Tensor, score_threshold: float | None = None,
                    pixel_agreement: float | None = None) -> CasePrediction:
        """Labels, lesions and patient scores from stitched channels, mapped back to the input grid.

        ``score_threshold`` / ``pixel_agreement`` (instance output) override the predictor's: voxels whose stitched
        instance score is below the first are not lesions, lesions whose maximum pixel-branch lesion probability is
        below the second are dropped (used to choose both on validation without re-running the network).
        """
        from plan_lite.data.preprocess import invert
        from plan_lite.model.postprocess import (
            INSTANCE_CHANNELS,
            channel_argmax,
            decide_labels,
            gate_lesions,
            instance_labels,
            label_lesions,
            lesion_patient_scores,
            no_lesion_patient_scores,
            retype_lesions,
        )

        first = min(LESION_LABELS)
        probs = out[:NUM_CLASSES]
        first_pixel = NUM_CLASSES + (INSTANCE_CHANNELS if self.instance else 0)
        first_patient = first_pixel + (NUM_CLASSES - first if self.pixel_types else 0)
        scores = None
        if self.instance:
            thr = self.score_threshold if score_threshold is None else score_threshold
            label, scores, type_probs = instance_labels(probs, out[NUM_CLASSES:first_pixel], score_threshold=thr)
            probs = probs.clone()
            probs[min(LESION_LABELS):] = torch.from_numpy(type_probs)  # lesion records: the queries' types
        else:
            label = decide_labels(probs, self.lesion_decision)
        lesion_vox = np.isin(label, LESION_LABELS)
        records, inst = label_lesions(label, probs, prep.spacing, self.min_volume_mm3,
                                      max_liver_distance_mm=self.max_dist, scores=scores)
        pixel = out[first_pixel:first_patient] if self.pixel_types else out[first:NUM_CLASSES]
        if self.lesion_type != "query":  # pixel-branch types: stitched beside, or the semantic channels themselves
            retype_lesions(label, inst, records, probs[first:], pixel, self.lesion_type)
        if self.instance:  # both branches must see a lesion (InferConfig.pixel_agreement; 0 keeps all)
            agree = self.pixel_agreement if pixel_agreement is None else pixel_agreement
            records = gate_lesions(inst, records, pixel.sum(0), agree)
        dropped = lesion_vox & (inst == 0)
        if dropped.any():
            label[dropped] = channel_argmax(out[:first]).numpy()[dropped]
            lesion_vox = lesion_vox & ~dropped
        if out.shape[0] > first_patient:
            pat = out[first_patient:]
            mask = torch.from_numpy(lesion_vox)
            groups = PATIENT_GROUPS[self.cfg.model.patient_groups]
            if mask.any():  # InferConfig.patient_readout: the patient branch, the kept lesions, or their mean
                scores = pat[:, mask].mean(1).tolist()
                if self.patient_readout != "patient":
                    from_lesions = lesion_patient_scores(records, groups)
                    scores = (from_lesions if self.patient_readout == "lesion"
                              else [0.5 * (a + b) for a, b in zip(scores, from_lesions)])
            elif self.patient_no_lesion == "pixel":  # rank lesion-free cases by the pixel branch, not a tie at 0
                scores = no_lesion_patient_scores(pixel, label == LIVER_LABEL, groups)
            else:
                scores = [0.0] * pat.shape[0]
        else:
            counts = np.bincount(label.ravel(), minlength=NUM_CLASSES)
            thr = self.cfg.voxels(self.cfg.loss.patient_size_threshold_mm3)
            scores = [min(1.0, float(sum(counts[k] for k in labs)) / thr)
                      for _, labs in PATIENT_GROUPS[self.cfg.model.patient_groups]]
        full = invert(label, prep.meta).astype(np.uint8)
        inst_full = invert(inst.astype(np.int32), prep.meta)
        lesions, lut = _lesion_geometry(records, inst_full, case.spacing, case.affine)
        return CasePrediction(case.case_id, full, np.asarray(case.affine), tuple(case.spacing), lesions,
                              dict(zip(self.names, (float(s) for s in scores))), lut[inst_full])


def _lesion_geometry(records: list[dict], inst: np.ndarray, spacing, affine) -> tuple[list[dict], np.ndarray]:
    """Lesion records measured in the input grid: volume, radius, centre (voxel z,y,x and world x,y,z mm), bbox;
    and the look-up table from ``inst``'s ids to the output ids (1..n in record order, 0 for vanished lesions)."""
    from scipy import ndimage

    voxel = float(np.prod(spacing))
    objs = ndimage.find_objects(inst) if inst.max() > 0 else []
    lut = np.zeros(max([int(inst.max())] + [r["id"] for r in records]) + 1, dtype=np.int32)
    out = []
    for r in records:
        i = r["id"]
        sl = objs[i - 1] if i - 1 < len(objs) else None
        if sl is None:
            continue  # vanished when mapped back (sub-voxel lesion)
        idx = np.argwhere(inst[sl] == i) + [s.start for s in sl]
        vol = len(idx) * voxel
        cz, cy, cx = idx.mean(0)
        world = np.asarray(affine) @ np.array([cx, cy, cz, 1.0])
        lut[i] = len(out) + 1
        extra = {"pixel_probability": r["pixel_probability"]} if "pixel_probability" in r else {}
        out.append({
            "id": len(out) + 1, "label": int(r["label"]), "type": LABEL_NAMES[int(r["label"])],
            "probability": float(r["probability"]), "type_probabilities": r["type_probs"],
            "volume_mm3": vol, "equivalent_radius_mm": (3 * vol / (4 * math.pi)) ** (1 / 3),
            "num_voxels": int(len(idx)), "center_voxel_zyx": [float(cz), float(cy), float(cx)],
            "center_world_mm": [float(v) for v in world[:3]],
            "bbox_zyx": {"start": [int(s.start) for s in sl], "stop": [int(s.stop) for s in sl]}, **extra,
        })
    return out, lut


# ---------------------------------------------------------------------------------------------- inputs
def _split_text(split) -> str:
    return split if isinstance(split, str) else " ".join(split)


def resolve_inputs(inputs, phases, split=None) -> list:
    """Cases to predict: one MSD folder (all cases, or the cases of one or several splits of cases.csv) or one
    image file per phase, where a folder holding one DICOM CT series stands for an image file (case id: the
    folder name). ``split``: None, a split name, or a sequence of names (``("val", "test")``).

    Returns a list of zero-argument callables that load a ``Case`` (lazy: one case in memory at a time).
    """
    from plan_lite.data.dicom import is_dicom_folder
    from plan_lite.data.io import MSDDataset, load_images

    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir() and not is_dicom_folder(paths[0]):
        root = paths[0]
        if not any((root / n).exists() for n in ("dataset.json", "imagesTr", "imagesTs")):
            raise PlanLiteError(f"{root}: neither an MSD dataset folder (no dataset.json) nor a DICOM series "
                                f"folder (no DICOM files)")
        subset = "all" if (root / "imagesTs").is_dir() and (root / "imagesTr").is_dir() else (
            "test" if (root / "imagesTs").is_dir() else "train")
        ds = MSDDataset(root, phases=tuple(phases), subset=subset)
        if split is not None:
            from plan_lite.engine.training_data import split_ids

            if not (root / "cases.csv").exists():
                raise PlanLiteError(f"{root}: --split {_split_text(split)} needs cases.csv")
            ids = split_ids(root, split, ds.case_ids)
        else:
            ids = ds.case_ids
        if not ids:
            raise PlanLiteError(f"{root}: no cases to predict" + (f" in split {_split_text(split)}" if split else ""))
        for cid in ids:
            ds.image_paths(cid)  # fail early on a missing phase file
        return [lambda cid=cid: ds.load(cid) for cid in ids]
    if split is not None:
        raise PlanLiteError("predict: --split needs an MSD dataset folder as input")
    if len(paths) != len(phases):
        raise PlanLiteError(f"predict: the model needs {len(phases)} phase image(s) ({', '.join(phases)}) in that "
                            f"order; got {len(paths)} file(s): {' '.join(str(p) for p in paths)}")
    return [lambda: load_images(paths, phases=tuple(phases))]


def write_prediction(pred: CasePrediction, out_dir: Path) -> None:
    """``{case}.nii.gz``, ``{case}_lesions.json``, ``{case}_patient.json`` (atomic)."""
    from plan_lite.data.io import write_label

    write_label(out_dir / f"{pred.case_id}.nii.gz", pred.label, pred.affine)
    atomic_write_json(out_dir / f"{pred.case_id}_lesions.json", {"case": pred.case_id, "lesions": pred.lesions})
    atomic_write_json(out_dir / f"{pred.case_id}_patient.json", pred.patient)


def write_patients_csv(preds: dict[str, dict[str, float]], names: list[str], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", *names])
    for case, scores in preds.items():
        w.writerow([case, *(f"{scores[n]:.6f}" for n in names)])
    atomic_write_text(path, buf.getvalue())


def predict(checkpoint, inputs, out_dir, progress: bool = True, split=None,
            keep_outside_liver: bool = False, device: str | None = None, overlap: float | None = None,
            two_pass: bool = False, predictor: Predictor | None = None, semantic: str | None = None,
            lesion_decision: str | None = None, lesion_output: str | None = None,
            score_threshold: float | None = None, lesion_type: str | None = None,
            pixel_agreement: float | None = None, instance_paint: str | None = None,
            patient_no_lesion: str | None = None, patient_readout: str | None = None) -> Path:
    """Predict every input case into ``out_dir`` (see the module docstring); returns ``out_dir``.

    Every inference setting left at None comes from the checkpoint's ``cfg.infer`` (the settings training
    validated with). ``lesion_output``: ``"instance"`` (Mask2Former instance inference) or ``"semantic"``.
    ``semantic`` picks the per-voxel class probabilities (``SEMANTIC_SOURCES``): ``"lesion"`` (default, the paper's
    lesion-branch semantic map, book/design_decisions.md#dd-inference), ``"pixel"`` (softmax of the pixel branch,
    the nnU-Net-like output that the anchors are built from) or ``"fused"`` (their mean). Short CPU trainings
    (``tiny``, a few hundred steps) reach a useful pixel branch long before the lesion branch's query masks are
    sharp.
    ``lesion_decision`` (``"argmax"`` or ``"merged"``) turns probabilities into labels (``decide_labels``).
    ``lesion_type`` (``"query"``, ``"pixel"`` or ``"fused"``): where each lesion's type comes from
    (``plan_lite.model.postprocess.retype_lesions``).
    ``instance_paint`` (instance output): ``"lesion"`` or ``"panoptic"`` (``postprocess.instance_inference``).
    ``pixel_agreement`` (instance output): drop lesions whose maximum pixel-branch lesion probability is below it
    (``plan_lite.model.postprocess.gate_lesions``; every lesion record carries its ``pixel_probability``).
    ``patient_no_lesion`` (``"zero"`` or ``"pixel"``): the patient scores of a case without kept lesions
    (``InferConfig.patient_no_lesion``); ``patient_readout`` (``"patient"``, ``"lesion"`` or ``"fused"``): those of
    a case with kept lesions (``InferConfig.patient_readout``).
    ``split`` (MSD folder input): one split name or several, e.g. ``("val", "test")`` so that the evaluation can
    choose the patient threshold on ``val`` before it is applied to ``test``.
    """
    pred = predictor or Predictor(checkpoint, device=device, overlap=overlap, keep_outside_liver=keep_outside_liver,
                                  two_pass=two_pass, semantic=semantic, lesion_decision=lesion_decision,
                                  lesion_output=lesion_output, score_threshold=score_threshold,
                                  lesion_type=lesion_type, pixel_agreement=pixel_agreement,
                                  instance_paint=instance_paint, patient_no_lesion=patient_no_lesion,
                                  patient_readout=patient_readout)
    loaders = resolve_inputs(inputs if isinstance(inputs, (list, tuple)) else [inputs], pred.cfg.data.phases, split)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        from tqdm.auto import tqdm

        loaders = tqdm(loaders, desc="predict", unit="case")
    table: dict[str, dict[str, float]] = {}
    for load in loaders:
        p = pred.predict_case(load())
        write_prediction(p, out)
        table[p.case_id] = p.patient
    write_patients_csv(table, pred.names, out / "patients.csv")
    atomic_write_json(out / "prediction.json", pred.settings())
    return out


def validation_metrics(model, cfg, stats, dataset_dir, case_ids, stage: int = 2, max_cases: int = 8) -> dict:
    """Cheap validation (overlap 0.25, at most ``max_cases`` val cases): pixel Dice, lesion recall/precision.

    ``score`` = mean of tumour Dice, lesion recall and lesion precision (None counts as 0).
    """
    import tempfile

    from plan_lite.data.io import MSDDataset
    from plan_lite.metrics import evaluate_folders

    p = Predictor(model=model, cfg=cfg, stats=stats, stage=stage, device=next(model.parameters()).device,
                  overlap=0.25)
    ds = MSDDataset(dataset_dir, phases=tuple(cfg.data.phases))
    with tempfile.TemporaryDirectory(prefix="plan-val-") as tmp:
        for cid in case_ids[:max_cases]:
            write_prediction(p.predict_case(ds.load(cid)), Path(tmp))
        m = evaluate_folders(dataset_dir, tmp, progress=False)
    dice, rec, prec = m["pixel"].get("dice"), m["lesion"].get("recall"), m["lesion"].get("precision")
    vals = [v if v is not None and not (isinstance(v, float) and math.isnan(v)) else 0.0 for v in (dice, rec, prec)]
    return {"dice": dice, "recall": rec, "precision": prec, "tp": m["lesion"].get("tp"),
            "fp": m["lesion"].get("fp"), "fn": m["lesion"].get("fn"), "score": float(np.mean(vals))}


__all__ = ["SEMANTIC_SOURCES", "Predictor", "CasePrediction", "predict", "resolve_inputs", "write_prediction", "validation_metrics"]
