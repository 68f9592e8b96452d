"""Pool scoring on Ray Data (`scoring.engine: ray`): the detector's own Scorer inside Ray actors.

The pass is a Ray dataset of paths, one row per scoring batch: the same chunks of `scoring.batch`
consecutive images the local Scorer makes, so each image is letterboxed with the same batch companions
and gets the same boxes, scores and selection as on the local engine. `map_batches` runs `_ScoreActor`
in an actor pool: each actor loads the round's weights once (shipped through Ray's object store: a node
needs no copy of the run folder), then decodes, letterboxes and predicts with `backend.Scorer`
(detal.detector: the local scorer's code, nothing re-implemented here). What comes back per image is its
position and its Prediction as Arrow columns (boxes, full class vectors, the pooled feature when asked for),
never pixels; the driver yields them in input order, their arrays views of the columns.

Failures are Ray's to handle: an actor that dies is restarted and its batches re-run (max_restarts and
max_task_retries -1: Ray Data's defaults for actor pools). The driver checks that every image came back,
and keeps each once. Every node must see the images at the same path (a shared
filesystem, or an object store mounted there) and have detal installed.

Ray is imported here only (and in the actors); `detal --help` and the local engine never load it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from detal.errors import ConfigError, DetalError
from detal.types import Prediction

log = logging.getLogger("detal")

IMAGES_PER_BLOCK = 128  # rows of the dataset are batches; a block (one actor call, one retry unit) ~ this many images

_FIX = ("start one there with `ray start --head --port=6379` and set ray.address to HOST:6379 (or auto on a "
        "cluster node), or set ray.address: null to start a local Ray on this machine")


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"ray.address {address!r}: expected HOST:PORT, ray://HOST:PORT, auto or null") from None


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` (auto: the one this node belongs to), or start a local Ray (None).

    A cluster that does not answer is a DetalError naming the address and the fix, not a traceback or a
    minute of retries. Once connected, the process stays connected (later rounds reuse it).
    """
    import ray

    if ray.is_initialized():
        return
    if address not in (None, "auto"):
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise DetalError(f"ray.address {address}: no Ray cluster answers there ({why}); {_FIX}") from None
    kwargs = {"include_dashboard": False} if address is None else {}
    # Ray's C++ core worker warns at every actor pool that a restarted actor needs its constructor arguments
    # (Ray Data holds them for the pass): one alarming line per round otherwise. Set it yourself to see more.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DetalError(f"ray.address {address or 'null'}: cannot join or start Ray ({first}); {_FIX}") from None
    from ray.data import DataContext

    DataContext.get_current().print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # per-pass progress and tuning hints: detal has its own


def _load_scorer(backend: str, weights: list, name: str, kwargs: dict):
    """Inside an actor: the round's weights from the object store to a local file, then backend.Scorer."""
    import importlib
    import tempfile

    import ray

    with tempfile.TemporaryDirectory(prefix="detal-ray-") as folder:  # the model is in memory once loaded
        path = Path(folder) / name
        path.write_bytes(ray.get(weights[0]))
        scorer = importlib.import_module(backend).Scorer(path, **kwargs)
    torch = sys.modules.get("torch")
    if torch is not None and kwargs.get("device") == "cpu":
        # Ultralytics sets cpu_count - 1 threads; an actor owns the CPUs Ray gave it
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return scorer


class _ScoreActor:
    """One Ray Data actor: loads the weights once, then predicts each batch of paths it is handed."""

    def __init__(self, backend: str, weights: list, name: str, kwargs: dict):
        self.scorer = _load_scorer(backend, weights, name, kwargs)
        self.batch = int(kwargs["batch"])

    def __call__(self, rows: dict) -> dict:
        starts, chunks = rows["start"], rows["paths"]
        # only the pool's last chunk can be short: put it last, so the Scorer's batches are the chunks
        order = sorted(range(len(starts)), key=lambda j: len(chunks[j]) != self.batch)
        paths: list[str] = []
        idx: list[int] = []
        for j in order:
            paths += [str(p) for p in chunks[j]]
            idx += range(int(starts[j]), int(starts[j]) + len(chunks[j]))
        return _columns(idx, list(self.scorer.iter_predictions(paths)))


_ARRAYS = ("boxes", "conf", "cls", "probs")


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


def _columns(idx: list[int], preds: list[Prediction]) -> dict:
    """Predictions as columns (Ray stores them as Arrow tensors: the driver gets views, no object per array)."""
    cols = {"idx": np.asarray(idx, np.int64), "width": np.array([p.width for p in preds], np.int64),
            "height": np.array([p.height for p in preds], np.int64),
            "error": np.array([p.error or "" for p in preds], dtype=object)}
    for name in _ARRAYS:
        cols[name] = _ragged([getattr(p, name) for p in preds])
    if any(p.feature is not None for p in preds):
        dim = next(p.feature for p in preds if p.feature is not None).shape
        cols["has_feature"] = np.array([p.feature is not None for p in preds])
        cols["feature"] = np.stack([np.zeros(dim, np.float32) if p.feature is None else p.feature for p in preds])
    if any(p.flip is not None for p in preds):
        cols["flip"] = _ragged([np.zeros(len(p.cls)) if p.flip is None else p.flip for p in preds])
    return cols


