"""``python -m autogaze.label``: write ``gazing_labels.json`` for NTP with the greedy search.

    python -m autogaze.label --data-root data/synthetic --split train --clip-len 8 \\
        --task-config exps/demo_mae/config.yaml --task-weights exps/demo_mae/checkpoint_latest_task.pt \\
        --out data/synthetic/gazing_labels.json

    torchrun --nproc_per_node=8 -m autogaze.label ...      # clips split over RANK / WORLD_SIZE
    python -m autogaze.label --shard 2/4 ...                # or over independent processes

The task (the frozen MAE that scores gazes) comes from ``--task-config`` (an experiment's
``config.yaml``, whose ``task`` group is used, or a bare task group yaml; default
autogaze/configs/task/video_mae_reconstruction.yaml), then ``task.<key>=value`` overrides, then
``--task-weights``. Clips come from the ``dataset`` group (autogaze/configs/dataset/video_folder.yaml), with
``--data-root``/``--clip-len`` and ``dataset.<key>=value`` overrides (an experiment config.yaml
given as ``--task-config`` supplies its dataset group too). Finished clips are appended
to ``OUT.parts/`` as they finish; a restart skips them; the last shard to finish merges (shards.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from autogaze.build import resolve_target
from autogaze.config import CONFIG_DIR
from autogaze.datasets.labels import label_key, validate_entry, write_labels
from autogaze.labeling import shards
from autogaze.labeling.budgets import LabelBudget, candidate_generator, clip_generator, sample_clip_budget
from autogaze.labeling.greedy import frozen, label_clip
from autogaze.utils.parsing import ConfigError
from autogaze.utils.runtime import tune_cpu

log = logging.getLogger("autogaze.label")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m autogaze.label", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="task.<key>=value / dataset.<key>=value (Hydra-style)")
    p.add_argument("--data-root", help="comma-separated dataset roots, each with train/ and val/")
    p.add_argument("--split", default="train")
    p.add_argument("--clip-len", type=int, help="frames per clip (default: the dataset group's clip_len)")
    p.add_argument("--task-config", help="experiment config.yaml (its `task` group) or a task group yaml")
    p.add_argument("--task-weights", help="task state dict (videomae.pt or <exp>/checkpoint_latest_task.pt)")
    p.add_argument("--out", required=True, help="output gazing_labels.json")
    p.add_argument("--seed", type=int, default=0, help="budgets of clip k are drawn from hash(seed, k)")
    b = LabelBudget()
    p.add_argument("--ratio-strategy", default=b.ratio_strategy, help="fixed | uniform | exponential")
    p.add_argument("--ratio", type=float, default=b.ratio, help="clip ratio for --ratio-strategy fixed")
    p.add_argument("--ratio-min", type=float, default=b.ratio_min)
    p.add_argument("--ratio-max", type=float, default=b.ratio_max)
    p.add_argument("--lam", type=float, default=b.lam, help="rate of the truncated exponential")
    p.add_argument("--frame-strategy", default=b.frame_strategy, help="uniform | dirichlet")
    p.add_argument("--alpha", default=b.alpha, help="Dirichlet alpha: one value, 'first,rest' or clip_len values")
    p.add_argument("--candidate-batch", type=int, default=64, help="candidate gaze sets per MAE forward")
    p.add_argument("--top-candidates", type=int, default=0,
                   help="also record each greedy step's N best candidates and their losses (soft NTP targets, "
                        "algorithm.soft_label_temperature); 0 = upstream's format")
    p.add_argument("--candidate-sample", type=int, default=0,
                   help="score only this many random remaining patches per greedy step (stochastic greedy, about "
                        "M / P of the cost; drawn per clip from --seed); 0 = every patch, the exact greedy search")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is fastest for tiny MAEs")
    p.add_argument("--shard", default="0/1", help="i/n: label every n-th clip starting at i")
    p.add_argument("--limit", type=int, help="label only the first N clips of the split (smoke runs)")
    p.add_argument("--merge-only", action="store_true", help="only merge finished parts into --out")
    return p.parse_args(argv)


def _load_yaml(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def group_configs(args: argparse.Namespace) -> tuple[dict, dict]:
    """(task group, dataset group) after config files and overrides."""
    given = _load_yaml(Path(args.task_config)) if args.task_config else {}
    # An experiment's config.yaml carries complete (composed) task and dataset groups; otherwise
    # start from the groups' yaml files, as Hydra would.
    task = given.get("task") or (given if given else _load_yaml(CONFIG_DIR / "task" / "video_mae_reconstruction.yaml"))
    base = CONFIG_DIR / "dataset" / "video_folder.yaml"
    dataset = given.get("dataset") or (_load_yaml(base) if base.exists() else {})
    groups = {"task": OmegaConf.create(task), "dataset": OmegaConf.create(dataset)}
    for item in args.overrides:
        key, sep, _ = item.partition("=")
        group = key.split(".", 1)[0]
        if not sep or group not in groups or "." not in key:
            raise ConfigError(key, item, "overrides must look like task.<key>=value or dataset.<key>=value",
                              "e.g. task.recon_model=tiny")
        groups[group] = OmegaConf.merge(groups[group], OmegaConf.from_dotlist([item.split(".", 1)[1]]))
    task, dataset = (OmegaConf.to_container(groups[g], resolve=True) for g in ("task", "dataset"))
    if args.data_root:
        dataset["root"] = args.data_root
    if args.clip_len:
        dataset["clip_len"] = args.clip_len
    dataset["gt_gazing_pos_paths"] = {"train": None, "val": None}  # the labeller reads raw clips
    return task, dataset


def build_task(task_cfg: dict, weights: str | None, device: torch.device):
    cls = resolve_target("task", task_cfg)
    task = cls.from_config({k: v for k, v in task_cfg.items() if k != "_target_"})
    if weights:
        task.load_task_weights(weights)
    return frozen(task.to(device))


def build_split(dataset_cfg: dict, split: str, task):
    """The dataset of ``split`` at the task's frame size, as the trainer builds it (build.py)."""
    cls = resolve_target("dataset", dataset_cfg)
    body = {k: v for k, v in dataset_cfg.items() if k != "_target_"}
    preprocessing = _load_yaml(CONFIG_DIR / "model" / "autogaze.yaml").get("preprocessing", {})
    return cls.from_config(body, split=split, preprocessing=preprocessing, size=task.frame_size, seed=0,
                           tokens_per_frame=task.tokens_per_frame)


