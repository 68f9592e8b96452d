"""Compare finished arms ACROSS label-efficiency studies: the same rule under two recipes, or a rule under
one recipe against random under another (issue 11). bench_label_efficiency.py pairs arms inside one study;
this pairs arms of studies that share data, val split and seeds but not the recipe.

Each ARM is LABEL=EXPERIMENT:STRATEGY, read from <runs>/<EXPERIMENT>/arms/<STRATEGY>-seed<S>/<EXPERIMENT>/
for every seed in --seeds. EXPERIMENT may be A+B: each seed is read from the first of A, B that has it
(one recipe whose seeds were run in two study folders, e.g. seeds 0-2 in one and 3-4 in another). Every arm is compared with every arm listed after it, paired over the seeds,
on the rounds both finished: images and boxes needed to reach the later arm's final mAP50-95 (ratio
with its 95% bootstrap interval, as the harness prints it) and the final mAP50-95 difference.

  python tools/compare_recipes.py --seeds 0,1,2 ew40=study-shapes-40ep:entropy_wide \\
      random40=study-shapes-40ep:random random20=study-shapes-timed:random

It reads only: nothing is trained. A pairing across recipes says what the recipe is worth in labels; it
says nothing about which rule is better under one recipe (that is the harness's comparison).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from detal.errors import DetalError, tool_main  # noqa: E402
from detal.report import load_runs, stats  # noqa: E402


@dataclass(frozen=True)
class ArmRef:
    label: str
    experiment: str
    strategy: str

    @classmethod
    def parse(cls, text: str) -> "ArmRef":
        label, eq, rest = text.partition("=")
        experiment, colon, strategy = rest.partition(":")
        if not (eq and colon and label and strategy) or "/" in label or not all(experiment.split("+")):
            raise DetalError(f"arm {text!r}: give LABEL=EXPERIMENT:STRATEGY, e.g. random40=study-shapes-40ep:random")
        return cls(label, experiment, strategy)

    def run_dir(self, runs: Path, seed: int) -> Path:
        """The seed's run folder in the first of the experiments that has its metrics (else the first's)."""
        dirs = [runs / e / "arms" / f"{self.strategy}-seed{seed}" / e for e in self.experiment.split("+")]
        return next((d for d in dirs if (d / "metrics.csv").is_file()), dirs[0])


def load_arms(arms: list[ArmRef], seeds: list[int], runs: Path) -> pd.DataFrame:
    """The arms' metrics, one strategy name (the label) per arm, as one table the paired statistics read."""
    if len({a.label for a in arms}) < len(arms):
        raise DetalError("two arms share a label; give each its own")
    dirs, labels = [], {}
    for a in arms:
        for s in seeds:
            d = a.run_dir(runs, s)
            if not (d / "metrics.csv").is_file():
                raise DetalError(f"{d}: no metrics.csv; run the study first (tools/bench_label_efficiency.py with "
                                 f"--set experiment={a.experiment}) or drop seed {s} from --seeds")
            dirs.append(d)
            labels[d] = a.label
    # one pseudo-experiment: the statistics refuse to mix experiments by accident; here it is the point
    return load_runs(dirs, labels).metrics.assign(experiment="compare")


def compare_lines(df: pd.DataFrame, labels: list[str]) -> list[str]:
    ratio = stats.Ratio.of
    lines = [f"{'arm':<16}{'against':<16}{'seeds':>6}  {'images needed [95% CI]':<26}{'boxes needed [95% CI]':<26}"
             "final diff [95% CI]"]
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            images = ratio(stats.labels_saved(df, a, b))
            boxes = ratio(stats.labels_saved(df, a, b, x="labeled_boxes"))
            diffs = stats.paired_diffs(df, a, b)
            ci = stats.paired_bootstrap(diffs.to_numpy())
            lines.append(f"{a:<16}{b:<16}{len(diffs):>6}  {images.text():<26}{boxes.text():<26}"
                         f"{diffs.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("arms", nargs="+", metavar="LABEL=EXPERIMENT:STRATEGY", help="two or more finished arms")
    p.add_argument("--seeds", required=True, help="comma-separated seeds every arm ran, e.g. 0,1,2")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="the studies' output_dir (default runs)")
    args = p.parse_args(argv)

    def lines() -> list[str]:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise DetalError(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
        arms = [ArmRef.parse(a) for a in args.arms]
        if len(arms) < 2 or not seeds:
            raise DetalError("give at least two arms and one seed")
        return compare_lines(load_arms(arms, seeds, args.runs), [a.label for a in arms])

    return tool_main(lines)


if __name__ == "__main__":
    sys.exit(main())