def _prediction(rows: dict, j: int, path: str) -> Prediction:
    pred = Prediction(Path(path), int(rows["width"][j]), int(rows["height"][j]),
                      *(np.asarray(rows[name][j]) for name in _ARRAYS), error=rows["error"][j] or None)
    if "feature" in rows and rows["has_feature"][j]:
        pred.feature = rows["feature"][j]
    if "flip" in rows and pred.ok:
        pred.flip = np.asarray(rows["flip"][j])
    return pred


def _names_task(backend: str, weights: list, name: str, kwargs: dict) -> tuple[str, ...]:
    return tuple(_load_scorer(backend, weights, name, kwargs).names)


class RayScorer:
    """The local Scorer's interface (names, iter_predictions, predict, close) over a Ray cluster.

    `ray`: the config's RayConfig (address, actors, cpus_per_actor, gpus_per_actor); the other keyword
    arguments are the local Scorer's and reach it unchanged, but for the device: an actor scores on the
    GPU Ray gave it (gpus_per_actor > 0) or on CPU.
    """

    def __init__(self, weights: Path | str, *, backend: str, ray, imgsz: int, batch: int, conf: float, iou: float,
                 workers: int, features: bool = False, flip: bool = False):
        import importlib

        weights = Path(weights)
        check = getattr(importlib.import_module(backend), "check_weights_file", None)
        if check is not None:
            check(weights)  # here, in one line, rather than inside every actor
        elif not weights.is_file():
            raise ConfigError(f"{weights}: weights file not found")
        self.backend, self.cfg = backend, ray
        self.batch = int(batch)
        device = "0" if ray.gpus_per_actor > 0 else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU
        self._kwargs = {"imgsz": imgsz, "device": device, "batch": self.batch, "conf": conf, "iou": iou,
                        "workers": workers, "features": features}
        if flip:
            self._kwargs["flip"] = True
        self._names: tuple[str, ...] | None = None
        self.duplicates = 0  # images Ray returned twice (a retried batch); dropped, counted for the record
        connect(ray.address)
        import ray as _ray

        self._weights = [_ray.put(weights.read_bytes())]  # in a list: Ray hands the reference over unresolved
        self._name = weights.name

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            import ray

            task = ray.remote(num_cpus=self.cfg.cpus_per_actor, num_gpus=self.cfg.gpus_per_actor)(_names_task)
            self._names = ray.get(task.remote(self.backend, self._weights, self._name, self._kwargs))
        return self._names

    def actors(self) -> int:
        """ray.actors, or as many as the cluster's CPUs (GPUs with gpus_per_actor) hold now."""
        if self.cfg.actors is not None:
            return int(self.cfg.actors)
        import ray

        res = ray.cluster_resources()
        if self.cfg.gpus_per_actor > 0:
            return max(1, int(res.get("GPU", 0) // self.cfg.gpus_per_actor))
        return max(1, int(res.get("CPU", 1) // self.cfg.cpus_per_actor))

    def _dataset(self, paths: list[str]):
        import pyarrow as pa
        import ray

        b, actors = self.batch, self.actors()
        starts = list(range(0, len(paths), b))
        # ~IMAGES_PER_BLOCK images a block, and at least two blocks per actor when the pass is short
        per_block = max(1, min(math.ceil(IMAGES_PER_BLOCK / b), len(starts) // (2 * actors)))
        actors = min(actors, math.ceil(len(starts) / per_block))  # no actor without a block to score
        tables = [pa.table({"start": pa.array(starts[j:j + per_block], pa.int64()),
                            "paths": pa.array([paths[s:s + b] for s in starts[j:j + per_block]], pa.list_(pa.string()))})
                  for j in range(0, len(starts), per_block)]
        ds = ray.data.from_arrow(tables)
        return ds.map_batches(
            _ScoreActor, batch_size=per_block, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
            fn_constructor_kwargs={"backend": self.backend, "weights": self._weights, "name": self._name,
                                   "kwargs": self._kwargs},
            num_cpus=self.cfg.cpus_per_actor, num_gpus=self.cfg.gpus_per_actor)

    def iter_predictions(self, images: Iterable[Path | str]) -> Iterator[Prediction]:
        """Predictions in input order, each image once; scored by the actors as the dataset streams."""
        import ray

        paths = [str(p) for p in images]
        if not paths:
            return
        pending: dict[int, tuple[dict, int]] = {}  # position -> (its block's columns, its row there)
        nxt = 0
        try:
            for rows in self._dataset(paths).iter_batches(batch_size=None, batch_format="numpy"):
                for j, i in enumerate(rows["idx"].tolist()):
                    if i < nxt or i in pending:
                        self.duplicates += 1
                        continue
                    pending[i] = (rows, j)
                while nxt in pending:
                    yield _prediction(*pending.pop(nxt), paths[nxt])
                    nxt += 1
        except ray.exceptions.RayError as exc:
            raise DetalError(f"scoring on Ray failed: {_first_line(exc)}; rerun, or set scoring.engine: local "
                             "(run with --debug for Ray's report)") from exc
        if nxt < len(paths):
            raise DetalError(f"scoring on Ray returned {nxt + len(pending)} of {len(paths)} images; rerun, or set "
                             "scoring.engine: local")
        if self.duplicates:
            log.info("Ray returned %d images twice (retried batches); each is kept once", self.duplicates)

    def predict(self, images: Iterable[Path | str]) -> list[Prediction]:
        return list(self.iter_predictions(images))

    def close(self) -> None:
        """Drop the weights from the object store; the actors ended with their pass."""
        self._weights = []

    def __enter__(self) -> "RayScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DetalError):
        return str(cause)
    text = str(cause or exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
