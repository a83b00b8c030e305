"""Do the slot task's slots find the objects, and do learned gazes keep more of them than random ones? (not in CI)

    OMP_NUM_THREADS=1 python scripts/slot_study.py --root R --out O --seeds 0,1,2 --steps 1500 --clips 64

R is a finished demo root (``python -m autogaze.demo --root R``); it is only read. Everything new goes under O.

* Training, per seed s: the ``demo_slot_attention`` experiment with ``task.contrast_weight`` 0.5 and 0
  (``O/exps/slot_s{s}_cw0.5``, ``..._cw0``) on R's clips (``R/data/synthetic``) and geometry (scales, tokens,
  clip length: R's demo_mae config), R's MAE encoder as the frozen tower, ``--steps`` steps, trainer seed s. The
  untrained copy is the cw0.5 run's own step-0 save (same architecture and seed, 0 steps), ``untrained_task.pt``.
  A run with ``study_done.json`` is skipped; a killed run resumes from its last save.
* Evaluation (autogaze/evaluation/slots.py) on the first ``--clips`` val clips against the object ids stored
  beside them, on the task's pixels (slot masks of the finest patch grid upsampled):
  1. full gaze: video FG-ARI (background ignored) and slot persistence of the trained (0.5), trained (0) and
     untrained slots, of k-means (K = num_slots, per clip over all frames, ``--kmeans-iters`` Lloyd steps,
     seeded by s) on the tower's finest-scale features, and of "one slot for all pixels". FG-ARI is 1 on a
     one-object clip whenever one slot holds that object, so that collapse reference and an FG-ARI over the
     clips with >= 2 objects are reported too, and the distinct slots on the foreground ("fg slots").
  2. sparse input, trained (0.5) slots decoded at every position: greedy gazes of R's NTP+RL
     (``R/exps/demo_grpo``), NTP (``R/exps/demo_ntp``) and random at ``--ratios``, equal per-frame budgets
     ``int(ratio * P)`` and no task-loss requirement (no early stop); the paired bootstrap 95% CI over clips of
     (learned - random) at ``--main-ratio`` (per seed, and on the per-clip means over seeds).
* Writes ``O/slot_study_clips.csv`` (a row per clip and condition), ``O/slot_study_summary.csv`` (per seed),
  ``O/slot_study.json`` (all of it, CIs and timings included) and ``O/slot_study_tables.md``; prints the tables.

Cost, measured on a busy 2-core machine with one thread: ``--seeds 0 --steps 20 --clips 8`` takes about 20 s; a
slot training step about 0.13 s (0.09 s of it forward, backward and Adam at B = 8), so the full run is about
6 x 1500 x 0.13 s = 20 min of training plus 1-2 min of evaluation.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path

from results_tables import ms as _ms  # scripts/ is on sys.path when this file runs as a script

CONFIG = "demo_slot_attention"
CONTRASTS = (0.5, 0.0)
GAZERS = (("ntp_rl", "NTP+RL", "demo_grpo"), ("ntp", "NTP", "demo_ntp"), ("random", "random", None))
CLIP_COLUMNS = ("seed", "slots", "gazes", "ratio", "clip", "objects", "fg_ari", "persistence", "fg_slots",
                "gazing_ratio")
SUMMARY_COLUMNS = ("seed", "slots", "gazes", "ratio", "fg_ari", "fg_ari_multi", "persistence", "fg_slots",
                   "gazing_ratio", "clips")


def run_name(seed: int, cw: float) -> str:
    return f"slot_s{seed}_cw{cw:g}"


# ------------------------------------------------------------------ training
def demo_geometry(root: Path) -> dict:
    """What the slot runs must share with R's MAE tower: its clips, scales, tokens and architecture."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(root / "exps" / "demo_mae" / "config.yaml"), resolve=True)
    task = cfg["task"]
    rc = task.get("recon_model_config") or {}
    return {"scales": str(task["scales"]), "tokens": int(cfg["model"]["num_vision_tokens_each_frame"]),
            "clip_len": int(cfg["dataset"]["clip_len"]), "recon_model": str(task["recon_model"]),
            "scale_embed": bool(rc.get("scale_embed", True)), "time_embed": bool(rc.get("time_embed", True)),
            "max_num_frames": int(rc.get("max_num_frames", 256))}


