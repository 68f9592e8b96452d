"""The written report: files, self-contained HTML, figures present or explained, several run folders."""

import base64
import os
import re
import signal
import time
from pathlib import Path

import pytest

from detal.errors import DetalError
from detal.report import write_files, write_report
from tests.report.tables import RANDOM, gain_curves, metrics, write_run

FIGURES = ["map_vs_labeled.png", "paired_diff.png", "per_class_ap.png", "class_makeup.png"]


def test_files_written(report):
    run = report.parent
    assert report.name == "report.html"
    for name in FIGURES:
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not (run / "effort.png").exists()  # oracle run: zero effort everywhere
    md = (run / "report.md").read_text()
    assert "| mix |" in md and "| entropy |" in md
    for name in FIGURES:
        assert f"]({name})" in md


def test_html_is_self_contained_and_embeds_every_figure(report):
    html = report.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == len(FIGURES)
    embedded = {base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in srcs}
    assert embedded == {(report.parent / name).read_bytes() for name in FIGURES}
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched: no file, no network
    assert "<script" not in html and "http" not in html


def test_verdicts_and_numbers(report):
    md = (report.parent / "report.md").read_text()
    glance = md.split("## At a glance")[1].split("## Numbers per strategy")[0]
    assert "- mix beat random over 3 seeds: final mAP50-95 +0.050" in glance
    assert "fewer labelled images" in glance
    assert "- entropy did worse than random over 3 seeds: final mAP50-95 -0.010" in glance
    assert "| mix | 3 | 4 | +0.050 [+0.040, +0.060] |" in md  # paired table: seeds, common round, diff [CI]
    assert "| mix | 3 | 0.420 | 30 / 40 | 10 (25%) [25%, 25%] |" in md  # labels saved
    assert "No annotator effort recorded" in md
    assert "min-max over seeds" in md and "bootstrap" in md


def test_a_run_whose_models_learned_nothing_says_so_first(tmp_path):
    flat = {(s, seed): [0.0, 0.0, 0.0, 0.0] for s in ("random", "mix") for seed in range(2)}
    html = write_report(write_run(tmp_path / "flat", metrics(flat))).read_text()
    first = re.search(r'<ul class="verdicts"><li class="([^"]+)">([^<]+)', html)
    assert first and first.group(1) == "nothing-learned", html[:2000]
    assert first.group(2).startswith("random's final mAP50-95 is 0.000: the models learned next to nothing")


def test_report_is_reproducible(report, tmp_path):
    first = report.read_bytes()
    again = write_report(report.parent, out=tmp_path)
    assert again.read_bytes() == first


def test_effort_and_prelabel_quality_figures(tmp_path):
    def effort(strategy, seed, r):
        return 0 if r == 4 else 3 * r + seed

    df = metrics(gain_curves([0.05, 0.04]), accepted=effort, corrected=2, deleted=1, added=effort,
                 prelabel_precision=lambda s, seed, r: 0.5 + 0.1 * r, prelabel_recall=0.6)
    run = write_run(tmp_path, df, per_class=False)
    html = write_report(run).read_text()
    assert (run / "effort.png").exists() and (run / "prelabel_quality.png").exists()
    assert not (run / "per_class_ap.png").exists()
    assert "No per_class.csv in this run" in html
    assert html.count('<img src="data:image/png;base64,') == 5  # curves, diff, make-up, effort, pre-labels


def test_only_random_says_so(tmp_path):
    run = write_run(tmp_path, metrics({("random", s): RANDOM for s in range(2)}), classes=False, per_class=False)
    md = (write_report(run).parent / "report.md").read_text()
    assert "Only the `random` arm was run" in md
    assert "No `random` arm" not in md
    assert not (run / "paired_diff.png").exists()


def test_several_run_folders(tmp_path):
    a = write_run(tmp_path / "a", metrics(gain_curves([0.05, 0.06, 0.04]), experiment="small"))
    b = write_run(tmp_path / "b", metrics(gain_curves([0.01]), experiment="big data"), classes=False, per_class=False)
    with pytest.raises(DetalError, match="2 run folders: say where the combined report goes with --out DIR"):
        write_report([a, b])
    out = write_report([a, b], out=tmp_path / "compare")
    md = (out.parent / "report.md").read_text()
    assert "# detal report: 2 experiments" in md
    assert "### Numbers per strategy" in md
    assert md.index("## Experiment small") < md.index("## Experiment big data")  # in the order given
    assert "(small_map_vs_labeled.png)" in md and "(big-data_map_vs_labeled.png)" in md
    assert "mix beat random over 3 seeds" in md and "one seed only" in md
    assert not (a / "report.html").exists()  # the run folders are left alone
    # the same folder twice is one folder: out defaults to it
    assert write_report([a, a]) == a / "report.html"


