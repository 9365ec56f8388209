"""A real CT that ships with plan-lite: the non-contrast abdominal scan of TotalSegmentator's tests.

TotalSegmentator (Wasserthal et al., Radiology: AI 2023; github.com/wasserth/TotalSegmentator) publishes a small
real CT with its predicted masks as test fixtures under the Apache-2.0 licence (``LICENSE-TotalSegmentator.txt``
here). plan-lite copies them unchanged so that a lesson and the tests can take a real scan through the pipeline
without a download:

========================================  ===================================================================
file                                      content
========================================  ===================================================================
``example_ct.nii.gz``                     non-contrast abdominal CT, 122 x 101 x 112 voxels (x, y, z), 3 mm
                                          isotropic, int32 HU (-1207 .. 3382; below -1024 outside the field)
``example_ct_liver_mask_v1.nii.gz``       liver mask on that grid (TotalSegmentator v1 prediction, ~1.1 L)
``example_ct_sm.nii.gz``                  a 30-slice crop of the same scan (int16 HU)
``example_seg.nii.gz``                    organ map on the crop's grid (TotalSegmentator v2 prediction):
                                          5 liver, 1 spleen, 2 / 3 kidneys, 4 gallbladder, 6 stomach,
                                          7 pancreas, 52 aorta, 63 inferior vena cava, 64 portal / splenic vein
``phase_prediction.json``                 TotalSegmentator's contrast-phase estimate: native
========================================  ===================================================================

The masks are model predictions, not expert labels, and the scan holds **no liver lesion**: every lesion a model
finds in it is a false positive.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
# TotalSegmentator v2 organ ids -> plan-lite labels (the organs both label maps have).
TOTALSEG_TO_PLAN: dict[int, int] = {5: 1, 4: 2, 1: 4, 6: 5, 7: 6}


def real_ct(name: str = "example_ct.nii.gz") -> Path:
    """Path of one of the shipped files (see the module docstring); ``FileNotFoundError`` names a missing one."""
    path = HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a shipped sample file ({', '.join(p.name for p in files())})")
    return path


def files() -> list[Path]:
    """Every shipped sample file."""
    return sorted(p for p in HERE.iterdir() if p.suffix in (".gz", ".json", ".txt"))


__all__ = ["real_ct", "files", "TOTALSEG_TO_PLAN"]