def overrides(args: argparse.Namespace, geo: dict, seed: int, cw: float) -> list[str]:
    vm = "task.vision_model_config"
    return [f"dataset.root={args.data}", f"dataset.clip_len={geo['clip_len']}", f"model.scales={geo['scales']}",
            f"model.num_vision_tokens_each_frame={geo['tokens']}", f"task.scales={geo['scales']}",
            f"task.vision_model={args.root / 'exps' / 'demo_mae' / 'checkpoint_latest_task.pt'}",
            f"{vm}.recon_model={geo['recon_model']}", f"{vm}.scale_embed={geo['scale_embed']}",
            f"{vm}.time_embed={geo['time_embed']}", f"{vm}.max_num_frames={geo['max_num_frames']}",
            f"task.contrast_weight={cw}", f"trainer.max_steps={args.steps}",
            # Keep every numbered save: the step-0 one is the untrained copy (pruning would drop it).
            "trainer.keep_checkpoints=1000", *args.override]


def step0_task_weights(exp_dir: Path) -> Path:
    """The task weights the trainer saved before its first optimizer step."""
    for folder in exp_dir.glob("checkpoint_ep*_iter*"):
        step, task = folder / "checkpoint_gaze" / "trainer_step.json", folder / "checkpoint_task.pt"
        if step.is_file() and json.loads(step.read_text())["train_step"] == 0 and task.is_file():
            return task
    raise FileNotFoundError(f"{exp_dir}: no step-0 checkpoint (the untrained copy)")


