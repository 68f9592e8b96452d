"""Trainings from scratch shared between the arms of one experiment seed (`Arm.shared_dir`).

Every arm of a seed starts from the same random seed set, so its first round trains the same model:
the same images and labels, recipe, val split and seed (training is deterministic on one machine). The
first arm to get there trains it and leaves a copy; the others wait for it (a blocking lock, so two
arms running at once do not both train it) and copy it into their own round folder. In a study of
k arms that is k - 1 first rounds not trained, ~12% of each arm with `min_steps_per_round`.

Only trainings from scratch are shared: a warm start depends on the arm's own history. The key hashes
everything the training reads except where and how fast it runs (device, workers, threads), so a
changed label, recipe, val split or seed never reuses a model. A crash leaves no entry: the copy is
moved into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from detal.config import NOT_THE_EXPERIMENT, Config
from detal.lock import waiting

# warm_start is not read either: a training from scratch has nothing to start from
_NOT_READ = (*NOT_THE_EXPERIMENT["model"], "warm_start")
_ARM_OWN = ("data.yaml", "data_train.txt", "data_val.txt")  # written by the arm itself before training
_DONE = "shared.json"


@dataclass(frozen=True)
class Reused:
    """A shared training copied into this arm's round folder (what the round reads of a TrainResult)."""

    weights: Path
    epochs: int
    seconds: float = 0.0  # this arm spent no time training


def training_key(cfg: Config, source: str, labelled: Iterable[tuple[str, bytes]], val: Sequence[Path],
                 names: Sequence[str], epochs: int, seed: int) -> str:
    """Hash of what a training from `source` reads: (image key, label file bytes) pairs, val, recipe, seed."""
    model = {k: v for k, v in cfg.model.model_dump(mode="json").items() if k not in _NOT_READ}
    h = hashlib.sha256(json.dumps({
        "data": str(Path(cfg.data).resolve()), "model": model, "source": str(source), "epochs": int(epochs),
        "seed": int(seed), "names": list(names), "val": [str(p) for p in val],
    }, sort_keys=True).encode())
    for key, label in sorted(labelled):
        h.update(key.encode() + b"\0" + hashlib.sha256(label).digest())
    return h.hexdigest()[:24]


def _copy_round(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.name in _ARM_OWN or p.name == _DONE:
            continue
        if p.is_dir():
            shutil.copytree(p, dst / p.name, dirs_exist_ok=True)
        else:
            shutil.copy2(p, dst / p.name)


def train_shared(shared_dir: Path, key: str, round_dir: Path, train: Callable[[], object]):
    """(training result, reused?): the shared copy under `key` when there is one, else `train()` and keep a copy.

    `train()` must write into `round_dir` (its weights inside it); a result whose weights lie elsewhere is
    returned without being shared.
    """
    shared_dir = Path(shared_dir)
    entry = shared_dir / key
    with waiting(shared_dir / f".{key}.lock"):
        done = entry / _DONE
        if done.is_file():
            meta = json.loads(done.read_text(encoding="utf-8"))
            _copy_round(entry, round_dir)
            return Reused(round_dir / meta["weights"], int(meta["epochs"])), True
        tr = train()
        try:
            rel = Path(tr.weights).resolve().relative_to(Path(round_dir).resolve())
        except ValueError:
            return tr, False
        tmp = shared_dir / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _copy_round(round_dir, tmp)
        (tmp / _DONE).write_text(json.dumps({"weights": rel.as_posix(), "epochs": int(tr.epochs),
                                             "seconds": round(float(tr.seconds), 2)}), encoding="utf-8")
        os.replace(tmp, entry)  # complete or absent: a crash before this line leaves no entry
        return tr, False
