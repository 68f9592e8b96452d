"""Label-efficiency study (issue 11): does a selection strategy reach random's mAP with fewer labels?

Runs every strategy (arm) x seed of a config with detal's own driver (`detal.simulate.run_experiment`:
same seed set and val split for every arm of a seed, same training recipe), then prints, per arm, the
numbers of the report, computed by the report's own functions (`detal.report.stats`):

- final mAP50-95 (mean, sd over seeds) and the paired difference to random with its bootstrap 95% interval;
- the normalised area under the learning curve (mean mAP50-95 over the labelled-images range);
- labels needed vs random, in images AND in boxes, with a bootstrap 95% interval over seeds.

The ratio ("labels_saved_vs_random", images; "boxes ratio" in the table):

    ratio = N_strategy / N_random

N_strategy: the labelled images the strategy's mean learning curve (mean over seeds per round) needed
to first reach random's final mean mAP50-95, linearly interpolated between rounds; N_random: the same
for random's own curve (its final labelled count, or fewer if random peaked before its last round).
ratio = 1 - `stats.labels_saved(...).fraction`: 1.0 is "as many labels as random", 0.70 is the issue's
goal (30% fewer labels), "never" (`inf` on the last line) means the strategy never reached random's
final mAP in the rounds run. The interval is the same quantity on bootstrap resamples of the seeds'
curves (10,000, fixed seed): "never" (`ci_high=inf`) means some resamples never reached the target.
A ratio below 1 only counts as a saving when ci_high < 1. A point estimate at the FIRST round (flagged
"<=") may have needed even fewer.

The last line printed is always

    labels_saved_vs_random=<ratio> ci_low=<..> ci_high=<..> strategy=<name> dataset=<name>
        seconds_saved_vs_random=<ratio> seconds_vs_from_scratch=<ratio>

(one line) for the headline strategy. The seconds ratios are the same quantity on annotation seconds
(issue 23): every labelled image is shown its round model's pre-labels and costs the seconds of what the
annotator does to them (detal.cost, `cost:` in the config); `seconds_vs_from_scratch` compares the
strategy's seconds with random's images drawn from scratch (pre-labels and selection together). This is
for the headline strategy (`--headline`; default `recommended` when it is an arm, else the rule
`recommended` resolves to when that is an arm, else `mix`, else the first non-random arm: never the best
of several arms, which would be a selection bias).

Resuming: each (strategy, seed) arm is its own detal run folder,
`<output_dir>/<experiment>/arms/<strategy>-seed<S>/<experiment>/`, so a killed study resumes where it
stopped (finished rounds are kept, finished arms skipped), and seeds or strategies can be added later
without invalidating finished arms. Seed sets and selection RNGs depend on the seed (and strategy)
only, so this is the same experiment as one `detal simulate` run. Resume with the same settings,
including `--device`: detal refuses a run folder written under a different config. The combined
report (report.html, figures) goes to `<output_dir>/<experiment>/report/`.

    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --device 0
    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --seeds 0,1,2,3,4 --strategies random,mix
    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --report-only   # numbers of what is done

A variant arm runs a registered strategy under other settings, paired with the study's own random
arms (same seeds, experiment and val split; only the variant's arms are trained):

    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --strategies random \
        --arm mean=entropy_wide:scoring.reduction=mean --arm e10=random:schedule.epochs_per_round=10,schedule.total_epochs=50

`--profile` instead times ONE round of training (setup, per-epoch compute, data loading, checkpoint
writes), the evaluation and the scoring, for each `--variant` of `model.train_args`, interleaved
repeats, medians: where does a round's time go?

    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --profile --labelled 400 \\
        --epochs 5 --repeats 3 --variant base= --variant ram=cache:ram
    python tools/bench_label_efficiency.py -c configs/study-shapes.yaml --profile --variant n=arch:yolov8n.yaml \\
        --variant pico=arch:configs/models/yolov8-pico.yaml
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from detal.acquisition.selection import RECOMMENDED  # noqa: E402
from detal.config import Config, load_config  # noqa: E402
from detal.errors import BusyError, DetalError  # noqa: E402
from detal.report import load_runs, write_report  # noqa: E402
from detal.report import stats  # noqa: E402
from detal.report.verdict import NOTHING_LEARNED, nothing_learned  # noqa: E402

BASELINE = "random"


# ---------------------------------------------------------------- running

@dataclass(frozen=True)
class Variant:
    """A variant arm: a registered strategy run under other settings (`--arm NAME=STRATEGY:KEY=VALUE,...`).

    Its seeds, experiment name and val split are the study's, so it is paired with the study's random
    arms seed by seed; its own run folders (arms/<name>-seed<S>/) and fingerprint keep it apart.
    """

    name: str
    strategy: str
    cfg: Config  # the study's config with the variant's overrides


# settings that define the study itself: a variant changing them would not be paired with its arms
STUDY_KEYS = ("experiment", "output_dir", "seeds", "strategies", "data", "synth")


def parse_variant_arm(text: str, config_path, base_overrides: list[str], strategies) -> Variant:
    """`NAME=STRATEGY[:KEY=VALUE,KEY=VALUE...]` -> Variant (DetalError with the fix for a bad one)."""
    import re

    name, sep, rest = text.partition("=")
    strategy, _, sets = rest.partition(":")
    fix = "write it as NAME=STRATEGY[:KEY=VALUE,...], e.g. mean=entropy_wide:scoring.reduction=mean"
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not strategy:
        raise DetalError(f"--arm {text!r}: {fix}")
    if name in strategies:
        raise DetalError(f"--arm {text!r}: {name!r} is already an arm of this study; give the variant another name")
    pairs = [kv.strip() for kv in sets.split(",") if kv.strip()] if sets else []
    for kv in pairs:
        key = kv.partition("=")[0].strip()
        if "=" not in kv:
            raise DetalError(f"--arm {text!r}: {kv!r} has no '='; {fix}")
        if key.split(".")[0] in STUDY_KEYS:
            raise DetalError(f"--arm {text!r}: {key} defines the study, not an arm; set it for every arm with --set")
    cfg = load_config(config_path, [*base_overrides, f"strategies=[{strategy}]", *pairs])
    return Variant(name, strategy, cfg)


def arm_config(cfg: Config, strategy: str, seed: int, name: str | None = None) -> Config:
    """The config of one arm and seed: its own run folder under the study's, same experiment name.

    `name` (a variant arm's) names the folder instead of the strategy.
    """
    out = cfg.output_dir / cfg.experiment / "arms" / f"{name or strategy}-seed{seed}"
    return cfg.model_copy(update={"output_dir": out, "seeds": (seed,), "strategies": (strategy,)})


def study_arms(cfg: Config, variants=()) -> list[tuple[str, Config]]:
    """(arm name, arm config) for every arm x seed: seeds outer, so each seed completes a paired set."""
    out = []
    for seed in cfg.seeds:
        out += [(s, arm_config(cfg, s, seed)) for s in cfg.strategies]
        out += [(v.name, arm_config(v.cfg, v.strategy, seed, v.name)) for v in variants]
    return out


def parallel_order(named: list[tuple[str, Config]]) -> list[tuple[str, Config]]:
    """study_arms' list with arms outer and seeds inner, for `--jobs` > 1.

    Every arm of a seed reuses the first round one of them trains (detal.shared_training); seeds outer
    starts two arms of one seed together, and the second waits idle for the first one's first round
    (91 s per seed in the 2026-12-02 timed study). Arms outer starts different seeds together, and by
    the time a seed's second arm starts its first round is long trained.
    """
    by_seed: dict[int, list] = {}
    for item in named:
        by_seed.setdefault(item[1].seeds[0], []).append(item)
    groups = list(by_seed.values())
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]


def arm_names(cfg: Config, variants=()) -> list[str]:
    return [*cfg.strategies, *(v.name for v in variants)]


def arm_dirs(cfg: Config, variants=()) -> tuple[list[Path], dict[Path, str]]:
    """Run folders of the arms that have finished at least one round, and the variant folders' names."""
    arms = [(name, a.run_dir) for name, a in study_arms(cfg, variants) if (a.run_dir / "metrics.csv").is_file()]
    names = {v.name for v in variants}
    return [d for _, d in arms], {d: name for name, d in arms if name in names}


def parallel_threads(cfg: Config, jobs: int) -> Config:
    """Each of `jobs` parallel arms gets cores // jobs training threads (unless model.threads is set).

    On a 2-core CPU, two arms at one thread each finish 1.5x more image-epochs per second than one arm
    at two threads (docs/label-efficiency.md): a small model's convolutions do not scale to 2 threads.
    Threads are not part of the experiment's fingerprint, so a study may resume with another --jobs.
    """
    import os

    if jobs <= 1 or cfg.model.threads is not None:
        return cfg
    per = max(1, (os.cpu_count() or 1) // jobs)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"threads": per})})


def run_study(cfg: Config, *, backend=None, quiet: bool = False, report: bool = True, jobs: int = 1,
              variants=()) -> pd.DataFrame:
    """Run (or resume) every arm x seed of `cfg` (and its `variants`); return the arms' metrics table.

    Seeds outer, strategies inner: after each seed every arm has a paired result (with `jobs` > 1 arms
    outer, seeds inner: `parallel_order`). `backend` is passed
    to `run_experiment` (a fake in tests, the real detector when None). `jobs` > 1 runs that many arms
    at once in separate processes (each arm is its own run folder with its own lock, so they never
    share a file); the first failure stops the study after the running arms end. An arm whose lock
    another run holds (a second invocation of the same study) is left to that run, the others go on;
    their errors are in `df.attrs["busy"]`.
    """
    from detal.simulate import run_experiment

    if BASELINE not in cfg.strategies:
        raise DetalError(f"strategies: {list(cfg.strategies)} has no '{BASELINE}' arm to compare against; add it")
    named = study_arms(cfg, variants) if jobs <= 1 else parallel_order(study_arms(cfg, variants))
    arms = [a for _, a in named]
    # a variant arm's progress lines carry its name, not its strategy's
    names = ["" if n == a.strategies[0] else n for n, a in named]
    shared = cfg.output_dir / cfg.experiment / "shared"  # every arm's first round is one training per seed
    busy: list[str] = []
    if jobs <= 1:
        for arm, name in zip(arms, names):
            try:
                run_experiment(arm, quiet=quiet, backend=backend, shared_dir=shared, name=name)
            except BusyError as exc:
                busy.append(str(exc))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from detal.progress import Progress
        from detal.simulate import prepare_dataset

        prepare_dataset(cfg, Progress(quiet))  # generate the data once, before the arms race to do it
        arms = [parallel_threads(a, jobs) for a in arms]
        backend_name = getattr(backend, "__name__", backend)  # a module does not pickle; its import name does
        # spawn: a fresh interpreter per worker (fork would copy torch's thread pools and locks)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_experiment, a, quiet=quiet, backend=backend_name, shared_dir=shared, name=n)
                       for a, n in zip(arms, names)]
            for f in as_completed(futures):
                exc = f.exception()
                if isinstance(exc, BusyError):
                    busy.append(str(exc))
                elif exc is not None:
                    for g in futures:
                        g.cancel()
                    raise exc
    df = study_metrics(cfg, variants)
    if report:
        write_study_report(cfg, variants)
    df.attrs["busy"] = busy
    return df


def write_study_report(cfg: Config, variants=()) -> None:
    dirs, labels = arm_dirs(cfg, variants)
    if dirs:
        write_report(dirs, out=cfg.output_dir / cfg.experiment / "report", labels=labels)


def study_metrics(cfg: Config, variants=()) -> pd.DataFrame:
    """metrics.csv of every arm folder that has results, variant arms under their names (empty if none)."""
    dirs, labels = arm_dirs(cfg, variants)
    if not dirs:
        return pd.DataFrame(columns=["experiment", "strategy", "seed", "round"])
    df = load_runs(dirs, labels).metrics
    df = df[df["strategy"].isin(arm_names(cfg, variants)) & df["seed"].isin(cfg.seeds)]
    return df.drop(columns=["source"], errors="ignore").reset_index(drop=True)


# ---------------------------------------------------------------- numbers

def _num(x: float, fmt: str = ".3f") -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return format(x, fmt)


def headline_strategy(strategies, requested: str | None = None) -> str | None:
    others = [s for s in strategies if s != BASELINE]
    if requested:
        if requested not in others:
            raise DetalError(f"--headline {requested!r} is not a non-random arm of this study ({', '.join(others)})")
        return requested
    for name in ("recommended", RECOMMENDED, "mix"):
        if name in others:
            return name
    return others[0] if others else None


def study_rows(df: pd.DataFrame) -> list[dict]:
    """One dict per strategy: summary_table's numbers plus the paired comparison with random."""
    table = stats.summary_table(df)
    rows = []
    for s in table.index:
        t = table.loc[s]
        row = {"strategy": s, "seeds": int(t["seeds"]), "round": int(t["rounds"]), "images": int(t["labeled_images"]),
               "boxes": int(t["labeled_boxes"]), "map": float(t["final_map50_95"]),
               "map_sd": float(t["final_map50_95_sd"]), "auc": float(t["auc_map50_95"]),
               "auc_sd": float(t["auc_map50_95_sd"]), "cmp": None}
        if s != BASELINE and BASELINE in table.index:
            c = stats.compare(df, s, BASELINE)
            row.update(cmp=c, images_ratio=stats.Ratio.of(c.images), boxes_ratio=stats.Ratio.of(c.boxes),
                       seconds_ratio=stats.Ratio.of(c.seconds), scratch_ratio=stats.Ratio.of(c.scratch))
        rows.append(row)
    order = {BASELINE: -1}
    return sorted(rows, key=lambda r: order.get(r["strategy"], 0))


def time_split(df: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per round by strategy: training, evaluation, scoring + selection, and `reused`.

    A first round reused from another arm of its seed (detal.shared_training) records 0 s of training:
    it is counted in `reused`, and the training mean is over the rounds the arm trained itself, so that
    it stays the cost of a round whatever the arms' order.
    """
    cols = ["train_seconds", "eval_seconds", "select_seconds"]
    g = df.groupby("strategy")
    out = g[cols].mean()
    own = df["train_seconds"] > 0
    out["train_seconds"] = df[own].groupby("strategy")["train_seconds"].mean().reindex(out.index)
    out["reused"] = (~own).groupby(df["strategy"]).sum().astype(int)
    return out.round(1)


def format_study(df: pd.DataFrame, dataset: str, headline: str | None = None, strategies=None) -> list[str]:
    """The printed lines; the last one is the machine-readable `labels_saved_vs_random=...` line.

    `strategies`: the study's arms (default: those in `df`), from which the headline strategy is chosen;
    an arm without results yet gets `nan` on the last line.
    """
    if df.empty:
        name = headline_strategy(strategies, headline) if strategies else None
        return ["no finished round yet",
                f"labels_saved_vs_random=nan ci_low=nan ci_high=nan strategy={name or 'none'} dataset={dataset} "
                "seconds_saved_vs_random=nan seconds_vs_from_scratch=nan"]
    rows = study_rows(df)
    lines = [f"dataset {dataset}: {df['seed'].nunique()} seed(s), strategies {', '.join(r['strategy'] for r in rows)}",
             "ratio = cost (annotation seconds, images, boxes) the strategy needed to reach random's final mAP50-95 / "
             "the cost random needed (< 1 saves; goal <= 0.70 with ci_high < 1); 'vs scratch': its seconds against "
             "random's images drawn from scratch (goal <= 0.35)", ""]
    base = next((r for r in rows if r["strategy"] == BASELINE), None)
    if base is not None and base["map"] < NOTHING_LEARNED:
        lines[-1:-1] = ["warning: " + nothing_learned(BASELINE, base["map"]).text]
    w = max([12, *(len(r["strategy"]) for r in rows)])
    head = (f"{'strategy':<{w}} {'seeds':>5} {'round':>5} {'images':>6} {'boxes':>6} {'final mAP50-95':>15} "
            f"{'AUC':>13} {'diff vs random [95% CI]':>26} {'seconds ratio [95% CI]':>24} "
            f"{'vs scratch [95% CI]':>24} {'images ratio [95% CI]':>24} {'boxes ratio [95% CI]':>24}")
    lines.append(head)
    for r in rows:
        diff = ims = bxs = secs = scr = ""
        if r["cmp"] is not None:
            d = r["cmp"].diff
            diff = f"{d.estimate:+.3f}" + ("" if math.isnan(d.low) else f" [{d.low:+.3f}, {d.high:+.3f}]")
            ims, bxs = r["images_ratio"].text(), r["boxes_ratio"].text()
            secs, scr = r["seconds_ratio"].text(), r["scratch_ratio"].text()
        sd = "" if math.isnan(r["map_sd"]) else f" ({r['map_sd']:.3f})"
        auc_sd = "" if math.isnan(r["auc_sd"]) else f" ({r['auc_sd']:.3f})"
        lines.append(f"{r['strategy']:<{w}} {r['seeds']:>5} {r['round']:>5} {r['images']:>6} {r['boxes']:>6} "
                     f"{(_num(r['map']) + sd):>15} {(_num(r['auc']) + auc_sd):>13} {diff:>26} {secs:>24} {scr:>24} "
                     f"{ims:>24} {bxs:>24}")
    lines += ["", "mean seconds per round (train / eval / score+select+pre-labels; train over the rounds an arm trained, "
                  "not the first rounds it reused from another arm of its seed):"]
    for s, t in time_split(df).iterrows():
        reused = f"   ({int(t['reused'])} first rounds reused)" if t["reused"] else ""
        lines.append(f"  {s:<{w}} {t['train_seconds']:7.1f} {t['eval_seconds']:6.1f} {t['select_seconds']:6.1f}"
                     + reused)
    name = headline_strategy(list(strategies or [r["strategy"] for r in rows]), headline)
    hit = next((r for r in rows if r["strategy"] == name and r["cmp"] is not None), None)
    saving = stats.prelabel_saving(df)
    if not saving.empty:
        lines += ["", "pre-labels: hours of the labelled images at the last round, with pre-labels / from scratch:"]
        lines += [f"  {s:<{w}} {t['hours']:7.2f} h / {t['scratch_hours']:7.2f} h = {t['ratio']:.3f}"
                  for s, t in saving.iterrows()]
    if hit is None:
        lines.append(f"labels_saved_vs_random=nan ci_low=nan ci_high=nan strategy={name or 'none'} dataset={dataset} "
                     "seconds_saved_vs_random=nan seconds_vs_from_scratch=nan")
    else:
        q = hit["images_ratio"]
        lines.append(f"labels_saved_vs_random={_num(q.value)} ci_low={_num(q.low)} ci_high={_num(q.high)} "
                     f"strategy={name} dataset={dataset} seconds_saved_vs_random={_num(hit['seconds_ratio'].value)} "
                     f"seconds_vs_from_scratch={_num(hit['scratch_ratio'].value)}")
    return lines


def dataset_name(cfg: Config) -> str:
    return cfg.data.resolve().parent.name


# ---------------------------------------------------------------- profiling one round

class _Clock:
    """Ultralytics trainer callbacks -> wall-clock split of one training run."""

    EVENTS = ("on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_epoch_start",
              "on_train_batch_start", "on_train_batch_end", "on_train_epoch_end", "on_model_save",
              "on_fit_epoch_end", "on_train_end")

    def __init__(self):
        self.t: list[tuple[str, float]] = []

    def install(self):
        from ultralytics.utils.callbacks import base

        for e in self.EVENTS:
            base.default_callbacks[e].append(self._hook(e))

    def _hook(self, event):
        def cb(_trainer):
            self.t.append((event, time.perf_counter()))
        cb.__qualname__ = f"detal_profile_{event}"
        return cb

    def split(self, t_start: float, t_end: float) -> dict[str, float]:
        """Seconds by part: setup, compute (batches), data (waiting for the next batch), save, other."""
        out = dict.fromkeys(("setup", "compute", "data", "save", "epoch_other", "teardown"), 0.0)
        first = {}
        for e, t in self.t:
            first.setdefault(e, t)
        out["setup"] = first["on_train_start"] - t_start
        prev = None  # the last event time inside an epoch
        for e, t in self.t:
            if e == "on_train_epoch_start":
                prev = t
            elif e == "on_train_batch_start":
                out["data"] += t - prev  # the loader producing this batch (the first one also builds the iterator)
                prev = t
            elif e == "on_train_batch_end":
                out["compute"] += t - prev
                prev = t
            elif e == "on_train_epoch_end":
                out["epoch_other"] += t - prev
                prev = t
            elif e == "on_model_save":
                out["save"] += t - prev
                prev = t
            elif e == "on_fit_epoch_end":
                out["epoch_other"] += t - prev
                prev = None
        last_fit = [t for e, t in self.t if e == "on_fit_epoch_end"][-1]
        out["teardown"] = t_end - last_fit
        self.t.clear()
        return out


def _parse_variant(text: str) -> tuple[str, dict]:
    """'name=key:value,key:value' -> (name, train_args additions); values parsed as YAML."""
    import yaml

    name, _, body = text.partition("=")
    extra = {}
    for item in filter(None, body.split(",")):
        k, _, v = item.partition(":")
        extra[k.strip()] = yaml.safe_load(v)
    return name.strip(), extra


def profile_round(cfg: Config, variants: list[str], labelled: int, epochs: int, repeats: int,
                  out_dir: Path, score: int) -> list[str]:
    """Time one cold-start round (train `epochs` on `labelled` pool images, evaluate, score `score` images)
    per variant, interleaved over `repeats`; medians per part. Also reports each variant's mAP50-95."""
    import numpy as np

    from detal import detector
    from detal.data import write_split_yaml
    from detal.scoring import ScoringPass, make_scorer
    from detal.simulate import prepare_dataset
    from detal.progress import Progress

    ds = prepare_dataset(cfg, Progress(quiet=True))
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(len(ds.train), size=min(labelled, len(ds.train)), replace=False))
    rest = np.setdiff1d(np.arange(len(ds.train)), ids)
    score_ids = rest[:score]
    data_yaml = write_split_yaml(out_dir / "data.yaml", [ds.train[i] for i in ids], list(ds.val), ds.names)
    device = detector.resolve_device(cfg.model.device)
    threads = cfg.model.threads if cfg.model.threads is not None else (
        __import__("os").cpu_count() if cfg.model.workers == 0 else None)
    clock = _Clock()
    clock.install()
    train_mod = importlib.import_module("detal.detector.train")  # the module (detal.detector.train is a function)
    save_every = train_mod.SAVE_EVERY
    parsed = [_parse_variant(v) for v in variants]
    results: dict[str, list[dict]] = {n: [] for n, _ in parsed}
    for rep in range(repeats):
        for name, extra in parsed:
            args = {**dict(cfg.model.train_args), **extra}
            arch = args.pop("arch", cfg.model.arch)  # not train() settings: the model, torch threads, and
            n_threads = args.pop("threads", threads)  # epochs between checkpoints (1 = stock Ultralytics)
            train_mod.SAVE_EVERY = int(args.pop("save_every", save_every))
            rd = out_dir / f"{name}-{rep}"
            t0 = time.perf_counter()
            tr = detector.train(arch, data_yaml, epochs, rd, imgsz=cfg.model.imgsz, batch=cfg.model.batch,
                                device=device, seed=0, workers=cfg.model.workers, extra=args, threads=n_threads)
            t1 = time.perf_counter()
            part = clock.split(t0, t1)
            ev = detector.evaluate(tr.weights, data_yaml, imgsz=cfg.model.imgsz, batch=cfg.scoring.batch, device=device)
            t2 = time.perf_counter()
            scorer = make_scorer(cfg, tr.weights, device=device, features=False, backend=detector)
            sp = ScoringPass(scorer, ds.train, cfg.scoring, ds.names, audit=False)
            sp(score_ids)
            scorer.close()
            t3 = time.perf_counter()
            part.update(train=t1 - t0, eval=t2 - t1, score=t3 - t2, round=t3 - t0, map50_95=ev.map50_95)
            results[name].append(part)
            print(f"[{name} rep {rep}] " + " ".join(f"{k} {v:.3f}" for k, v in part.items()), flush=True)
    keys = ("round", "train", "setup", "compute", "data", "save", "epoch_other", "teardown", "eval", "score")
    lines = [f"one round, cold start: {len(ids)} labelled images, {epochs} epochs, val {len(ds.val)} images, "
             f"scoring {len(score_ids)} images, imgsz {cfg.model.imgsz}, batch {cfg.model.batch}, device {device}, "
             f"{repeats} interleaved repeats, medians in seconds",
             f"{'variant':<16}" + "".join(f"{k:>12}" for k in keys) + f"{'mAP50-95':>20}"]
    base = None
    for name, _ in parsed:
        med = {k: statistics.median(r[k] for r in results[name]) for k in keys}
        maps = ", ".join(f"{r['map50_95']:.4f}" for r in results[name])
        lines.append(f"{name:<16}" + "".join(f"{med[k]:12.2f}" for k in keys) + f"  {maps}")
        base = base or med
        if med is not base:
            lines.append(f"{'':<16}round time vs {parsed[0][0]}: {med['round'] / base['round']:.3f}x")
    per_epoch = {n: statistics.median((r["compute"] + r["data"] + r["save"] + r["epoch_other"]) / epochs
                                      for r in results[n]) for n, _ in parsed}
    lines.append("per epoch (compute + data + save + other): " + ", ".join(f"{n} {v:.2f} s" for n, v in per_epoch.items()))
    (out_dir / "profile.json").write_text(json.dumps(results, indent=1))
    train_mod.SAVE_EVERY = save_every
    return lines


# ---------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", required=True, help="study config, e.g. configs/study-shapes.yaml")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: the config's)")
    p.add_argument("--strategies", help="comma-separated arms, e.g. random,entropy,mix (must include random)")
    p.add_argument("--device", help="model.device: auto | cpu | 0 | cuda:0 ... (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--arm", action="append", default=[], metavar="NAME=STRATEGY[:KEY=VALUE,...]",
                   help="a variant arm: STRATEGY with config overrides, paired with the study's random arms, "
                        "e.g. mean=entropy_wide:scoring.reduction=mean (repeatable)")
    p.add_argument("--headline", help=f"arm on the last line (default: recommended, else {RECOMMENDED} "
                                          "(the rule it selects with), else mix, else first)")
    p.add_argument("--report-only", action="store_true", help="train nothing: numbers of the finished rounds")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="arms run at once, each in its own process with cores/jobs threads (default 1; "
                        "2 on a 2-core CPU is ~1.5x faster for small models)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-round progress lines")
    g = p.add_argument_group("profiling one round (--profile)")
    g.add_argument("--profile", action="store_true", help="time one round per --variant instead of running the study")
    g.add_argument("--variant", action="append", default=[], metavar="NAME=KEY:VALUE,...",
                   help="train_args added to the config's, e.g. ram=cache:ram (default: base=); three keys are "
                        "not train_args: arch:<yaml or .pt> (model.arch), threads:<n> (training threads) and "
                        "save_every:<n> (epochs between checkpoints; 1 = stock Ultralytics)")
    g.add_argument("--labelled", type=int, default=400, help="labelled images trained on (default 400)")
    g.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    g.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant (default 3)")
    g.add_argument("--score", type=int, default=400, help="unlabelled images scored (default 400)")
    return p


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of arms at once, 1 or more (e.g. 2)")
    return n


