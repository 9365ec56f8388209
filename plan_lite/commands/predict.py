"""``plan-lite predict CHECKPOINT INPUT... --out DIR [--split test] [--keep-outside-liver]``
(book/design_decisions.md#dd-inference; paper Sec. 3; book page "Evaluation").

INPUT is one image file per phase (order = the model's ``cfg.data.phases``) or one MSD dataset folder. A folder
holding one DICOM CT series (``plan_lite.data.dicom``; ``pip install "plan-lite[dicom]"``) stands for one
phase's image file; its outputs are NIfTI on the series' grid, named after the folder.
Writes ``{case}.nii.gz`` (input affine and shape), ``{case}_lesions.json``, ``{case}_patient.json`` and
``patients.csv``.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a plan-lite checkpoint (best.pt / last.pt)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or DICOM series folders (one per phase), or an MSD folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", nargs="+", metavar="SPLIT",
                   help="with an MSD folder: only these splits of cases.csv (e.g. test, or val test: `evaluate` "
                        "chooses the patient threshold on val)")
    p.add_argument("--keep-outside-liver", action="store_true",
                   help="keep lesions whose centroid is > 3 mm from the predicted liver")
    p.add_argument("--two-pass", action="store_true", help="second pass on the crop around the predicted liver")
    g = p.add_argument_group("inference (default: the checkpoint's infer settings, those training validated with)")
    g.add_argument("--lesion-output", choices=("instance", "semantic"),
                   help="lesions from Mask2Former instance inference, or from the semantic merge of all queries")
    g.add_argument("--score-threshold", type=float, help="instance output: keep queries whose score exceeds this")
    g.add_argument("--instance-paint", choices=("lesion", "panoptic"),
                   help="instance output: only lesion queries paint, or background and organ queries compete too")
    g.add_argument("--pixel-agreement", type=float, metavar="P",
                   help="instance output: drop lesions whose maximum pixel-branch lesion probability is below P")
    g.add_argument("--semantic", choices=("lesion", "pixel", "fused"),
                   help="class probabilities from the lesion branch (paper), the pixel branch, or their mean")
    g.add_argument("--lesion-decision", choices=("argmax", "merged"),
                   help="semantic output: argmax of 15 classes, or lesion where the summed lesion probability wins")
    g.add_argument("--lesion-type", choices=("query", "pixel", "fused"),
                   help="each lesion's type from the lesion branch's queries (paper), the pixel branch, or both")
    g.add_argument("--patient-no-lesion", choices=("zero", "pixel"),
                   help="patient scores of a case without lesions: 0 (official), or 1 %% of the pixel branch's "
                        "highest lesion probability in the liver")
    g.add_argument("--patient-readout", choices=("patient", "lesion", "fused"),
                   help="patient scores of a case with lesions: the patient branch over the lesion voxels "
                        "(paper), the highest lesion score, or their mean")
    g.add_argument("--overlap", type=float, help="sliding-window overlap")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from plan_lite.engine.predict import predict

    out = predict(args.checkpoint, args.inputs, args.out, progress=not args.no_progress, split=None if args.split is None else tuple(args.split),
                  keep_outside_liver=args.keep_outside_liver, device=args.device, overlap=args.overlap,
                  two_pass=args.two_pass, semantic=args.semantic, lesion_decision=args.lesion_decision,
                  lesion_output=args.lesion_output, score_threshold=args.score_threshold,
                  lesion_type=args.lesion_type, pixel_agreement=args.pixel_agreement,
                  instance_paint=args.instance_paint, patient_no_lesion=args.patient_no_lesion,
                  patient_readout=args.patient_readout)
    import json

    used = json.loads((out / "prediction.json").read_text())
    how = (f"lesion_output=instance, score_threshold={used['score_threshold']}, paint={used['instance_paint']}, "
           f"pixel_agreement={used['pixel_agreement']}" if used["lesion_output"] == "instance"
           else f"lesion_output=semantic, lesion_decision={used['lesion_decision']}")
    print(f"predictions: {out} (checkpoint step {used['step']}, stage {used['checkpoint_stage']}; inference: "
          f"{how}, semantic={used['semantic']}, lesion_type={used['lesion_type']}, "
          f"patient_no_lesion={used['patient_no_lesion']}, patient_readout={used['patient_readout']}; settings in "
          f"prediction.json)")
    return 0
