"""Metric sinks: ``<exp>/metrics.jsonl`` always, W&B when ``logger=wandb``, and a console /
``training.log`` line (every validation; train steps every ``trainer.log_nsteps``, see trainer.py).

Only rank 0 logs. W&B runs offline unless ``logger.mode`` says otherwise, so a run never needs a
network; ``wandb sync <exp>/wandb/...`` uploads it later.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger("autogaze")


def setup_logging(exp_dir: Path | None, is_main: bool) -> None:
    """Console logging on rank 0 (warnings only elsewhere), plus ``<exp>/training.log``."""
    root = logging.getLogger("autogaze")
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    if not root.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    if exp_dir is not None and is_main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(exp_dir / "training.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
    root.propagate = False


class MetricLogger:
    def __init__(self, cfg, exp_dir: Path, exp_name: str, config: dict, is_main: bool):
        self.is_main = is_main
        self.path = exp_dir / "metrics.jsonl"
        self.run = None
        if is_main and cfg.name == "wandb":
            import wandb

            self.run = wandb.init(project=cfg.project, entity=cfg.entity, name=exp_name, id=exp_name,
                                  resume="allow", dir=str(exp_dir), mode=cfg.mode, config=config)

    def log(self, metrics: dict[str, float], step: int, prefix: str, echo: bool = True) -> None:
        """Write ``{prefix}/{name}`` metrics at ``step`` (train_step or val_step) to metrics.jsonl and
        W&B; ``echo`` also prints them as one line to the console and training.log."""
        if not self.is_main:
            return
        row = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
        row[f"{prefix}/{prefix}_step"] = step
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.run is not None:
            self.run.log(row)
        if not echo:
            return
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v))
        log.info("%s step %d: %s", prefix, step, shown)

    def log_image(self, key: str, path: Path, step: int) -> None:
        if self.is_main and self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path)), "val/val_step": step})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def read_metrics(path: Path) -> list[dict]:
    """Rows of a ``metrics.jsonl`` file (for tests, the demo summary and evaluation)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
