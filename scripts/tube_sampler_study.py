"""Do TATS and AdaMAE choose better visible tokens than random masks, and where do they look? (not in CI)

    OMP_NUM_THREADS=1 python scripts/tube_sampler_study.py --root runs/tube_study --seeds 0 1 2 \\
        --rhos 0.9 0.95 --n-train 1024 --n-val 64 --procs 2 \\
        [--autogaze-ckpt runs/seed0/exps/demo_ntp --autogaze-task-config runs/seed0/exps/demo_mae/config.yaml]

24 runs (3 seeds x (2 rho x 3 methods + 2 tuning runs)) of 400 steps. One TATS run, the slowest,
took 82 s with OMP_NUM_THREADS=1 on a busy 2-core machine (68 s of steps, the rest start-up), so the
study takes about 20-25 min with --procs 2 on 2 cores, evaluation (about 1.5 min per seed) included.

Per seed s, under ``R/seed{s}/``: synthetic clips (8 frames x 64 px, the demo's World) in ``data/``
(or ``--data DIR`` for every seed), then, for each rho, three runs in ``exps/``: the random-mask
VideoMAE (``tube_video_mae_random``), AdaMAE (``tube_video_mae_adamae``) and TATS
(``tube_video_mae_tats_ppo``), ``--steps`` optimizer steps each, trainer seed s; plus the TATS PPO
tuning runs at rho 0.9 (``--tuning``: each ``algorithm.KEY=VALUE`` next to the default run). A run
whose ``study_done.json`` exists is skipped; a killed run resumes from its last checkpoint.

Evaluation on the val clips (autogaze/evaluation/token_samplers.py defines every metric): every
trained MAE (random-mask baseline, AdaMAE's, TATS's) against every visible-set source (random and
tube masks, the AdaMAE and TATS samplers, sampled with fixed seeds and averaged over ``--draws``,
and their top-N_v tokens), plus where those sets lie on the moving objects and, with
``--autogaze-ckpt``, where AutoGaze's gazes do at ``--autogaze-ratio``. A trained sampler always
reads the tokens of its own MAE's embedding (its input in training), whichever MAE rebuilds.

Writes ``R/study_runs.csv``, ``R/study_eval.csv``, ``R/study_autogaze.csv`` and prints markdown
tables (mean ± std over seeds) that are also saved to ``R/study_tables.md``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from results_tables import ms  # scripts/ is on sys.path when this file runs as a script

CONFIGS = {"random": "tube_video_mae_random", "adamae": "tube_video_mae_adamae", "tats": "tube_video_mae_tats_ppo"}
# The TATS paper's tuning table (its notation): K = MAE steps per phase, which is also the episode
# buffer the PPO phase trains on (update_steps_mae here), and c1 = the weight of the clipped policy
# term (policy_coef). Defaults 1 and 1e-4; the paper found K=1 and c1=1e-4 best.
DEFAULT_TUNING = ("update_steps_mae=5", "policy_coef=1e-3")
TUNING_RHO = 0.9
SAMPLERS = (("random", "sample"), ("tube", "sample"), ("adamae", "sample"), ("adamae", "topk"),
            ("tats", "sample"), ("tats", "topk"))
LABEL = {("random", "sample"): "random masks", ("tube", "sample"): "tube masks",
         ("adamae", "sample"): "AdaMAE (sampled)", ("adamae", "topk"): "AdaMAE (top-N_v)",
         ("tats", "sample"): "TATS (sampled)", ("tats", "topk"): "TATS (top-N_v)"}
EVAL_COLUMNS = ("seed", "rho", "mae", "sampler", "mode", "masked_error", "obj_hit", "obj_hit_base", "obj_cover",
                "area_share", "visible_tokens", "clips")


@dataclass
class Run:
    """One training run: exp folder ``R/seed{seed}/exps/{name}``."""

    name: str
    method: str                     # random | adamae | tats
    seed: int
    rho: float
    exp_dir: Path
    overrides: list[str] = field(default_factory=list)

    @property
    def done_file(self) -> Path:
        return self.exp_dir / "study_done.json"


# ------------------------------------------------------------------ plan and train
def config_value(config: str, dotted: str) -> object:
    from omegaconf import OmegaConf

    from autogaze.config import CONFIG_DIR

    return OmegaConf.select(OmegaConf.load(Path(CONFIG_DIR) / f"{config}.yaml"), dotted)


def tuning_variants(specs: list[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` of the tats_ppo algorithm group -> (key, value), minus those equal to the default
    (the default TATS run is that variant)."""
    from autogaze.algorithms.tats_ppo import TATSPPOConfig

    names = {f.name: f.default for f in fields(TATSPPOConfig)}
    out = []
    for spec in specs:
        key, _, value = spec.partition("=")
        if key not in names or not value:
            raise SystemExit(f"--tuning {spec!r}: need KEY=VALUE with KEY one of {sorted(names)}")
        if float(value) != float(names[key]):
            out.append((key, value))
    return out


