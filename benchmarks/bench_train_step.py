"""Train-step time and peak memory: PLAN vs its own pixel-only backbone, Mask2Former and MONAI DynUNet.

One training step = forward + Eq. 1 criterion (``plan_lite.losses.PlanCriterion``, stage 2) + backward + RAdam
step. DynUNet (``monai.networks.nets.DynUNet``) gets the preset's widths / strides / kernels and MONAI's
``DiceCELoss`` (softmax, no background in the Dice). Every variant runs in its own subprocess so that peak
memory is its own: CPU = ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the steps minus before the first
step (tracemalloc does not see torch allocations); GPU = ``torch.cuda.max_memory_allocated``. Timing runs all
variants in one further process with their steps interleaved round-robin, so that load from other processes
hits them alike; it reports wall time and process CPU time (user + system) per step, medians.

    python benchmarks/bench_train_step.py                      # tiny preset, CPU, batch 1
    python benchmarks/bench_train_step.py --preset paper --device cuda --batch 2

Target (plan-lite issue): PLAN <= 1.3x its pixel-only backbone per step and <= 1.5x DynUNet.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plan", "pixel_only", "mask2former", "dynunet")


def _batch(cfg, batch: int, device):
    import torch

    d, h, w = cfg.train.patch_size
    g = torch.Generator().manual_seed(0)
    img = torch.randn(batch, cfg.model.in_channels, d, h, w, generator=g)
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in (d, h, w)), indexing="ij")
    lab = torch.zeros(batch, d, h, w, dtype=torch.long)
    lab[:, (z ** 2 + y ** 2 + x ** 2) < 0.6] = 1  # liver-like ball
    lab[:, ((z - 0.1) ** 2 + (y + 0.3) ** 2 + (x + 0.2) ** 2) < 0.02] = 7
    lab[:, ((z + 0.1) ** 2 + (y - 0.3) ** 2 + (x - 0.3) ** 2) < 0.01] = 13
    return img.to(device), lab.to(device)


def _dynunet(cfg):
    from monai.networks.nets import DynUNet

    from plan_lite.labels import NUM_CLASSES

    m = cfg.model
    return DynUNet(3, m.in_channels, NUM_CLASSES, kernel_size=list(m.stage_kernels), strides=list(m.stage_strides),
                   upsample_kernel_size=list(m.stage_strides[1:]), filters=list(m.stage_widths),
                   norm_name="instance", act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}))


def build(variant: str, args):
    """(step function, parameter count in millions) for one variant; a step is fwd + loss + bwd + RAdam."""
    import torch

    from plan_lite.config import get_preset

    torch.manual_seed(0)
    device = torch.device(args.device)
    over = {"pixel_only": {"pixel_only": True}, "mask2former": {"mask2former": True, "query_pos_embed": True}}
    cfg = get_preset(args.preset, **over.get(variant, {}))
    img, lab = _batch(cfg, args.batch, device)
    if variant == "dynunet":
        from monai.losses import DiceCELoss

        model = _dynunet(cfg).to(device)
        loss_fn = DiceCELoss(softmax=True, to_onehot_y=True, include_background=False, smooth_nr=1e-5,
                             smooth_dr=1e-5)

        def loss_of(x, y):
            return 2 * loss_fn(model(x).float(), y[:, None])
    else:
        from plan_lite.losses import PlanCriterion
        from plan_lite.model import PLAN

        model = PLAN(cfg).to(device)
        crit = PlanCriterion(cfg)

        def loss_of(x, y):
            return crit(model(x, stage=2), {"labels": y})["total"]
    opt = torch.optim.RAdam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    amp = device.type == "cuda" and cfg.train.amp
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = loss_of(img, lab)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, sum(p.numel() for p in model.parameters()) / 1e6


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_memory(args) -> dict:
    """Peak memory of one variant over warmup + 1 step, alone in this process."""
    import torch

    torch.set_num_threads(args.threads)
    step, params = build(args.child, args)
    cuda = args.device.startswith("cuda")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    for _ in range(args.warmup + 1):
        step()
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"variant": args.child, "peak_mb": peak_mb, "params_m": params}


def run_timing(args) -> dict:
    """All variants in one process, steps interleaved round-robin so that machine load hits them alike.

    Reports the median wall time and the median process CPU time (user + system) per step.
    """
    import torch

    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    steps = {v: build(v, args)[0] for v in names}
    for _ in range(args.warmup):
        for v in names:
            steps[v]()
    wall = {v: [] for v in names}
    cpu = {v: [] for v in names}
    for _ in range(args.steps):
        for v in names:
            t, c = time.perf_counter(), _cpu_s()
            steps[v]()
            wall[v].append(time.perf_counter() - t)
            cpu[v].append(_cpu_s() - c)
    return {v: {"step_s": statistics.median(wall[v]), "cpu_s": statistics.median(cpu[v]), "times": wall[v]}
            for v in names}


def table(results: dict[str, dict], preset: str, device: str, batch: int) -> str:
    mem = "max_memory_allocated" if device.startswith("cuda") else "ru_maxrss delta, own process"
    rows = [f"train step, preset `{preset}`, device {device}, batch {batch}; wall and CPU time = medians of "
            f"interleaved steps; peak mem = {mem}", "",
            "| variant | params (M) | wall (s) | CPU (s) | peak mem (MB) | wall x pixel_only | wall x DynUNet | "
            "CPU x pixel_only | CPU x DynUNet | mem x pixel_only | mem x DynUNet |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    pix, dyn = results.get("pixel_only"), results.get("dynunet")

    def ratio(r, ref, key):
        return f"{r[key] / ref[key]:.2f}" if ref and ref.get(key) and r.get(key) is not None else "-"

    def num(r, key, fmt):
        return format(r[key], fmt) if r.get(key) is not None else "-"
    for name, r in results.items():
        rows.append(f"| {name} | {num(r, 'params_m', '.2f')} | {num(r, 'step_s', '.3f')} | {num(r, 'cpu_s', '.3f')} | "
                    f"{num(r, 'peak_mb', '.0f')} | {ratio(r, pix, 'step_s')} | {ratio(r, dyn, 'step_s')} | "
                    f"{ratio(r, pix, 'cpu_s')} | {ratio(r, dyn, 'cpu_s')} | {ratio(r, pix, 'peak_mb')} | "
                    f"{ratio(r, dyn, 'peak_mb')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "__timing__":
        print("RESULT " + json.dumps(run_timing(args)))
        return 0
    if args.child:
        print("RESULT " + json.dumps(run_memory(args)))
        return 0
    names = args.variants.split(",")
    results: dict[str, dict] = {v: {} for v in names}
    common = ["--preset", args.preset, "--device", args.device, "--batch", str(args.batch), "--steps",
              str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--variants",
              args.variants]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for child in [*names, "__timing__"]:
        proc = subprocess.run([sys.executable, __file__, "--child", child, *common], capture_output=True,
                              text=True, env=env)
        line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{child}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        res = json.loads(line[-1][7:])
        if child == "__timing__":
            for v, r in res.items():
                results[v].update(r)
        else:
            results[child].update(res)
        print(f"{child}: done", file=sys.stderr)
    print(table(results, args.preset, args.device, args.batch))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
