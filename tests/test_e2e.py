"""End to end: synthetic data -> train (tiny) -> predict -> evaluate (plan_reference.md Sec. 4.7, 4.8).

Chance level for lesion recall: a predictor that marks the same number of lesion voxels at random positions in
the liver hits a ground-truth lesion (Dice > 0.2) with probability at most the fraction of the liver it marks,
``chance = predicted lesion voxels / liver voxels`` over the test cases (ground-truth liver). The trained tiny
model must reach recall >= max(0.3, 3 * chance) and a falling loss.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SPACING = (5.0, 4.0, 4.0)
STEPS = 150


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from plan_lite.config import get_preset
    from plan_lite.data.synthetic import generate_dataset
    from plan_lite.engine.train import train

    root = tmp_path_factory.mktemp("e2e")
    ds = generate_dataset(root / "ds", 10, seed=0, spacing=SPACING, shape=(24, 96, 96), progress=False)
    cfg = get_preset("tiny", spacing=SPACING, patch_size=(8, 48, 48), min_lesion_voxels=3, lr=3e-3,
                     fg_oversample=0.5, val_every=STEPS)
    run = train(ds, cfg, root / "run", max_steps=STEPS, progress=False)
    return ds, run


def test_loss_falls_and_logs(trained):
    _, run = trained
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(recs) == STEPS and recs[-1]["step"] == STEPS
    pix = np.array([r["loss_pixel_ce"] + r["loss_pixel_dice"] for r in recs])
    print(f"pixel loss first 10 {pix[:10].mean():.3f} last 10 {pix[-10:].mean():.3f}")
    assert pix[-10:].mean() < 0.7 * pix[:10].mean()
    assert {"loss_class", "loss_mask", "loss_dice", "loss_patient"} <= set(recs[-1])
    val = [json.loads(x) for x in (run / "val.jsonl").read_text().splitlines()]
    assert val and val[-1]["step"] == STEPS
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file() and (run / "config.json").is_file()


def test_predict_and_evaluate_beats_chance(trained, tmp_path):
    from plan_lite.data.io import read_image
    from plan_lite.engine.infer import predict
    from plan_lite.labels import LESION_LABELS
    from plan_lite.metrics import evaluate_folders

    ds, run = trained
    pred = predict(run / "last.pt", [ds], tmp_path / "pred", split="test", progress=False)
    m = evaluate_folders(ds, pred, cases_csv=ds / "cases.csv", splits=("test",), progress=False)
    les = m["lesion"]
    liver = marked = 0
    for f in sorted(pred.glob("*.nii.gz")):
        gt, _, _ = read_image(ds / "labelsTr" / f.name)
        p, _, _ = read_image(f)
        liver += int((gt == 1).sum() + np.isin(gt, LESION_LABELS).sum())
        marked += int(np.isin(p, LESION_LABELS).sum())
    chance = marked / max(liver, 1)
    print(f"lesion recall {les['recall']} precision {les['precision']} tp {les['tp']} fp {les['fp']} "
          f"fn {les['fn']} chance {chance:.4f} dice {m['pixel']['dice']}")
    assert les["recall"] is not None and les["recall"] >= max(0.3, 3 * chance)
    assert les["precision"] is not None and les["precision"] > 0