def plan(args: argparse.Namespace, seed: int, data: Path, steps: int) -> list[Run]:
    exps = args.root / f"seed{seed}" / "exps"
    # warmup_epochs=10 would be 1280 steps at 1024 clips, longer than the run, so the sampler would
    # never train; 10% of the steps is what the config's 10 epochs give at its 32-clip default.
    tats_warmup = [f"algorithm.warmup_steps={max(1, round(args.tats_warmup_frac * steps))}"]
    runs = []
    for rho in args.rhos:
        for method in CONFIGS:
            runs.append(Run(f"{method}_r{rho:g}", method, seed, rho, exps / f"{method}_r{rho:g}",
                            tats_warmup if method == "tats" else []))
        if rho == TUNING_RHO:
            for key, value in tuning_variants(args.tuning):
                name = f"tats_r{rho:g}_{key}{value}"
                runs.append(Run(name, "tats", seed, rho, exps / name, tats_warmup + [f"algorithm.{key}={value}"]))
    common = [f"dataset.root={data}", "trainer.save_nsteps=100", *args.override]  # saves: resume after a kill
    for r in runs:
        r.overrides = [*common, f"trainer.logdir={exps}", f"trainer.exp_name={r.name}", f"trainer.seed={seed}",
                       f"trainer.max_steps={steps}", f"model.mask_ratio={r.rho}", *r.overrides]
    return runs


def command(run: Run) -> list[str]:
    return [sys.executable, "-m", "autogaze.train", "--config-name", CONFIGS[run.method], *run.overrides]


def train(run: Run, steps: int, threads: int) -> float:
    """Train ``run`` in a child process (log: exps/{name}.log) unless done; returns its wall seconds."""
    if run.done_file.is_file():
        done = json.loads(run.done_file.read_text())
        if done["steps"] != steps:
            raise SystemExit(f"{run.exp_dir} was trained for {done['steps']} steps, not {steps}: use another --root")
        return float(done["wall_s"])
    run.exp_dir.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    log = run.exp_dir.parent / f"{run.name}.log"
    start = time.perf_counter()
    with log.open("a") as f:
        rc = subprocess.run(command(run), stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"{run.name} (seed {run.seed}) failed with exit code {rc}; see {log}")
    run.done_file.write_text(json.dumps({"steps": steps, "wall_s": round(wall, 1), "command": command(run)}))
    print(f"  trained {run.exp_dir} in {wall:.0f} s", flush=True)
    return wall