def last_train_metrics(exp_dir: Path) -> dict:
    """The final train/ line of metrics.jsonl (loss, contrast, slots used), rounded."""
    lines = [json.loads(x) for x in (exp_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in lines if "train/loss" in r][-1]
    keys = ("train/loss", "train/reconstruction_loss", "train/contrast_loss", "train/slots_used")
    return {k.removeprefix("train/"): round(float(last[k]), 5) for k in keys if k in last}


def train_all(args: argparse.Namespace, geo: dict) -> dict[str, dict]:
    """Train (or skip) every run; returns name -> {exp_dir, wall_s, steps, final metrics}."""
    from autogaze.demo.experiments import train
    from autogaze.demo.settings import Demo

    info = {}
    for seed in args.seeds:
        for cw in CONTRASTS:
            name = run_name(seed, cw)
            exp_dir = args.out / "exps" / name
            done = exp_dir / "study_done.json"
            if done.is_file():
                rec = json.loads(done.read_text())
                if rec["steps"] != args.steps:
                    raise SystemExit(f"{exp_dir} was trained for {rec['steps']} steps, not {args.steps}: "
                                     "use another --out")
            else:
                start = time.perf_counter()
                train(Demo(root=args.out, seed=seed), CONFIG, name, overrides(args, geo, seed, cw))
                wall = time.perf_counter() - start
                shutil.copyfile(step0_task_weights(exp_dir), exp_dir / "untrained_task.pt")
                rec = {"steps": args.steps, "wall_s": round(wall, 1), "final": last_train_metrics(exp_dir),
                       "overrides": overrides(args, geo, seed, cw)}
                done.write_text(json.dumps(rec, indent=1))
                print(f"  trained {name}: {args.steps} steps in {wall:.0f} s, final {rec['final']}", flush=True)
            info[name] = {"exp_dir": str(exp_dir), **rec}
    return info


def same_init(a: Path, b: Path) -> bool:
    """Whether two step-0 task saves hold identical tensors (the contrast weight must not change the init)."""
    import torch

    sa, sb = torch.load(a, map_location="cpu"), torch.load(b, map_location="cpu")
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ evaluation
def load_batches(exp, specs, clips: int, batch_size: int) -> dict[str, list]:
    """The first ``clips`` val clips for each distinct gaze-side normalisation, decoded once -> key -> batches."""
    from autogaze.evaluation import models as M
    from autogaze.evaluation.slots import take_clips

    out: dict[str, list] = {}
    for spec in specs:
        key = json.dumps(spec.preprocessing, sort_keys=True)
        if key not in out:
            out[key] = list(take_clips(M.make_loader(exp, "val", spec.preprocessing, batch_size), clips))
    first = next(iter(out.values()))
    for batches in out.values():  # every loader must give the same clips in the same order
        assert [b.paths for b in batches] == [b.paths for b in first], "val loaders disagree on the clips"
    return out


def evaluate_seed(args: argparse.Namespace, seed: int, specs, batches: dict[str, list], truths: list,
                  gaze_cache: dict) -> list[dict]:
    """Per-clip rows of one seed: full gaze (3 slot models, k-means, one slot for all) and sparse gazes."""
    import torch

    from autogaze.evaluation import models as M
    from autogaze.evaluation.loop import eval_mode
    from autogaze.evaluation.slots import (foreground_slots, gazes_at_ratio, kmeans_masks, masks_fg_ari,
                                           masks_persistence, num_objects)

    dirs = {cw: args.out / "exps" / run_name(seed, cw) for cw in CONTRASTS}
    tasks = {f"cw{cw:g}": M.load_task(M.load_experiment(d / "config.yaml"), d / "config.yaml",
                                      d / "checkpoint_latest_task.pt") for cw, d in dirs.items()}
    tasks["untrained"] = M.load_task(M.load_experiment(dirs[0.5] / "config.yaml"), dirs[0.5] / "config.yaml",
                                     dirs[0.5] / "untrained_task.pt")
    main = tasks["cw0.5"]
    K, Pf = main.config.num_slots, main.tower.num_finest
    full = {s.name: s for s in specs}["full"]
    gen_km = torch.Generator().manual_seed(seed)
    rows: list[dict] = []

    def add(slots: str, gazes: str, ratio: float, batch, truth, masks, gr) -> None:
        """masks [B, T, K, Pf] -> one row per clip."""
        ari, pers = masks_fg_ari(masks, truth), masks_persistence(masks, truth)
        objs, used = num_objects(truth), foreground_slots(masks, truth)
        for j, p in enumerate(batch.paths):
            rows.append({"seed": seed, "slots": slots, "gazes": gazes, "ratio": ratio, "clip": Path(p).name,
                         "objects": int(objs[j]), "fg_ari": round(float(ari[j]), 6),
                         "persistence": round(float(pers[j]), 6), "fg_slots": int(used[j]),
                         "gazing_ratio": round(float(gr[j]), 5)})

    with torch.no_grad(), eval_mode(*tasks.values(), *(s.model for s in specs)):
        for batch, truth in zip(batches[json.dumps(full.preprocessing, sort_keys=True)], truths):
            vft = batch.video_for_task
            gazes = full.model.generate(batch.video, None).gazes
            gr = gazes.real_ratio()
            for name, task in tasks.items():
                add(name, "full", 1.0, batch, truth, task.slots(vft, gazes).masks, gr)
            km = kmeans_masks(main.features(vft)[:, :, -Pf:], K, args.kmeans_iters, gen_km)  # [B, T, K, Pf]
            add("kmeans", "full", 1.0, batch, truth, km, gr)
            # The collapse reference: every pixel in one slot (FG-ARI 1 on one-object clips, 0 on the rest).
            add("one_slot", "full", 1.0, batch, truth, torch.ones_like(km[:, :, :1]), gr)
        for spec in specs:
            if spec.name == "full":
                continue
            for i, (batch, truth) in enumerate(zip(batches[json.dumps(spec.preprocessing, sort_keys=True)], truths)):
                for r in args.ratios:
                    key = (spec.name, r, i)
                    if spec.name == "random" or key not in gaze_cache:
                        # random draws depend on the seed (seeded per batch, as autogaze.evaluate does);
                        # the learned gazers decode greedily, so their gazes are reused across seeds
                        gen = torch.Generator().manual_seed(seed * 1_000_003 + i)
                        gaze_cache[key] = gazes_at_ratio(spec.model, batch.video, r, gen)
                    gazes = gaze_cache[key]
                    add("cw0.5", spec.name, r, batch, truth, main.slots(batch.video_for_task, gazes).masks,
                        gazes.real_ratio())
    return rows


# ------------------------------------------------------------------ tables
def summarise(rows: list[dict]) -> list[dict]:
    """Per (seed, slots, gazes, ratio): clip means; ``fg_ari_multi`` over the clips with >= 2 objects only."""
    from autogaze.evaluation.slots import nanmean

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["seed"], r["slots"], r["gazes"], r["ratio"]), []).append(r)
    mean = lambda g, m: round(nanmean([x[m] for x in g]), 5)  # noqa: E731
    return [{"seed": k[0], "slots": k[1], "gazes": k[2], "ratio": k[3], "fg_ari": mean(g, "fg_ari"),
             "fg_ari_multi": mean([x for x in g if x["objects"] >= 2], "fg_ari"),
             "persistence": mean(g, "persistence"), "fg_slots": mean(g, "fg_slots"),
             "gazing_ratio": mean(g, "gazing_ratio"), "clips": len(g)} for k, g in groups.items()]


