"""The labelling state of one arm (experiment) or project: who is labelled, since which round, and the RNG.

baal's `labelled_map` idea, keyed by image (the path relative to the dataset root), not by position in
a sorted list: images added to or removed from the pool between runs cannot swap places with labelled
ones. The labelled set, the pool and the history all derive from these maps. Round 1 is the random seed
set; an image selected after round r is labelled in round r + 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from detal.data import atomic_write_text
from detal.errors import DataError

STATE_VERSION = 2
_OPTIONAL = {"seconds"}  # added later within version 2: a state saved before it loads with none measured


@dataclass
class ArmState:
    labelled: dict[str, int] = field(default_factory=dict)  # image key -> round it joined the labelled set
    pending: dict[str, int] = field(default_factory=dict)  # requested, not yet labelled: key -> round it will join
    skipped: dict[str, int] = field(default_factory=dict)  # the annotator skipped it: never labelled, never re-selected
    boxes: dict[str, list[int]] = field(default_factory=dict)  # labelled key -> boxes per class of its labels
    round_done: int = 0  # last round whose training, evaluation and selection finished
    epochs_trained: int = 0
    weights: str | None = None  # the model of round_done (warm start, pre-labels)
    rng_state: dict | None = None  # numpy bit-generator state after round_done's selection
    finished: bool = False
    # labelled key -> [seconds with the pre-labels shown, seconds from scratch] (detal.cost); absent where not
    # measured (labelled before detal counted seconds): the totals then say "unknown", never a made-up number
    seconds: dict[str, list[float]] = field(default_factory=dict)

    # ------------------------------------------------------------ derived views
    def taken(self) -> set[str]:
        """Keys that are not in the pool: labelled, waiting for an annotator, or skipped."""
        return set(self.labelled) | set(self.pending) | set(self.skipped)

    def pool(self, keys: Iterable[str]) -> list[str]:
        taken = self.taken()
        return [k for k in keys if k not in taken]

    def labelled_keys(self, keys: Iterable[str]) -> list[str]:
        """The labelled keys among `keys` (the images present now), in their order."""
        return [k for k in keys if k in self.labelled]

    def class_counts(self, keys: Iterable[str], nc: int) -> np.ndarray:
        counts = np.zeros(nc, dtype=np.int64)
        for k in keys:
            counts += np.asarray(self.boxes.get(k, [0] * nc), dtype=np.int64)
        return counts

    def labelled_seconds(self, keys: Iterable[str]) -> tuple[float, float]:
        """(seconds with pre-labels, seconds from scratch) of the labelled `keys`; NaN when one was not measured."""
        keys = list(keys)
        if any(k not in self.seconds for k in keys):
            return float("nan"), float("nan")
        return (float(sum(self.seconds[k][0] for k in keys)), float(sum(self.seconds[k][1] for k in keys)))

    # ------------------------------------------------------------ transitions
    def request(self, keys: Iterable[str], round_idx: int) -> None:
        keys = list(keys)
        if round_idx < 1:
            raise ValueError("rounds start at 1")
        if len(set(keys)) != len(keys):
            raise ValueError("the same image was selected twice in one batch; a strategy must return unique ids")
        taken = self.taken()
        already = [k for k in keys if k in taken]
        if already:
            raise ValueError(f"images {already[:5]} are not in the pool; a strategy must pick from the pool")
        self.pending.update(dict.fromkeys(keys, round_idx))

    def label(self, key: str, class_counts: np.ndarray) -> int:
        """A pending image came back labelled: it joins the labelled set in the round it was requested for."""
        round_idx = self.pending.pop(key)
        self.labelled[key] = round_idx
        self.boxes[key] = [int(c) for c in class_counts]
        return round_idx

    def skip(self, key: str) -> None:
        self.skipped[key] = self.pending.pop(key)

    # ------------------------------------------------------------ one serialisation
    def to_json(self) -> dict:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict, source: str = "<state>") -> "ArmState":
        if not isinstance(doc, dict):
            raise DataError(f"{source}: labelling state is not a JSON object; delete the run folder's "
                            "seed*/<strategy> folder (or run with --overwrite) to start over")
        if doc.get("version") != STATE_VERSION:
            raise DataError(f"{source}: labelling state of another detal version ({doc.get('version', 1)}); "
                            "rerun with --overwrite to start this experiment over")
        known = set(cls.__dataclass_fields__)
        missing = sorted(known - set(doc) - _OPTIONAL)
        if missing:
            raise DataError(f"{source}: damaged labelling state (missing key '{missing[0]}'); rerun with --overwrite "
                            "to start over")
        try:
            st = cls(**{k: v for k, v in doc.items() if k in known})
            for name in ("labelled", "pending", "skipped"):
                d = getattr(st, name)
                if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in d.items()):
                    raise TypeError(f"'{name}' must map image keys to round numbers")
            if not isinstance(st.boxes, dict) or set(st.boxes) != set(st.labelled):
                raise TypeError("'boxes' must hold the class counts of exactly the labelled images")
            if set(st.labelled) & set(st.pending):
                raise TypeError("an image is both labelled and pending")
        except TypeError as exc:
            raise DataError(f"{source}: damaged labelling state ({exc}); rerun with --overwrite to start over") from None
        return st

    def save(self, path: Path) -> None:
        """Atomic (temp file + rename): a crash leaves the previous state, never half of one."""
        atomic_write_text(Path(path), json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> "ArmState":
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{path}: unreadable labelling state ({type(exc).__name__}); "
                            "rerun with --overwrite to start over") from None
        return cls.from_json(doc, str(path))