def make_data(args: argparse.Namespace, seed: int) -> Path:
    if args.data is not None:
        return args.data
    data = args.root / f"seed{seed}" / "data"
    marker = data / "data_done.json"
    want = {"n_train": args.n_train, "n_val": args.n_val, "frames": 8, "size": 64, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return data
    from autogaze.datasets.synthetic import World, make_synthetic_dataset

    make_synthetic_dataset(data, args.n_train, args.n_val, 8, 64, seed, World())
    marker.write_text(json.dumps(want))
    return data


# ------------------------------------------------------------------ evaluate
def evaluate_seed(args: argparse.Namespace, seed: int, runs: list[Run], data: Path) -> list[dict]:
    """Every MAE x every visible-set source of this seed (cached in R/seed{s}/eval.csv)."""
    cache = args.root / f"seed{seed}" / "eval.csv"
    newest = max(r.done_file.stat().st_mtime for r in runs)
    fresh = cache.is_file() and cache.stat().st_mtime > newest and not args.re_eval
    if fresh and tuple(csv.DictReader(cache.open()).fieldnames or ()) == EVAL_COLUMNS:
        return [{k: (v if k in ("mae", "sampler", "mode") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(cache.open())]
    from autogaze.evaluation.token_samplers import (SamplerSpec, evaluate_sampler, load_token_run, load_val_clips,
                                                    mask_sampler)

    by_name = {r.name: r for r in runs}
    rows = []
    # The val clips are the same for every run of the seed: decode them once.
    clips = load_val_clips(by_name[f"random_r{args.rhos[0]:g}"].exp_dir / "config.yaml", str(data), args.batch_size)
    for rho in args.rhos:
        base = by_name[f"random_r{rho:g}"].exp_dir
        trained = {m: load_token_run(by_name[f"{m}_r{rho:g}"].exp_dir, str(data)) for m in CONFIGS}
        trained.update({r.name: load_token_run(r.exp_dir, str(data)) for r in runs
                        if r.rho == rho and r.name not in {f"{m}_r{rho:g}" for m in CONFIGS}})
        specs = {("random", "sample"): SamplerSpec("random", mask_sampler(base, "random"), draws=args.draws),
                 ("tube", "sample"): SamplerSpec("tube", mask_sampler(base, "tube"), draws=args.draws)}
        for name, (mae, sampler) in trained.items():
            if name != "random":
                for mode in ("sample", "topk"):
                    specs[(name, mode)] = SamplerSpec(name, sampler, mae, mode == "sample", args.draws)
        pairs = [(m, key) for m in ("random", "adamae", "tats") for key in specs if not key[0].startswith("tats_r")]
        for name in trained:  # tuning variants: against the baseline MAE and their own
            if name.startswith("tats_r"):
                pairs += [("random", (name, "sample")), ("random", (name, "topk")), (name, (name, "sample")),
                          (name, ("random", "sample"))]
        for mae_name, key in pairs:
            res = evaluate_sampler(trained[mae_name][0], specs[key], clips, seed=args.eval_seed)
            rows.append({"seed": seed, "rho": rho, "mae": mae_name, "sampler": key[0], "mode": key[1],
                         **{k: round(v, 5) for k, v in res.items()}})
        print(f"  evaluated seed {seed} rho {rho:g}: {len(pairs)} MAE x sampler pairs", flush=True)
    write_csv(cache, rows, EVAL_COLUMNS)
    return rows


def autogaze_rows(args: argparse.Namespace, seed: int, data: Path) -> list[dict]:
    if not args.autogaze_ckpt:
        return []
    from autogaze.evaluation.token_samplers import autogaze_object_share

    ckpts = args.autogaze_ckpt
    ckpt = ckpts[args.seeds.index(seed)] if len(ckpts) == len(args.seeds) else ckpts[0]
    res = autogaze_object_share(ckpt, args.autogaze_task_config, str(data), args.autogaze_ratio,
                                seed=args.eval_seed, batch_size=args.batch_size)
    return [{"seed": seed, "ckpt": str(ckpt), "ratio": args.autogaze_ratio, **{k: round(v, 5) for k, v in res.items()}}]


# ------------------------------------------------------------------ tables
def write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)


def pick(rows: list[dict], metric: str, **match) -> list[float]:
    """``metric`` of the rows matching ``match``, one value per seed."""
    return [r[metric] for r in rows if all(r[k] == v for k, v in match.items())]


def tables(args: argparse.Namespace, rows: list[dict], ag: list[dict]) -> list[str]:
    rhos = args.rhos

    def head(cols: list[str]) -> list[str]:
        return ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]

    n_val = "/".join(f"{v:g}" for v in sorted(set(pick(rows, "clips", mae="random", sampler="random"))))
    out = [f"Seeds {args.seeds}; {n_val} val clips; sampled rows: mean of {args.draws} seeded draws; "
           "top-N_v: the N_v most likely tokens.", "",
           "**Masked-token error, one MAE** (the random-mask baseline's at each rho), visible set from:", ""]
    out += head(["visible set"] + [f"rho={r:g}" for r in rhos])
    for key in SAMPLERS:
        out.append(f"| {LABEL[key]} | " + " | ".join(
            ms(pick(rows, "masked_error", rho=r, mae="random", sampler=key[0], mode=key[1])) for r in rhos) + " |")
    out += ["", "**Masked-token error, each method's own MAE**, with its own sampler (sampled) and with random masks:", ""]
    out += head(["method"] + [f"{c} rho={r:g}" for r in rhos for c in ("own sampler", "random masks")])
    for m, name in (("random", "random-mask VideoMAE"), ("adamae", "AdaMAE"), ("tats", "TATS")):
        cells = [ms(pick(rows, "masked_error", rho=r, mae=m, sampler=s, mode="sample"))
                 for r in rhos for s in (m, "random")]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "**Where the visible tokens lie**: share on moving objects (object pixels cover >= 1/2 of the "
            "tubelet) | mean object-pixel fraction of the tubelets:", ""]
    out += head(["visible set"] + [f"{c} rho={r:g}" for r in rhos for c in ("on objects", "object fraction")])
    for key in SAMPLERS:
        out.append(f"| {LABEL[key]} | " + " | ".join(
            ms(pick(rows, metric, rho=r, mae="random", sampler=key[0], mode=key[1]), 3)
            for r in rhos for metric in ("obj_hit", "obj_cover")) + " |")
    base = dict(mae="random", sampler="random", mode="sample")
    out.append("| base: all tokens (on objects), object pixel share (fraction) | " + " | ".join(
        ms(pick(rows, metric, rho=r, **base), 3) for r in rhos for metric in ("obj_hit_base", "area_share")) + " |")
    if ag:
        v = [a["gaze_area_on_objects"] for a in ag]
        out += ["", f"AutoGaze at ratio {args.autogaze_ratio:g} ({ms([a['gazes_per_frame'] for a in ag], 2)} gazes "
                f"per frame): share of its gazed patch area on objects {ms(v, 3)}; object pixel share "
                f"{ms([a['area_share'] for a in ag], 3)}."]
    variants = sorted({r["sampler"] for r in rows if r["sampler"].startswith("tats_r")})
    if variants:
        r0 = TUNING_RHO
        out += ["", f"**TATS PPO tuning at rho {r0:g}** (masked error; on-objects share of the sampled sets):", ""]
        out += head(["run", "baseline MAE, sampled", "baseline MAE, top-N_v", "own MAE, own sampler",
                     "own MAE, random masks", "on objects"])
        for name in ["tats"] + variants:
            label = "default" if name == "tats" else name.split("_", 2)[2]
            cells = [ms(pick(rows, "masked_error", rho=r0, mae="random", sampler=name, mode="sample")),
                     ms(pick(rows, "masked_error", rho=r0, mae="random", sampler=name, mode="topk")),
                     ms(pick(rows, "masked_error", rho=r0, mae=name, sampler=name, mode="sample")),
                     ms(pick(rows, "masked_error", rho=r0, mae=name, sampler="random", mode="sample")),
                     ms(pick(rows, "obj_hit", rho=r0, mae="random", sampler=name, mode="sample"), 3)]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="study folder (seed*/, CSVs, tables)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rhos", type=float, nargs="+", default=[0.9, 0.95], help="mask ratios")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default: the configs' trainer.max_steps)")
    p.add_argument("--data", type=Path, help="a train/ + val/ clip root for every seed (default: synthetic per seed)")
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-val", type=int, default=64)
    p.add_argument("--tuning", nargs="*", default=list(DEFAULT_TUNING), metavar="KEY=VALUE",
                   help=f"TATS variants at rho {TUNING_RHO} (algorithm keys of tats_ppo)")
    p.add_argument("--tats-warmup-frac", type=float, default=0.1, help="TATS MAE-only warm-up, share of the steps")
    p.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every run")
    p.add_argument("--procs", type=int, default=1, help="training runs side by side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--draws", type=int, default=3, help="seeded draws averaged per sampled visible set")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation draws")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--re-eval", action="store_true", help="evaluate again even when eval.csv is up to date")
    p.add_argument("--autogaze-ckpt", type=Path, nargs="*", default=[],
                   help="AutoGaze checkpoint or experiment folder (one, or one per seed)")
    p.add_argument("--autogaze-task-config", type=Path, help="its task's config.yaml (e.g. exps/demo_mae/config.yaml)")
    p.add_argument("--autogaze-ratio", type=float, default=0.1)
    args = p.parse_args(argv)
    if args.autogaze_ckpt and args.autogaze_task_config is None:
        p.error("--autogaze-ckpt needs --autogaze-task-config")
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    steps = args.steps or int(config_value(CONFIGS["random"], "trainer.max_steps"))
    datas = {s: make_data(args, s) for s in args.seeds}
    runs = {s: plan(args, s, datas[s], steps) for s in args.seeds}
    todo = [r for s in args.seeds for r in runs[s]]
    print(f"{len(todo)} runs of {steps} steps, {args.procs} at a time", flush=True)
    with ThreadPoolExecutor(max(1, args.procs)) as pool:
        futures = [(r, pool.submit(train, r, steps, args.threads)) for r in todo]
    failed = [f"{r.name} seed {r.seed}: {f.exception()}" for r, f in futures if f.exception() is not None]
    if failed:
        raise SystemExit("failed runs:\n  " + "\n  ".join(failed))
    write_csv(args.root / "study_runs.csv",
              [{"seed": r.seed, "rho": r.rho, "run": r.name, "config": CONFIGS[r.method], "wall_s": round(f.result(), 1),
                "overrides": " ".join(r.overrides)} for r, f in futures],
              ("seed", "rho", "run", "config", "wall_s", "overrides"))
    rows = [row for s in args.seeds for row in evaluate_seed(args, s, runs[s], datas[s])]
    write_csv(args.root / "study_eval.csv", rows, EVAL_COLUMNS)
    ag = [row for s in args.seeds for row in autogaze_rows(args, s, datas[s])]
    if ag:
        write_csv(args.root / "study_autogaze.csv", ag, list(ag[0]))
    text = "\n".join(tables(args, rows, ag))
    (args.root / "study_tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
