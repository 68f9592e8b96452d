"""The command line: help for every command, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from detal.cli import build_parser, main


def _commands(parser=None, prefix=""):
    """Every (sub)command parser of the tree, labelstudio's actions included, as ('labelstudio pull', parser)."""
    parser = parser or build_parser()
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, p in action.choices.items():
                yield f"{prefix}{name}", p, helps.get(name)
                yield from _commands(p, f"{prefix}{name} ")


def test_every_command_and_option_has_help(capsys):
    cmds = list(_commands())
    assert {"synth", "simulate", "check", "report", "score", "labelstudio serve", "labelstudio pull",
            "cost fit"} <= {c for c, *_ in cmds}
    for name, p, summary in cmds:
        assert summary and len(summary) > 10, f"detal {name} has no one-line help in `detal --help`"
        assert p.description and len(p.description) > 20, f"detal {name} has no description"
        for action in p._actions:
            if action.dest != "help" and action.option_strings:
                assert action.help, f"detal {name} {action.option_strings[0]} has no help text"


@pytest.mark.parametrize("cmd", ["synth", "simulate", "check", "report", "score", "labelstudio"])
def test_command_help_exits_zero(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert f"usage: detal {cmd}" in capsys.readouterr().out


def test_help_is_fast_and_light():
    # --help must not import torch/ultralytics (heavy imports live inside the handlers)
    code = "import sys; from detal.cli import build_parser; build_parser(); print('torch' in sys.modules, 'ultralytics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: d.yaml\nschedulee: {}\n")
    assert main(["simulate", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'schedule'" in err and str(cfg) in err


def test_missing_dataset_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tmp_path / 'none' / 'data.yaml'}\n")
    assert main(["simulate", "-c", str(cfg), "-q"]) == 2
    assert "detal synth" in capsys.readouterr().err


def test_synth_command(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--images", "10", "--seed", "1", "--imgsz", "64"]) == 0
    assert (tmp_path / "s" / "data.yaml").exists()
    assert main(["synth", "--out", str(tmp_path / "s"), "--images", "1"]) == 2


def test_report_needs_a_run_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err


def test_seeds_shorthand(tmp_path):
    from detal.cli import _seeds

    assert _seeds("3") == "[0, 1, 2]" and _seeds("0,4,7") == "[0,4,7]"
    with pytest.raises(Exception, match="--seeds"):
        _seeds("three")


def test_debug_shows_the_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: d.yaml\nschedulee: {}\n")
    from detal.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "simulate", "-c", str(cfg)])


def test_report_of_several_run_folders(tmp_path, capsys):
    """`detal report A B --out C` reads both run folders; without --out it says where to put it."""
    from detal.types import METRIC_COLUMNS

    import pandas as pd

    dirs = []
    for exp in ("a", "b"):
        d = tmp_path / exp
        d.mkdir()
        rows = [{**dict.fromkeys(METRIC_COLUMNS, 0), "experiment": exp, "strategy": s, "seed": seed, "round": r,
                 "labeled_images": 10 * r, "labeled_boxes": 30 * r, "map50_95": 0.1 * r + 0.01 * seed,
                 "map50": 0.2 * r} for s in ("random", "mix") for seed in (0, 1) for r in (1, 2)]
        pd.DataFrame(rows, columns=list(METRIC_COLUMNS)).to_csv(d / "metrics.csv", index=False)
        dirs.append(str(d))
    assert main(["report", *dirs]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", *dirs, "--out", str(tmp_path / "both")]) == 0
    html = (tmp_path / "both" / "report.html").read_text()
    assert "a" in html and (tmp_path / "both" / "report.md").exists()


def test_full_or_forbidden_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import detal.simulate as sim

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "x" / "metrics.csv"))

    monkeypatch.setattr(sim, "run_experiment", full)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: d.yaml\n")
    assert main(["simulate", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "metrics.csv" in err


def test_sigterm_inside_a_finalizer_is_resent_not_lost():
    # an exception raised in __del__ is swallowed by Python; the handler re-sends the signal instead
    import signal
    import sys
    import time

    from detal import cli

    got = []
    old = signal.signal(signal.SIGUSR1, lambda *a: got.append(a[0]))
    try:
        class Finalized:
            def __del__(self):
                cli._on_sigterm(signal.SIGUSR1, sys._getframe())

        Finalized()  # collected at once: the handler runs inside __del__ and must not raise there
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, old)
    with pytest.raises(cli.Terminated):  # outside a finalizer it unwinds like Ctrl-C, as before
        cli._on_sigterm(signal.SIGTERM, sys._getframe())


def test_cost_fit_without_a_project_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"experiment: p\ndata: d.yaml\noutput_dir: {tmp_path / 'runs'}\n")
    assert main(["cost", "fit", "-c", str(cfg), "--write"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no detal project here yet; run `detal init -c CONFIG` first" in err
    assert cfg.read_text().count("\n") == 3  # nothing written
