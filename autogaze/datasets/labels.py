"""Ground-truth gaze labels (``gazing_labels.json``): format, validation, collation, writing.

Format (upstream's)::

    {
      "<dataset_dir>/<split>/<file>.mp4": {
        "gazing_pos":  [[ids of frame 0], [ids of frame 1], ...],    # T lists of GLOBAL ids t*P+local
        "task_losses": [[loss after each gaze of frame 0], ...]      # same nesting, floats
        # optional (ours, python -m autogaze.label --top-candidates M): per gaze, the M best
        # candidates of that greedy step, best first, and the loss each would have reached
        "candidate_pos":    [[[ids of gaze 0's candidates], ...], ...],  # T x gazes x <= M, global ids
        "candidate_losses": [[[their losses], ...], ...]
      },
      ...
    }

Keys may be longer paths; they are reduced to their last three components and matched against the
videos' paths reduced the same way. Several files (comma-separated paths or globs) are merged.
Every entry is validated on load: T == clip_len, ids inside their own frame's range, no repeats
within a frame, at least one gaze per frame, and equal lengths of ``gazing_pos`` and
``task_losses`` (and of the candidate lists, whose first id is the gaze itself). Errors name the clip. A clip listed twice (after key reduction) must carry the same
label both times. When labels are given, videos without one are left out of the dataset (one
warning with the count); labels for videos that are not in the folders are ignored.
"""
from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import torch

from autogaze.types import GazeLabels, Gazes
from autogaze.utils.io import atomic_write_file
from autogaze.utils.parsing import ConfigError, parse_str_list

# (gazing_pos, task_losses), or with candidates (gazing_pos, task_losses, candidate_pos, candidate_losses)
Entry = tuple


def label_key(path: str | os.PathLike) -> str:
    """Last three path components, ``<dataset_dir>/<split>/<file>.mp4`` (upstream's matching rule)."""
    return "/".join(Path(path).parts[-3:])


def validate_entry(key: str, entry: dict, clip_len: int, tokens_per_frame: int) -> Entry:
    """Check one label entry and return (gazing_pos, task_losses) as plain lists."""
    def bad(rule: str, fix: str):
        raise ValueError(f"gaze labels for {key}: {rule}. Fix: {fix}")

    if not isinstance(entry, dict) or "gazing_pos" not in entry or "task_losses" not in entry:
        bad("need the keys 'gazing_pos' and 'task_losses'", "regenerate with python -m autogaze.label")
    pos, losses = entry["gazing_pos"], entry["task_losses"]
    if len(pos) != clip_len or len(losses) != clip_len:
        bad(f"{len(pos)} frames of gazing_pos / {len(losses)} of task_losses, but dataset.clip_len={clip_len}",
            "label the same clip length you train with")
    P = tokens_per_frame
    for t, (ids, ls) in enumerate(zip(pos, losses)):
        if len(ids) != len(ls):
            bad(f"frame {t} has {len(ids)} gazes but {len(ls)} task losses", "keep one loss per gaze")
        if not ids:
            bad(f"frame {t} has no gazes", "every frame needs at least one gaze (the model emits >= 1)")
        if any(not (t * P <= int(i) < (t + 1) * P) for i in ids):
            bad(f"frame {t} has ids outside [{t * P}, {(t + 1) * P}) (global ids t*P+local, P={P})",
                "check model.num_vision_tokens_each_frame and that ids are global")
        if len(set(ids)) != len(ids):
            bad(f"frame {t} repeats a patch", "a frame's gazes must be distinct")
    out = ([[int(i) for i in ids] for ids in pos], [[float(v) for v in ls] for ls in losses])
    if "candidate_pos" not in entry and "candidate_losses" not in entry:
        return out
    cpos, closs = entry.get("candidate_pos"), entry.get("candidate_losses")
    if not isinstance(cpos, list) or not isinstance(closs, list) or len(cpos) != clip_len or len(closs) != clip_len:
        bad("candidate_pos and candidate_losses need one list per frame", "regenerate with --top-candidates")
    for t, (ids, steps, step_losses) in enumerate(zip(pos, cpos, closs)):
        if len(steps) != len(ids) or len(step_losses) != len(ids):
            bad(f"frame {t} has {len(ids)} gazes but {len(steps)} candidate lists", "keep one list per gaze")
        for j, (cand, cl) in enumerate(zip(steps, step_losses)):
            if not cand or len(cand) != len(cl) or int(cand[0]) != int(ids[j]):
                bad(f"frame {t}, gaze {j}: the candidates must be non-empty, one loss each, the gaze first",
                    "regenerate with --top-candidates")
            if any(not (t * P <= int(i) < (t + 1) * P) for i in cand) or len(set(cand)) != len(cand):
                bad(f"frame {t}, gaze {j}: candidate ids outside frame {t} or repeated", "regenerate the labels")
    return out + ([[[int(i) for i in c] for c in steps] for steps in cpos],
                  [[[float(v) for v in c] for c in steps] for steps in closs])


