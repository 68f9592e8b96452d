"""One full report of a synthetic three-strategy, three-seed run, shared by the file and browser tests."""

import pytest

from detal.report import write_report
from tests.report.tables import RANDOM, gain_curves, metrics, write_run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    curves = gain_curves([0.05, 0.06, 0.04])
    curves.update({("entropy", s): [y + 0.02 * s - 0.01 for y in RANDOM] for s in range(3)})
    run = write_run(tmp_path_factory.mktemp("run") / "demo", metrics(curves, experiment="demo"))
    return write_report(run)