def overrides(args) -> list[str]:
    out = list(args.set)
    if args.seeds:
        out.append(f"seeds=[{args.seeds}]")
    if args.strategies:
        out.append(f"strategies=[{args.strategies}]")
    if args.device:
        out.append(f"model.device={args.device}")
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, overrides(args))
        variants = [parse_variant_arm(a, args.config, overrides(args), cfg.strategies) for a in args.arm]
        if len({v.name for v in variants}) < len(variants):
            raise DetalError("--arm: two variant arms share a name; give each its own")
        if args.profile:
            out = cfg.output_dir / cfg.experiment / "profile"
            for line in profile_round(cfg, args.variant or ["base="], args.labelled, args.epochs, args.repeats,
                                      out, args.score):
                print(line)
            return 0
        if args.report_only:
            df = study_metrics(cfg, variants)
            write_study_report(cfg, variants)
            wall = None
        else:
            t0 = time.perf_counter()
            df = run_study(cfg, quiet=args.quiet, jobs=args.jobs, variants=variants)
            wall = time.perf_counter() - t0
        busy = df.attrs.get("busy", [])  # arms another run holds (none for --report-only)
        lines = format_study(df, dataset_name(cfg), args.headline, arm_names(cfg, variants))
        if wall is not None:  # this invocation only: a resumed study counts what was left
            n_arms = len(study_arms(cfg, variants))
            lines.insert(-1, f"wall clock of this run: {wall / 60:.1f} min ({n_arms} arms, --jobs {args.jobs})")
    except DetalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for msg in busy:  # the table holds what had finished; these arms belong to the other run
        print(f"not run here: {msg}", file=sys.stderr)
    print("\n".join(lines))
    return 1 if busy else 0


if __name__ == "__main__":
    sys.exit(main())