def test_unwritable_output_is_one_line(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run", metrics(gain_curves([0.05])), classes=False, per_class=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DetalError, match=r"file: exists and is not a folder; give a folder with --out DIR"):
        write_report(run, out=tmp_path / "file")

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    # root ignores file modes, so the read-only folder is simulated at the one place the report opens files
    monkeypatch.setattr("detal.report.open", lambda path, mode: read_only(path), raising=False)
    with pytest.raises(DetalError) as exc:
        write_report(run)
    assert str(exc.value) == (f"{run}: cannot write the report there (Permission denied); give a writable folder "
                              "with --out DIR")
    assert not list(run.glob(".*.tmp")) and not (run / "report.html").exists()


# Root ignores file modes: as root the write runs in a forked child that drops to the unprivileged `nobody`,
# so the operating system itself refuses it (the test above covers write_report's message by simulation).
# The child starts inside the folder's parent and imports nothing: it needs no access to the checkout or to
# any folder above the test's own, so the test passes wherever the checkout lives and whoever runs it.
NOBODY = 65534


def _write_as_nobody(parent: Path, name: str, files: dict[str, bytes]) -> tuple[int, str]:
    """(exit code, message) of write_files(name, files) run from `parent` by nobody: 0 = a DetalError."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            os.chdir(parent)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            write_files(Path(name), files)
        except DetalError as exc:
            os.write(write, str(exc).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + 120
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the write as nobody did not finish in 120 s")
        time.sleep(0.05)
    with os.fdopen(read) as f:
        return os.waitstatus_to_exitcode(done[1]), f.read()


def test_read_only_folder(tmp_path):
    run = write_run(tmp_path / "run", metrics(gain_curves([0.05])), classes=False, per_class=False)
    run.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(DetalError) as exc:
                write_report(run)
            message = str(exc.value)
            assert message == (f"{run}: cannot write the report there (Permission denied); give a writable "
                               "folder with --out DIR")
        else:
            tmp_path.chmod(0o711)  # the test's own folder: nobody may pass through it to reach `run`
            code, message = _write_as_nobody(run.parent, run.name, {"report.md": b"# r", "report.html": b"<p>"})
            assert code == 0, message
            assert message == ("run: cannot write the report there (Permission denied); give a writable "
                               "folder with --out DIR")
        assert not (run / "report.html").exists() and not list(run.glob(".*.tmp"))
    finally:
        run.chmod(0o755)


def _seconds_run(tmp_path, per_image_mix=12.0, per_image_random=10.0, scratch=20.0):
    """mix reaches random's final mAP50-95 at 30 of 40 images; seconds per labelled image as given."""
    per = {"random": per_image_random, "mix": per_image_mix}
    df = metrics(gain_curves([0.05, 0.04, 0.06]),
                 annotation_seconds=lambda s, seed, r: per[s] * 10 * r,
                 scratch_seconds=lambda s, seed, r: scratch * 10 * r)
    return write_run(tmp_path / "secs", df)


def test_the_verdict_is_judged_in_annotation_hours_by_default(tmp_path):
    run = _seconds_run(tmp_path)
    md = (write_report(run).parent / "report.md").read_text()
    glance = md.split("## At a glance")[1].split("## Numbers per strategy")[0]
    # 400 s for random, 360 s for mix at the target: 10% fewer hours (0.01 h of 0.11 h)
    assert "with 10% fewer annotation hours (0.01 h of 0.11 h" in glance, glance
    # the saving of pre-labels themselves, in one sentence: random's 40 images 0.11 h against 0.22 h from scratch
    assert "Pre-labels:" in glance and "random 0.11 h against 0.22 h (50% of it" in glance
    assert "cost more than drawing from scratch" not in glance
    # hours columns lead the labels table; against random from scratch mix needs 360 of 800 s: 55% saved
    assert "annotation hours needed (it / random)" in md and "| 0.10 / 0.11 |" in md
    assert "0.10 / 0.22 | 0.12 h (55%)" in md
    # the learning curves get an hours column (3 x 2 panels): the figure is wider than the images-only one
    from PIL import Image as PILImage

    with_hours = PILImage.open(run / "map_vs_labeled.png").size[0]
    axis_images = write_report(run, out=tmp_path / "img", cost_axis="images")
    glance = (axis_images.parent / "report.md").read_text().split("## At a glance")[1].split("## Numbers")[0]
    assert "fewer labelled images" in glance and "fewer annotation hours" not in glance
    plain = write_report(write_run(tmp_path / "plain", metrics(gain_curves([0.05, 0.04, 0.06]))))
    assert with_hours > PILImage.open(plain.parent / "map_vs_labeled.png").size[0]


def test_prelabels_that_cost_more_than_scratch_are_said(tmp_path):
    run = _seconds_run(tmp_path, per_image_mix=25.0, per_image_random=22.0, scratch=20.0)
    md = (write_report(run).parent / "report.md").read_text()
    assert "Pre-labels cost more than drawing from scratch for mix, random" in md


def test_a_run_without_seconds_is_judged_on_images_and_says_so(tmp_path):
    run = write_run(tmp_path / "old", metrics(gain_curves([0.05, 0.04, 0.06])))
    md = (write_report(run).parent / "report.md").read_text()
    assert "(No annotation seconds in this run: judged on images.) It reached" in md
    assert "annotation hours needed" not in md and "Pre-labels:" not in md