def shard_of(args: argparse.Namespace) -> tuple[int, int]:
    """Global (index, count): ``--shard i/n`` times torchrun's RANK / WORLD_SIZE."""
    try:
        i, n = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise ConfigError("--shard", args.shard, "must be i/n with 0 <= i < n", "e.g. --shard 0/4") from None
    if not 0 <= i < n:
        raise ConfigError("--shard", args.shard, "must be i/n with 0 <= i < n", "e.g. --shard 0/4")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return i * world + rank, n * world


def settings_fingerprint(args, task_cfg: dict, dataset_cfg: dict, budget: LabelBudget) -> dict:
    """What the labels depend on; part files made under other settings are refused (shards.py)."""
    weights = None
    if args.task_weights:
        st = os.stat(args.task_weights)
        weights = {"path": os.path.abspath(args.task_weights), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    out = {"task": task_cfg, "weights": weights, "split": args.split, "clip_len": dataset_cfg.get("clip_len"),
           "seed": args.seed, "budget": budget.as_dict(), "precision": args.precision,
           "roots": dataset_cfg.get("root")}
    if args.top_candidates:  # only when on, so part files written before the option still resume
        out["top_candidates"] = args.top_candidates
    if args.candidate_sample:  # likewise
        out["candidate_sample"] = args.candidate_sample
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
            else torch.device("cpu")
    return torch.device(name)


def run(args: argparse.Namespace) -> dict:
    """Label this process's shard, then merge if every shard is done. Returns a small summary."""
    budget = LabelBudget(args.ratio_strategy, args.ratio, args.ratio_min, args.ratio_max, args.lam,
                         args.frame_strategy, args.alpha).validate()
    if args.top_candidates < 0:
        raise ConfigError("--top-candidates", args.top_candidates, "must be >= 0", "use 0 (off) or e.g. 8")
    if args.candidate_sample < 0:
        raise ConfigError("--candidate-sample", args.candidate_sample, "must be >= 0",
                          "use 0 (every patch, exact greedy) or e.g. 24")
    if args.threads:
        torch.set_num_threads(args.threads)
    task_cfg, dataset_cfg = group_configs(args)
    device = resolve_device(args.device)
    task = build_task(task_cfg, args.task_weights, device)
    dataset = build_split(dataset_cfg, args.split, task)
    paths = [str(p) for p in dataset.paths][: args.limit]
    keys = [label_key(p) for p in paths]
    if len(set(keys)) != len(keys):
        raise ConfigError("dataset.root", dataset_cfg.get("root"), "two videos share the key <dataset>/<split>/<file>",
                          "give each root a distinct folder name")
    directory = shards.parts_dir(args.out)
    shards.check_manifest(directory, settings_fingerprint(args, task_cfg, dataset_cfg, budget))
    index, count = shard_of(args)
    done = shards.read_parts(directory)
    todo = [i for i in range(index, len(paths), count) if keys[i] not in done]
    summary = {"shard": f"{index}/{count}", "skipped": len(range(index, len(paths), count)) - len(todo),
               "labelled": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    fault_after = int(os.environ.get("AUTOGAZE_LABEL_FAULT_AFTER", "-1"))  # test hook: SIGKILL after N clips
    if not args.merge_only:
        with shards.PartWriter(directory / shards.shard_name(index, count)) as writer:
            for i in tqdm(todo, desc=f"label {args.split} shard {index}/{count}", dynamic_ncols=True):
                labels = _label_one(task, dataset, i, keys[i], args, budget, device)
                if labels is not None:
                    writer.write(keys[i], labels.to_json())
                    summary["labelled"] += 1
                if summary["labelled"] == fault_after:
                    os.kill(os.getpid(), signal.SIGKILL)
    summary["seconds"] = time.perf_counter() - t0
    summary["missing"] = _merge_when_complete(directory, keys, args.out, int(dataset_cfg["clip_len"]),
                                              task.tokens_per_frame)
    return summary


def _label_one(task, dataset, i: int, key: str, args, budget: LabelBudget, device):
    batch = dataset.collate([dataset[i]])
    if batch.batch_size == 0:  # undecodable: never silently replaced (it stays missing at merge)
        log.warning("could not decode %s; it gets no label", key)
        return None
    video = batch.video_for_task[0].to(device)  # [T, 3, S, S]
    budgets = sample_clip_budget(budget, video.shape[0], task.tokens_per_frame, clip_generator(args.seed, key))
    return label_clip(task, video, budgets, args.candidate_batch, args.precision, top_candidates=args.top_candidates,
                      candidate_sample=args.candidate_sample, generator=candidate_generator(args.seed, key))


def _merge_when_complete(directory: Path, keys: list[str], out: str, clip_len: int, tokens_per_frame: int) -> int:
    """Merge on the last process to finish. Under torchrun, ranks meet at a barrier first; the
    process group is created only now, because BudgetSampler broadcasts draws from rank 0 whenever
    one exists, which would tie every rank's budgets to rank 0's clips."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        import datetime

        import torch.distributed as dist

        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        dist.barrier()
        is_main = dist.get_rank() == 0
    else:
        is_main = True
    missing = []
    if is_main:
        def checked_write(path, mapping):  # the loader's own checks, before anything is written
            for k, entry in mapping.items():
                validate_entry(k, entry, clip_len, tokens_per_frame)
            write_labels(path, mapping)

        missing = shards.merge(directory, keys, out, checked_write)
        if missing:
            log.warning("%d clips still unlabelled (other shards running, or undecodable); rerun with "
                        "--merge-only once they finish", len(missing))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return len(missing)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    tune_cpu()
    summary = run(parse_args(argv))
    print(json.dumps(summary))

