"""Markdown tables for the synthetic data card: ``python -m plan_lite.data.card DATASET [--json OUT]``.

Declared values come from the generator's constants (``synthetic.TISSUE_HU``, ``synth_lesions.LESION_VARIANTS``);
measured values from ``dataset_statistics`` on the written files (eroded masks: the (meas) convention of the data
card's "Fact topics").
"""

from __future__ import annotations

import argparse
import sys


def _f(x, nd=1) -> str:
    return "–" if x != x else f"{x:.{nd}f}"  # NaN -> dash


def tissue_prior_table() -> str:
    from plan_lite.data.synthetic import TISSUE_HU

    rows = ["| tissue | NC | LA | PV | per-subject SD (NC/LA/PV) | source |", "|---|---|---|---|---|---|"]
    for name, (mean, sd, shared, src) in TISSUE_HU.items():
        if name == "lesion":
            continue
        sds = f"{sd[0]:g} (one draw, all phases)" if shared else "/".join(f"{s:g}" for s in sd)
        rows.append(f"| {name} | {mean[0]:g} | {mean[1]:g} | {mean[2]:g} | {sds} | {src} |")
    return "\n".join(rows)


def label_hu_table(stats: dict) -> str:
    from plan_lite.data.synthetic import expected_label_hu

    exp = expected_label_hu()
    ph = stats["phases"]
    rows = ["| label | " + " | ".join(f"{p.upper()} declared / measured" for p in ph) + " | subjects |",
            "|---|" + "---|" * (len(ph) + 1)]
    for name, d in stats["label_hu"].items():
        cells = []
        for p in ph:
            e = exp.get(name, {}).get(p)
            cells.append(f"{'–' if e is None else f'{e:g}'} / {_f(d[p]['mean'])} ± {_f(d[p]['sd'])}")
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {d[ph[0]]['n']} |")
    return "\n".join(rows)


def lesion_hu_table(stats: dict) -> str:
    from plan_lite.data.synth_lesions import LESION_VARIANTS

    ph = stats["phases"]
    rows = ["| variant (label) | " + " | ".join(f"{p.upper()} declared / measured" for p in ph) + " | lesions |",
            "|---|" + "---|" * (len(ph) + 1)]
    for v, var in LESION_VARIANTS.items():
        d = stats["lesion_hu"].get(v)
        cells = []
        for p in ph:
            e = var.hu[("nc", "la", "pv").index(p)]
            m = "–" if d is None else f"{_f(d[p]['mean'])} ± {_f(d[p]['sd'])}"
            cells.append(f"{e:g} / {m}")
        n = 0 if d is None else d[ph[0]]["n"]
        rows.append(f"| {v} ({var.label}) | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(rows)


def size_tables(stats: dict) -> str:
    les = stats["lesions"]
    bins = list(les["radius_hist"])
    out = ["| equivalent radius (mm) | " + " | ".join(bins) + " | total |", "|---|" + "---|" * (len(bins) + 1)]
    out.append("| all lesions | " + " | ".join(str(les["radius_hist"][b]) for b in bins) + f" | {les['total']} |")
    for t, h in sorted(les["radius_hist_by_type"].items()):
        out.append(f"| {t} | " + " | ".join(str(h[b]) for b in bins) + f" | {sum(h.values())} |")
    out += ["", "| type | lesions | tumour patients with the type | lesions per such patient (mean ± SD) |",
            "|---|---|---|---|"]
    for t, m in les["multiplicity_by_type"].items():
        out.append(f"| {t} | {les['by_type'].get(t, 0)} | {m['n']} | {_f(m['mean'], 2)} ± {_f(m['sd'], 2)} |")
    return "\n".join(out)


def summary_table(stats: dict) -> str:
    les, lv = stats["lesions"], stats["liver_volume_ml"]
    rows = ["| quantity | value |", "|---|---|",
            f"| cases | {stats['n_cases']} (seed {stats['seed']}, generator {stats['generator_version']}) |",
            f"| grid | spacing {stats['spacing']} mm, shape {stats['shape']}, phases {', '.join(stats['phases'])} |",
            f"| groups | {', '.join(f'{k} {v}' for k, v in sorted(stats['groups'].items()))} |",
            f"| splits | {', '.join(f'{k} {v}' for k, v in sorted(stats['splits'].items()))} |",
            f"| liver volume (ml, incl. vessels and lesions) | {_f(lv['mean'], 0)} ± {_f(lv['sd'], 0)} "
            f"(min {_f(lv['min'], 0)}, max {_f(lv['max'], 0)}) |",
            f"| lesions | {les['total']}; per tumour patient {_f(les['per_tumor_patient']['mean'], 2)} ± "
            f"{_f(les['per_tumor_patient']['sd'], 2)} |",
            f"| equivalent radius (mm) | {_f(les['radius_min'], 2)} … {_f(les['radius_max'], 1)} |",
            f"| listed vs rasterised volume, max relative error | {les['volume_max_rel_err']:.3g} "
            f"({les['unmatched']} unmatched) |",
            "| noise SD in air (HU, mean over cases) | "
            + ", ".join(f"{p.upper()} {_f(d['mean'])}" for p, d in stats["noise_sd_air"].items()) + " |"]
    return "\n".join(rows)


def card_tables(stats: dict) -> str:
    return "\n\n".join([
        "### Summary", summary_table(stats),
        "### Organ HU (tumour + normal subjects; masks eroded by 2 in-plane voxels; mean ± SD over subjects)", label_hu_table(stats),
        "### Lesion HU (mean ± SD over lesions with >= 20 interior voxels)", lesion_hu_table(stats),
        "### Lesion sizes and counts", size_tables(stats)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plan_lite.data.card", description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--json", help="also write the statistics as JSON here")
    ap.add_argument("--priors", action="store_true", help="print the tissue prior table too")
    a = ap.parse_args(argv)
    from plan_lite.data.synthetic import dataset_statistics

    stats = dataset_statistics(a.dataset)
    if a.json:
        from plan_lite.utils import atomic_write_json

        atomic_write_json(a.json, stats)
    if a.priors:
        print(tissue_prior_table() + "\n")
    print(card_tables(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
