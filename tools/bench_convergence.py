"""Is a study's last round trained close to convergence? Retrain it longer and compare (issue 11, point 2).

For each seed of one finished arm of a label-efficiency study (tools/bench_label_efficiency.py), take
the last round's labelled set and val split (roundR/data.yaml) and the previous round's weights (warm
start, as the study trains), train `--factor` x that round's epochs, and evaluate. If the longer
training gains little, the round was close to convergence for its labelled-set size, and the gap
between rounds measures the data, not the recipe.

Prints a row per seed, then the paired mean gain with its 95% bootstrap interval over seeds, and last:
  convergence_gain=<mean> ci_low=<..> ci_high=<..> arm=<name> factor=<k> round=<R> dataset=<name>

  python tools/bench_convergence.py -c configs/study-shapes-steps.yaml --arm random --seeds 0,1,2

Resumes: a seed whose longer training finished (convergence/<arm>-seed<S>-x<k>/result.json) is not
trained again.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from detal.config import Config, load_config  # noqa: E402
from detal.data import atomic_write_text  # noqa: E402
from detal.errors import DetalError, tool_main  # noqa: E402
from detal.report import stats  # noqa: E402


@functools.lru_cache(maxsize=1)
def _harness():  # loaded once: it is a script beside this one, not a package module
    spec = importlib.util.spec_from_file_location("bench_label_efficiency", ROOT / "tools" / "bench_label_efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


def convergence_rows(cfg: Config, arm: str, factor: int, *, backend=None, quiet: bool = False) -> list[dict]:
    """One row per seed of `arm` (a strategy of cfg): the last round's recorded mAP and the longer one's."""
    if backend is None:
        from detal import detector as backend
    if arm not in cfg.strategies:
        raise DetalError(f"--arm {arm}: not an arm of {cfg.experiment} (its strategies: {', '.join(cfg.strategies)})")
    harness = _harness()
    device = backend.resolve_device(cfg.model.device)
    rows = []
    for seed in cfg.seeds:
        a = harness.arm_config(cfg, arm, seed)
        metrics = a.run_dir / "metrics.csv"
        if not metrics.is_file():
            raise DetalError(f"{a.run_dir}: no finished round of arm {arm}, seed {seed}; run the study first")
        m = pd.read_csv(metrics).sort_values("round")
        last = m.iloc[-1]
        r = int(last["round"])
        if r < 2 or r < cfg.schedule.rounds:
            raise DetalError(f"{a.run_dir}: arm {arm}, seed {seed} has finished {r} of {cfg.schedule.rounds} "
                             "rounds; finish the study first")
        epochs = int(last["epochs_trained"] - m.iloc[-2]["epochs_trained"])
        arm_dir = a.run_dir / f"seed{seed}" / arm
        data_yaml, start = arm_dir / f"round{r}" / "data.yaml", arm_dir / f"round{r - 1}" / "weights" / "last.pt"
        for p in (data_yaml, start):
            if not p.is_file():
                raise DetalError(f"{p}: missing; the arm's run folder is incomplete (re-run the study)")
        out = cfg.output_dir / cfg.experiment / "convergence" / f"{arm}-seed{seed}-x{factor}"
        done = out / "result.json"
        if done.is_file():
            res = json.loads(done.read_text())
        else:
            if not quiet:
                print(f"[seed {seed} | {arm}] round {r}: training {factor * epochs} epochs "
                      f"(recorded: {epochs}) on {int(last['labeled_images'])} images", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            tr = backend.train(start, data_yaml, factor * epochs, out, imgsz=cfg.model.imgsz, batch=cfg.model.batch,
                               device=device, seed=seed, workers=cfg.model.workers, extra=dict(cfg.model.train_args),
                               threads=cfg.model.threads)
            ev = backend.evaluate(tr.weights, data_yaml, imgsz=cfg.model.imgsz, batch=cfg.scoring.batch, device=device)
            res = {"epochs": tr.epochs, "map50_95": ev.map50_95, "map50": ev.map50,
                   "seconds": round(time.perf_counter() - t0, 1)}
            atomic_write_text(done, json.dumps(res))
        rows.append({"seed": seed, "round": r, "labeled_images": int(last["labeled_images"]), "epochs": epochs,
                     "map50_95": float(last["map50_95"]), "longer_epochs": int(res["epochs"]),
                     "longer_map50_95": float(res["map50_95"]), "gain": float(res["map50_95"]) - float(last["map50_95"]),
                     "seconds": res["seconds"]})
    return rows


def format_rows(rows: list[dict], arm: str, factor: int, dataset: str) -> list[str]:
    df = pd.DataFrame(rows)
    lines = [f"{'seed':>4} {'round':>5} {'images':>6} {'epochs':>6} {'mAP50-95':>8} {'x' + str(factor) + ' epochs':>10} "
             f"{'mAP50-95':>8} {'gain':>7} {'seconds':>7}"]
    lines += [f"{r.seed:>4} {r.round:>5} {r.labeled_images:>6} {r.epochs:>6} {r.map50_95:>8.3f} {r.longer_epochs:>10} "
              f"{r.longer_map50_95:>8.3f} {r.gain:>+7.3f} {r.seconds:>7.0f}" for r in df.itertuples()]
    ci = stats.paired_bootstrap(df["gain"].to_numpy())
    lines.append(f"mean gain from {factor}x the epochs: {df['gain'].mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] "
                 f"over {len(df)} seeds (paired bootstrap, 95%)")
    lines.append(f"convergence_gain={df['gain'].mean():.4f} ci_low={ci.low:.4f} ci_high={ci.high:.4f} arm={arm} "
                 f"factor={factor} round={int(df['round'].iloc[0])} dataset={dataset}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", required=True, help="the study's config, e.g. configs/study-shapes-steps.yaml")
    p.add_argument("--arm", default="random", help="a finished arm of the study (default random)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    p.add_argument("--factor", type=int, default=2, help="epochs of the longer training, x the round's (default 2)")
    p.add_argument("--device", help="model.device (default: the config's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (as the study)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    over = list(args.set) + ([f"seeds=[{args.seeds}]"] if args.seeds else []) + (
        [f"model.device={args.device}"] if args.device else [])

    def lines() -> list[str]:
        if args.factor < 2:
            raise DetalError(f"--factor {args.factor}: give 2 or more (x the round's epochs)")
        cfg = load_config(args.config, over)
        rows = convergence_rows(cfg, args.arm, args.factor, quiet=args.quiet)
        return format_rows(rows, args.arm, args.factor, _harness().dataset_name(cfg))

    return tool_main(lines)


if __name__ == "__main__":
    sys.exit(main())
