"""Training loop: two-stage schedule, RAdam + poly LR, AMP on CUDA, exact resume, DDP (paper Sec. 3).

* Stage 1 trains the pixel branch alone (``model(x, stage=1)``, ``criterion(stage=1)``) for
  ``stage1_epochs * iters_per_epoch`` steps; stage 2 trains everything for ``stage2_epochs * iters_per_epoch``
  steps, with the patient and consistency terms from ``patient_start_epoch`` of stage 2 on (Eq. 1; official
  ``cfg_*_plan1`` / ``cfg_*_plan2``). ``max_steps`` replaces the total and is split between the stages (and the
  patient start) in the same proportions. ``pixel_only`` has no stage 2: the whole budget is stage 1.
* Optimiser: RAdam (lr, weight decay 1e-4), gradient-norm clip 12. **Poly LR** ``lr * (1 - t / T) ** 0.9`` is
  stepped **per iteration** (not per epoch as the official code: equal for long runs, smoother for short ones) and
  restarts at the stage switch, because the official stages are two runs with their own poly schedule.
* Stage switch (``cfg.train.stage2_*``): the official stage 2 is a new run that loads the stage-1 weights, so by
  default stage 2 starts a **fresh RAdam** (``stage2_optimizer="fresh"``; ``"continue"`` keeps the stage-1
  moments). Optional: a linear warm-up over the first ``stage2_warmup`` fraction of stage 2, and a lower LR for
  the backbone and pixel branch (``stage2_backbone_lr_scale``), which protect the trained pixel branch from the
  large early gradients of the new lesion terms.
* AMP only on CUDA: bf16 where supported, else fp16 with a GradScaler.
* Exact resume: every random draw comes from the checkpointed generators (sampler, augmentation, python, numpy,
  torch CPU/CUDA); a CPU run stopped at step k and resumed gives bit-identical weights.
* Rank 0 writes ``config.json``, ``log.jsonl`` (one line per step; ``time`` = wall and ``cpu`` = process CPU
  seconds since this call's loop started), ``val.jsonl``, ``last.pt`` and ``best.pt``
  with ``best.json`` (its step, stage and score). Only validations of the final stage (stage 2, or stage 1 for
  ``pixel_only``) compete for ``best.pt`` (on a tie the later one wins); without one, ``best.pt`` is the last
  checkpoint.

Multi-GPU: ``torchrun --nproc_per_node=4 -m plan_lite.cli train DATA --preset paper --out runs/paper``
(``plan_lite.engine.distributed``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from plan_lite.config import PlanConfig
from plan_lite.engine import checkpoint as ckpt
from plan_lite.engine.distributed import (
    barrier,
    broadcast_flag,
    cleanup_distributed,
    init_distributed,
    unwrap,
    wrap_model,
)
from plan_lite.engine.sampler import PatchSampler
from plan_lite.engine.training_data import load_train_cases
from plan_lite.errors import PlanLiteError
from plan_lite.utils import atomic_write_json, seed_everything


@dataclass
class Schedule:
    """Step counts of the two stages and of the patient start (absolute steps)."""

    stage1: int
    stage2: int
    patient_start: int  # absolute step from which patient + consistency terms are on
    lr: float
    power: float = 0.9
    warmup2: int = 0  # linear warm-up steps at the start of stage 2

    @property
    def total(self) -> int:
        return self.stage1 + self.stage2

    @classmethod
    def from_config(cls, cfg: PlanConfig, max_steps: int | None = None) -> Schedule:
        t = cfg.train
        s1, s2 = t.stage1_epochs * t.iters_per_epoch, t.stage2_epochs * t.iters_per_epoch
        p = min(t.patient_start_epoch * t.iters_per_epoch, s2)
        if not cfg.model.lesion_branch:
            s1, s2, p = s1 + s2, 0, 0
        if max_steps is not None:
            if max_steps < 1:
                raise PlanLiteError(f"train: max_steps must be >= 1, got {max_steps}")
            total = s1 + s2
            new1 = max(1, round(max_steps * s1 / total)) if s2 else max_steps
            new1 = min(new1, max_steps)
            new2 = max_steps - new1
            p = round(p * new2 / s2) if s2 else 0
            s1, s2 = new1, new2
        return cls(stage1=s1, stage2=s2, patient_start=s1 + p, lr=t.lr, power=t.poly_power,
                   warmup2=round(t.stage2_warmup * s2))

    def stage(self, step: int) -> int:
        return 1 if step < self.stage1 else 2

    def patient_active(self, step: int) -> bool:
        return step >= self.patient_start

    def lr_at(self, step: int) -> float:
        """Poly LR within the current stage: ``lr * (1 - t / T) ** power`` (x ``(t + 1) / warmup2`` while warming up)."""
        start, length = (0, self.stage1) if step < self.stage1 else (self.stage1, self.stage2)
        lr = self.lr * (1.0 - (step - start) / max(1, length)) ** self.power
        if step >= self.stage1 and self.warmup2:
            lr *= min(1.0, (step - start + 1) / self.warmup2)
        return lr

    def state_dict(self) -> dict:
        return {"stage1": self.stage1, "stage2": self.stage2, "patient_start": self.patient_start, "lr": self.lr,
                "power": self.power, "warmup2": self.warmup2}


def _amp_dtype(device: torch.device, cfg: PlanConfig):
    if device.type != "cuda" or not cfg.train.amp:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def build_optimizer(model: torch.nn.Module, cfg: PlanConfig) -> torch.optim.Optimizer:
    """RAdam with two parameter groups: ``"backbone"`` (encoder + FPN + pixel branch) and ``"heads"`` (the rest),
    so that stage 2 can give the backbone its own LR (``stage2_backbone_lr_scale``)."""
    if cfg.train.optimizer.lower() != "radam":
        raise PlanLiteError(f"train: optimizer {cfg.train.optimizer!r} not supported (radam)")
    base = unwrap(model)
    backbone = [p for part in (base.backbone, base.pixel) for p in part.parameters()]
    ids = {id(p) for p in backbone}
    heads = [p for p in base.parameters() if id(p) not in ids]
    groups = [{"params": backbone, "name": "backbone"}]
    if heads:
        groups.append({"params": heads, "name": "heads"})
    return torch.optim.RAdam(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float, stage: int, cfg: PlanConfig) -> None:
    """Set the LR of every group: the backbone group scaled by ``stage2_backbone_lr_scale`` in stage 2, the heads
    group (lesion and patient branches) by ``heads_lr_scale`` in every stage."""
    for g in optimizer.param_groups:
        if g.get("name") == "heads":
            scale = cfg.train.heads_lr_scale
        else:
            scale = cfg.train.stage2_backbone_lr_scale if stage == 2 and g.get("name") == "backbone" else 1.0
        g["lr"] = lr * scale


def train(dataset_dir, cfg: PlanConfig, out_dir, max_steps: int | None = None, max_minutes: float | None = None,
          resume: bool = False, device: str | None = None, progress: bool = True, log_every: int = 1,
          stop_after: int | None = None, checkpoint_every: int | None = None, validate: bool = True,
          calibrate: bool = True) -> Path:
    """Train on ``dataset_dir`` (train split) and return the run folder ``out_dir``.

    ``stop_after`` ends the run cleanly (checkpoint written) after that many total steps without changing the
    schedule; ``max_minutes`` does the same when the wall-clock budget is spent. ``resume=True`` continues from
    ``out_dir/last.pt`` exactly (its saved config and schedule win). At the end of a finished (or timed-out)
    run in stage 2 with instance output and a val split, ``calibrate`` chooses the lesion score threshold and pixel agreement on val and stores them in
    ``last.pt`` and ``best.pt`` (``plan_lite.engine.calibrate``).
    """
    from plan_lite.losses import PlanCriterion
    from plan_lite.model import PLAN

    info = init_distributed(device)
    out = Path(out_dir)
    last = out / "last.pt"
    state = None
    try:
        if resume:
            state = ckpt.load_checkpoint(last)
            cfg = PlanConfig.from_dict(state["config"])
            sched = Schedule(**state["scheduler"])
        else:
            if last.exists():
                raise PlanLiteError(f"{out}: already holds a run (last.pt); use --resume or another --out")
            sched = Schedule.from_config(cfg, max_steps)
        if info.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(cfg.train.seed)
        cases, stats, val_ids = load_train_cases(dataset_dir, cfg, stats=state["preprocess"] if state else None,
                                                 progress=progress and info.is_main)
        transforms = None
        if cfg.train.augment:
            from plan_lite.data.augment import training_transforms

            transforms = training_transforms(cfg)
        sampler = PatchSampler(cases, cfg.train.patch_size, cfg.train.batch_size, cfg.train.fg_oversample,
                               seed=cfg.train.seed, rank=info.rank, transforms=transforms)
        model = PLAN(cfg).to(info.device)
        optimizer = build_optimizer(model, cfg)
        amp_dtype = _amp_dtype(info.device, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        step, best, timed_out = 0, -math.inf, False
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step = int(state["step"])
            saved_best = state.get("extra", {}).get("best_score")
            best = -math.inf if saved_best is None else float(saved_best)
            sampler.load_state_dict(state["rng"])
            ckpt.restore_rng_state(state["rng"])
        elif info.rank:
            torch.manual_seed(cfg.train.seed + 1_000_003 * info.rank)  # per-rank dropout / point streams
        criterion = PlanCriterion(cfg).to(info.device)
        net = wrap_model(model, info)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "config.json", cfg.to_dict())
            _truncate_log(out / "log.jsonl", step)
            _truncate_log(out / "val.jsonl", step)
        ckpt_every = checkpoint_every or cfg.train.val_every
        final_stage = 2 if sched.stage2 > 0 else 1
        t0, t_start, cpu_start = time.time(), time.time(), time.process_time()
        bar = _progress(progress and info.is_main, sched.total, step)
        log = open(out / "log.jsonl", "a") if info.is_main else None  # noqa: SIM115
        try:
            while step < sched.total:
                stage, active = sched.stage(step), sched.patient_active(step)
                if step == sched.stage1 and stage == 2 and cfg.train.stage2_optimizer == "fresh":
                    optimizer = build_optimizer(model, cfg)  # stage 2 = a new run on the stage-1 weights
                lr = sched.lr_at(step)
                set_learning_rate(optimizer, lr, stage, cfg)
                images, labels = sampler.sample()
                x = torch.from_numpy(images).to(info.device)
                targets = {"labels": torch.from_numpy(labels).to(info.device)}  # patient targets: the criterion's
                net.train()
                with torch.autocast(info.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    outputs = net(x, stage=stage)
                    losses = criterion(outputs, targets, stage=stage, patient_active=active)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                terms = {k: float(v.detach()) for k, v in losses.items()}
                if info.is_main:
                    rec = {"step": step, "stage": stage, "lr": lr, "patient_active": active,
                           "grad_norm": float(grad_norm), **terms, "time": round(time.time() - t_start, 3),
                           "cpu": round(time.process_time() - cpu_start, 3)}
                    if step % log_every == 0 or step == sched.total:
                        rec.update(_diagnostics(criterion, outputs))
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in terms.items()}, refresh=False)
                out_of_time = max_minutes is not None and (time.time() - t0) / 60.0 >= max_minutes
                stop = broadcast_flag(out_of_time or (stop_after is not None and step >= stop_after), info)
                at_val = step % cfg.train.val_every == 0 or step == sched.total
                if validate and at_val and info.is_main and val_ids:
                    score = _validate(model, cfg, stats, dataset_dir, val_ids, out, step, stage)
                    # only checkpoints of the final stage compete: a stage-1 score of a model with a lesion
                    # branch measures an untrained lesion branch, so it is not comparable; on a tie the later
                    # (longer-trained) checkpoint wins, e.g. when a short run's val score is 0 throughout
                    if stage == final_stage and score >= best:
                        best = score
                        _save(out / "best.pt", model, optimizer, scaler, sampler, sched, step, stage, cfg, stats,
                              best)
                        _write_best_record(out, step, stage, best, "best validation score of stage "
                                           f"{final_stage}")
                if info.is_main and (step % ckpt_every == 0 or step == sched.total or stop):
                    _save(last, model, optimizer, scaler, sampler, sched, step, stage, cfg, stats, best)
                    if (step == sched.total or stop) and not math.isfinite(best):
                        # no validated checkpoint of the final stage: best = last, and the record says so
                        _save(out / "best.pt", model, optimizer, scaler, sampler, sched, step, stage, cfg,
                              stats, best)
                        _write_best_record(out, step, stage, None, "last checkpoint (no validation in stage "
                                           f"{final_stage})")
                barrier(info)
                if stop:
                    timed_out = bool(broadcast_flag(out_of_time, info))
                    break
        finally:
            if log is not None:
                log.close()
            if bar is not None:
                bar.close()
        # a finished run, or one that spent its time budget (not one paused by stop_after, to be resumed)
        ended = step >= sched.total or timed_out
        if calibrate and info.is_main and val_ids and ended and sched.stage(max(step - 1, 0)) == 2:
            from plan_lite.engine.calibrate import calibrate_checkpoint

            best_step = json.loads((out / "best.json").read_text()).get("step") if (out / "best.json").exists() \
                else None
            same = best_step == step  # best.pt is the last checkpoint: one calibration serves both
            for name in ("last.pt",) if same else ("last.pt", "best.pt"):
                rec = calibrate_checkpoint(out / name, dataset_dir, progress=progress, device=str(info.device))
                if progress and "infer" in rec:
                    print(f"{name}: lesion score threshold {rec['score_threshold']:g}, pixel agreement "
                          f"{rec['pixel_agreement']:g} chosen on val ({len(rec['cases'])} cases, lesion F1 "
                          f"{rec['val']['f1'] or 0:.2f}; calibration_{Path(name).stem}.json)")
            if same and "infer" in rec:
                best_state = ckpt.load_checkpoint(out / "best.pt")
                best_state["config"]["infer"].update(rec["infer"])
                ckpt.save_checkpoint(out / "best.pt", best_state)
        barrier(info)
        if info.enabled:  # every rank records its weights' digest: DDP replicas must agree
            out.mkdir(parents=True, exist_ok=True)
            (out / f"weights_rank{info.rank}.sha256").write_text(ckpt.state_dict_digest(model.state_dict()) + "\n")
    finally:
        cleanup_distributed()
    return out


def _save(path, model, optimizer, scaler, sampler, sched, step, stage, cfg, stats, best) -> None:
    rng = ckpt.capture_rng_state()
    rng.update(sampler.state_dict())
    ckpt.save_checkpoint(path, {
        "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {}, "rng": rng, "step": step, "stage": stage,
        "config": cfg.to_dict(), "preprocess": stats, "extra": {"best_score": best if math.isfinite(best) else None},
    })


def _write_best_record(out: Path, step: int, stage: int, score: float | None, selection: str) -> None:
    """``best.json``: which checkpoint ``best.pt`` is (step, stage, validation score, how it was selected)."""
    atomic_write_json(out / "best.json", {"step": step, "stage": stage, "score": score, "selection": selection})


def _validate(model, cfg, stats, dataset_dir, val_ids, out, step, stage) -> float:
    """Cheap sliding-window validation on the val split; appends to val.jsonl; returns the val score.

    Runs under ``torch.random.fork_rng`` so it never changes the training random streams (exact resume).
    """
    from plan_lite.engine.predict import validation_metrics

    with torch.random.fork_rng(devices=[]):
        was_training = model.training
        model.eval()
        try:
            metrics = validation_metrics(model, cfg, stats, dataset_dir, val_ids, stage=stage)
        finally:
            model.train(was_training)
    rec = {"step": step, "stage": stage, **metrics}
    with open(out / "val.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    return float(metrics.get("score", -math.inf))


def _diagnostics(criterion, outputs: dict) -> dict[str, float]:
    """Logged with a step's losses in stage 2: the matches' quality (``PlanCriterion.match_quality``) and the
    mean absolute gap between the lesion-derived and the patient-branch type readouts (``readout_gap``, Sec. 2.3),
    measured whether or not the consistency term is on."""
    from plan_lite.losses.criterion import patient_readouts

    out = {k: v for k, v in criterion.match_quality(outputs).items() if v == v}  # NaN (no lesion) left out
    if "pred_logits" in outputs and "patient_logits" in outputs:
        with torch.no_grad():
            det, cls = patient_readouts(outputs["pred_logits"], outputs["patient_logits"],
                                        outputs.get("query_padding_mask"))
        out["readout_gap"] = float((det - cls).abs().mean())
    return out


def _truncate_log(path: Path, step: int) -> None:
    """Keep only log lines with ``step <= step`` (a resumed run rewrites what the killed run logged after last.pt)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    from plan_lite.utils import atomic_write_text

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


__all__ = ["train", "Schedule", "build_optimizer", "set_learning_rate"]
