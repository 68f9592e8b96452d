"""The command line: help for every command, one-line errors with exit code 2."""

import subprocess
import sys

import pytest

from detal.cli import build_parser, main


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def test_every_command_and_option_has_help(capsys):
    for name, p in _subcommands().items():
        assert p.description or p.format_usage(), name
        for action in p._actions:
            if action.dest != "help" and action.option_strings:
                assert action.help, f"detal {name} {action.option_strings[0]} has no help text"


@pytest.mark.parametrize("cmd", ["synth", "simulate", "report", "score"])
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
