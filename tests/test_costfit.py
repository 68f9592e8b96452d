"""`detal cost fit`'s table: an action seen on few tasks is flagged beside its fitted value."""

import numpy as np

from detal.cost import ACTIONS, FIT_TERMS, fit_seconds
from detal.cycle.costfit import FEW_TASKS, CostFit, format_fit


def test_a_rarely_seen_action_is_flagged_and_a_never_seen_one_keeps_the_config():
    rng = np.random.default_rng(0)
    n = 60
    counts = np.zeros((n, len(ACTIONS)))
    counts[:, ACTIONS.index("accepted")] = rng.integers(0, 6, n)
    counts[:, ACTIONS.index("drawn")] = rng.integers(0, 4, n)
    counts[:3, ACTIONS.index("deleted")] = 1  # 3 tasks only: fitted, but loosely
    lead = 3 + counts @ np.array([1.5, 4.0, 2.5, 2.0, 7.0]) + rng.normal(0, 0.2, n)
    fit = fit_seconds(counts, lead)
    seen = {"per_image": n, **{a: int((counts[:, i] > 0).sum()) for i, a in enumerate(ACTIONS)}}
    text = format_fit(CostFit(fit, dict.fromkeys(FIT_TERMS, 1.0), seen, 0))
    line = {ln.split()[0]: ln for ln in text.splitlines()[2:2 + len(FIT_TERMS)]}
    assert 0 < seen["deleted"] < FEW_TASKS and "only 3 tasks have it: a loose fit" in line["deleted"]
    assert "never seen" in line["moved"] and "never seen" in line["relabelled"]
    assert "loose" not in line["accepted"] and "loose" not in line["drawn"] and "never" not in line["per_image"]