def ms(values: list[float], digits: int = 3) -> str:  # mean ± std over seeds
    return _ms(values, digits)


def per_seed(summary: list[dict], metric: str, **match) -> list[float]:
    """``metric`` of the matching summary rows, one per seed, NaNs (no clip of the kind) left out."""
    return [r[metric] for r in summary if all(r[k] == v for k, v in match.items()) and not math.isnan(r[metric])]


def clip_values(rows: list[dict], seed: int | None, min_objects: int, **match) -> dict[str, float]:
    """clip -> fg_ari for one seed, or (seed None) the mean over seeds of each clip."""
    from autogaze.evaluation.slots import nanmean

    acc: dict[str, list[float]] = {}
    for r in rows:
        keep = (seed is None or r["seed"] == seed) and r["objects"] >= min_objects
        if keep and all(r[k] == v for k, v in match.items()):
            acc.setdefault(r["clip"], []).append(r["fg_ari"])
    return {c: nanmean(v) for c, v in acc.items()}


def bootstrap(args: argparse.Namespace, rows: list[dict]) -> dict[str, dict]:
    """(learned - random) FG-ARI at the main ratio, on all clips and on those with >= 2 objects: per seed, and
    pooled on the per-clip means over seeds."""
    from autogaze.evaluation.slots import paired_bootstrap_ci

    out: dict[str, dict] = {}
    for name, _, _ in GAZERS[:2]:
        for subset, min_obj in (("all", 1), ("multi", 2)):
            for seed in [*args.seeds, None]:
                a, b = (clip_values(rows, seed, min_obj, slots="cw0.5", gazes=g, ratio=args.main_ratio)
                        for g in (name, "random"))
                clips = sorted(a)
                mean, lo, hi = paired_bootstrap_ci([a[c] for c in clips], [b[c] for c in clips], args.boot,
                                                   seed=0 if seed is None else seed)
                out.setdefault(name, {}).setdefault(subset, {})["pooled" if seed is None else f"seed{seed}"] = {
                    "diff": round(mean, 5), "lo": round(lo, 5), "hi": round(hi, 5), "clips": len(clips)}
    return out


def ci_text(c: dict) -> str:
    return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"