def load_labels(spec, clip_len: int, tokens_per_frame: int, key: str = "dataset.gt_gazing_pos_paths") -> dict[str, Entry]:
    """Merge and validate label files given as comma-separated paths/globs (or a list)."""
    files: list[str] = []
    for pattern in parse_str_list(key, spec, sep=","):
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise ConfigError(key, pattern, "no label file matches", "point it at an existing gazing_labels.json")
        files += matches
    out: dict[str, Entry] = {}
    source: dict[str, str] = {}
    for f in files:
        try:
            with open(f) as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(key, f, f"cannot read the label file ({type(e).__name__}: {e})",
                              "regenerate it with python -m autogaze.label") from None
        if not isinstance(data, dict):
            raise ConfigError(key, f, "a label file must hold one JSON object {video: entry}", "regenerate it")
        for k, entry in data.items():
            short = label_key(k)
            parsed = validate_entry(f"{k} (in {f})", entry, clip_len, tokens_per_frame)
            # Shards may repeat a clip (e.g. a resumed labelling run); identical repeats are fine,
            # different ones would make the training target depend on file order.
            if short in out and out[short] != parsed:
                raise ValueError(f"gaze labels for {short}: {source[short]} and {f} disagree. "
                                 "Fix: keep one label per clip (keys match on <dataset_dir>/<split>/<file>.mp4)")
            out[short], source[short] = parsed, f
    return out


def collate_labels(entries: list[Entry], tokens_per_frame: int) -> GazeLabels:
    """Pad frame t of every clip to (batch max length + 1) slots.

    The extra slot is always padding (upstream's collate; the model therefore never learns EOS).
    Padded slots hold the frame's own first id ``t * P`` (an in-range id, see types.py) and the
    frame's last task loss. Returns GazeLabels with ids/is_padded/task_losses [B, N], and the
    candidates [B, N, M] when every entry has them (see ``_collate_candidates``).
    """
    B, T, P = len(entries), len(entries[0][0]), tokens_per_frame
    with_candidates = {len(e) == 4 for e in entries}
    if len(with_candidates) > 1:
        raise ValueError("gaze labels: some clips have candidate lists and some do not. "
                         "Fix: label every clip with the same --top-candidates")
    n_t = [max(len(e[0][t]) for e in entries) + 1 for t in range(T)]
    N = sum(n_t)
    ids = torch.empty(B, N, dtype=torch.long)
    is_padded = torch.ones(B, N, dtype=torch.bool)
    losses = torch.zeros(B, N)
    start = 0
    for t, n in enumerate(n_t):
        ids[:, start:start + n] = t * P
        for b, (pos, tl, *_) in enumerate(entries):
            k = len(pos[t])
            ids[b, start:start + k] = torch.tensor(pos[t], dtype=torch.long)
            is_padded[b, start:start + k] = False
            losses[b, start:start + k] = torch.tensor(tl[t])
            losses[b, start + k:start + n] = tl[t][-1] if k else 0.0
        start += n
    gazes = Gazes(ids, is_padded, torch.tensor(n_t, dtype=torch.long), P)
    if with_candidates == {True}:
        cand_ids, cand_losses = _collate_candidates(entries, ids, n_t)
        return GazeLabels(gazes, losses, cand_ids, cand_losses)
    return GazeLabels(gazes, losses)


def _collate_candidates(entries: list[Entry], ids: torch.Tensor, n_t: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """candidate ids [B, N, M] and losses [B, N, M] (M = the longest list). Unused entries hold the
    slot's own id with loss +inf (no weight in a softmax over -loss); padded slots have the one
    candidate ``ids[b, n]`` with loss 0, so their target is well defined (and masked anyway)."""
    M = max(len(c) for e in entries for frame in e[2] for c in frame)
    cand_ids = ids[..., None].repeat(1, 1, M)
    cand_losses = torch.full(cand_ids.shape, float("inf"))
    cand_losses[..., 0] = 0.0
    start = 0
    for t, n in enumerate(n_t):
        for b, e in enumerate(entries):
            for j, (c, cl) in enumerate(zip(e[2][t], e[3][t])):
                cand_ids[b, start + j, :len(c)] = torch.tensor(c, dtype=torch.long)
                cand_losses[b, start + j, :len(c)] = torch.tensor(cl)
        start += n
    return cand_ids, cand_losses


def write_labels(path: str | os.PathLike, mapping: dict[str, dict]) -> None:
    """Write ``mapping`` (key -> {"gazing_pos", "task_losses"}) atomically (tmp file + os.replace)."""
    atomic_write_file(path, lambda f: json.dump(mapping, f), mode="w")
