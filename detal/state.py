"""Labelling state: one integer per pool image, the round it was labelled in (0 = unlabelled).

baal's `labelled_map` idea: the labelled set, the pool and the history all derive from one array.
Round 1 is the random seed set; an image selected after round r is labelled in round r + 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from detal.data import atomic_write_text
from detal.errors import DataError


class LabelState:
    def __init__(self, n: int, labelled_map: np.ndarray | None = None):
        self.map = np.zeros(n, dtype=np.int64) if labelled_map is None else np.asarray(labelled_map, dtype=np.int64)
        if self.map.shape != (n,):
            raise ValueError(f"labelled_map has shape {self.map.shape}, expected ({n},)")

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.map > 0)

    @property
    def unlabelled(self) -> np.ndarray:
        return np.flatnonzero(self.map == 0)

    @property
    def last_round(self) -> int:
        return int(self.map.max(initial=0))

    def labelled_in(self, round_idx: int) -> np.ndarray:
        return np.flatnonzero(self.map == round_idx)

    def mark(self, ids: np.ndarray, round_idx: int) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if round_idx < 1:
            raise ValueError("rounds start at 1 (0 means unlabelled)")
        if np.unique(ids).size != ids.size:
            raise ValueError("the same image was selected twice in one batch; a strategy must return unique ids")
        already = ids[self.map[ids] > 0]
        if already.size:
            raise ValueError(f"images {already[:5].tolist()} are already labelled; a strategy must pick from the pool")
        self.map[ids] = round_idx

    def to_json(self) -> dict:
        return {"labelled_map": self.map.tolist()}

    def save(self, path: Path, extra: dict | None = None) -> None:
        atomic_write_text(path, json.dumps({**(extra or {}), **self.to_json()}))

    @classmethod
    def load(cls, path: Path) -> tuple["LabelState", dict]:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            m = np.asarray(doc.pop("labelled_map"), dtype=np.int64)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: unreadable labelling state ({exc}); delete it to start over") from None
        return cls(len(m), m), doc