def tables(args: argparse.Namespace, summary: list[dict], cis: dict, monotone: dict, geo: dict,
           n_multi: int) -> list[str]:
    n = sorted({r["clips"] for r in summary})
    out = [f"Seeds {args.seeds}; {'/'.join(map(str, n))} val clips ({n_multi} with >= 2 objects); slot training "
           f"{args.steps} steps; video FG-ARI on the task's pixels (background ignored), slot masks from the finest "
           "patch grid, nearest-upsampled; cells: mean ± std over seeds. FG-ARI on a one-object clip is 1 when "
           "one slot holds the whole object and 0 otherwise, so merging all foreground scores well there: read the "
           "'>= 2 objects' column and the 'one slot for all pixels' row; 'fg slots' = distinct slots winning a "
           "foreground pixel per clip.", "",
           "**Full gaze** (every patch of every frame):", "",
           "| slots | FG-ARI | FG-ARI, >= 2 objects | slot persistence | fg slots |", "|---|---|---|---|---|"]
    for slots, label in (("cw0.5", "trained, contrast 0.5"), ("cw0", "trained, contrast 0"),
                         ("untrained", "untrained (step-0 init)"),
                         ("kmeans", f"k-means on tower features (K = slots, {args.kmeans_iters} Lloyd steps)"),
                         ("one_slot", "one slot for all pixels (reference)")):
        cells = [ms(per_seed(summary, m, slots=slots, gazes="full"), 2 if m == "fg_slots" else 3)
                 for m in ("fg_ari", "fg_ari_multi", "persistence", "fg_slots")]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    r0, P = args.main_ratio, geo["tokens"]
    out += ["", f"**Sparse gazes at ratio {r0:g}** ({max(int(r0 * P), 1)} of {P} patches in every frame, no early "
            "stop; trained slots, contrast 0.5, decoded at every position; minus random: paired bootstrap 95% CI "
            "over clips, on the per-clip means over seeds):", "",
            "| gazes | gazed ratio | FG-ARI | minus random | FG-ARI, >= 2 objects | minus random, >= 2 objects | "
            "fg slots |", "|---|---|---|---|---|---|---|"]
    for name, label, _ in GAZERS:
        cell = lambda m, d=3: ms(per_seed(summary, m, slots="cw0.5", gazes=name, ratio=r0), d)  # noqa: E731
        diff = {k: ci_text(cis[name][k]["pooled"]) if name in cis else "-" for k in ("all", "multi")}
        out.append(f"| {label} | {cell('gazing_ratio')} | {cell('fg_ari')} | {diff['all']} | {cell('fg_ari_multi')} | "
                   f"{diff['multi']} | {cell('fg_slots', 2)} |")
    ref = lambda m, d=3: ms(per_seed(summary, m, slots="cw0.5", gazes="full"), d)  # noqa: E731
    out.append(f"| full gaze (reference) | 1 | {ref('fg_ari')} | - | {ref('fg_ari_multi')} | - | "
               f"{ref('fg_slots', 2)} |")
    if len(args.seeds) > 1:
        out += ["", "Per seed, minus random (all clips): " + "; ".join(
            f"{label} seed {s} {ci_text(cis[name]['all'][f'seed{s}'])}" for name, label, _ in GAZERS[:2]
            for s in args.seeds)]
    out += ["", "**FG-ARI against the gazing ratio** (all clips; trained slots, contrast 0.5; monotone: the seed "
            "means never drop as the ratio grows, and in how many seeds that holds):", "",
            "| gazes | " + " | ".join(f"r={r:g}" for r in args.ratios) + " | full | monotone |",
            "|---" * (len(args.ratios) + 3) + "|"]
    for name, label, _ in GAZERS:
        m = monotone[name]
        out.append(f"| {label} | " + " | ".join(ms(per_seed(summary, "fg_ari", slots="cw0.5", gazes=name, ratio=r))
                                               for r in args.ratios)
                   + f" | {ref('fg_ari')} | {'yes' if m['means'] else 'no'} ({m['seeds']}/{len(args.seeds)} seeds) |")
    return out


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="a finished demo root (read only)")
    p.add_argument("--out", type=Path, required=True, help="study folder (exps/, CSVs, JSON, tables)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",") if x], default=[0, 1, 2], help="e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps per slot run")
    p.add_argument("--clips", type=int, default=64, help="val clips evaluated (the first N)")
    p.add_argument("--data", type=Path, help="train/ + val/ clips with masks (default: R/data/synthetic)")
    p.add_argument("--ratios", type=floats, default=[0.1, 0.2, 0.3, 0.5], help="sparse gazing ratios")
    p.add_argument("--main-ratio", type=float, default=0.3, help="ratio of the bootstrap comparison")
    p.add_argument("--kmeans-iters", type=int, default=10)
    p.add_argument("--boot", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every slot run")
    args = p.parse_args(argv)
    args.root, args.out = args.root.resolve(), args.out.resolve()
    if args.out == args.root or args.root in args.out.parents:
        p.error("--out must lie outside --root (the demo root is only read)")
    if args.main_ratio not in args.ratios:
        p.error("--main-ratio must be one of --ratios")
    args.data = (args.data or args.root / "data" / "synthetic").resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from autogaze.utils.runtime import tune_cpu

    torch.set_num_threads(args.threads)
    tune_cpu()
    from autogaze.evaluation import models as M
    from autogaze.evaluation.slots import batch_object_ids, num_objects

    t0 = time.perf_counter()
    geo = demo_geometry(args.root)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(args.seeds) * len(CONTRASTS)} slot runs of {args.steps} steps into {args.out / 'exps'}", flush=True)
    runs = train_all(args, geo)
    t_train = time.perf_counter() - t0
    init_same = {s: same_init(args.out / "exps" / run_name(s, 0.5) / "untrained_task.pt",
                              args.out / "exps" / run_name(s, 0.0) / "untrained_task.pt") for s in args.seeds}

    cfg = args.out / "exps" / run_name(args.seeds[0], 0.5) / "config.yaml"
    exp = M.load_experiment(cfg)
    specs = M.load_gaze_models([f"{n}={args.root / 'exps' / d}" for n, _, d in GAZERS if d] + ["random", "full"],
                               dict(exp.model), args.seeds[0])
    batches = load_batches(exp, specs, args.clips, args.batch_size)
    truths = [batch_object_ids(b.paths, b.video_for_task.shape[1], b.video_for_task.shape[-1])
              for b in next(iter(batches.values()))]               # [B, T, S, S] per batch
    rows: list[dict] = []
    gaze_cache: dict = {}
    for seed in args.seeds:
        t = time.perf_counter()
        rows += evaluate_seed(args, seed, specs, batches, truths, gaze_cache)
        print(f"  evaluated seed {seed} in {time.perf_counter() - t:.0f} s", flush=True)
    n_multi = int(sum(int((num_objects(t) >= 2).sum()) for t in truths))
    write_report(args, geo, runs, rows, n_multi, init_same, t_train, time.perf_counter() - t0 - t_train)


def monotonicity(args: argparse.Namespace, summary: list[dict]) -> dict[str, dict]:
    """Per gazer: is FG-ARI non-decreasing over ``--ratios`` for the seed means, and in how many seeds."""
    from autogaze.evaluation.slots import is_monotone

    def curve(name: str, **match) -> list[float]:
        return [statistics.mean(per_seed(summary, "fg_ari", slots="cw0.5", gazes=name, ratio=r, **match))
                for r in args.ratios]

    return {name: {"means": is_monotone(curve(name)),
                   "seeds": sum(is_monotone(curve(name, seed=s)) for s in args.seeds)} for name, _, _ in GAZERS}


def write_report(args: argparse.Namespace, geo: dict, runs: dict, rows: list[dict], n_multi: int, init_same: dict,
                 train_s: float, eval_s: float) -> None:
    from autogaze.evaluation.report import write_csv

    summary, cis = summarise(rows), bootstrap(args, rows)
    monotone = monotonicity(args, summary)
    text = "\n".join(tables(args, summary, cis, monotone, geo, n_multi))
    write_csv(rows, CLIP_COLUMNS, args.out / "slot_study_clips.csv")
    write_csv(summary, SUMMARY_COLUMNS, args.out / "slot_study_summary.csv")
    (args.out / "slot_study_tables.md").write_text(text + "\n")
    per_step = sum(r["wall_s"] for r in runs.values()) / max(sum(r["steps"] for r in runs.values()), 1)
    (args.out / "slot_study.json").write_text(json.dumps({
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "geometry": geo,
        "runs": runs, "same_init_across_contrast": init_same, "clips_with_2plus_objects": n_multi,
        "bootstrap": cis, "monotone": monotone, "summary": summary,
        "timing": {"train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
                   "train_s_per_step_incl_startup": round(per_step, 3)}}, indent=1))
    print(text)
    print(f"\nsame init for contrast 0.5 and 0 (per seed): {init_same}; training {train_s:.0f} s "
          f"({per_step:.3f} s/step incl. start-up and validation), evaluation {eval_s:.0f} s\n"
          f"wrote {args.out}/slot_study_{{clips,summary}}.csv, slot_study.json, slot_study_tables.md")


if __name__ == "__main__":
    main()
