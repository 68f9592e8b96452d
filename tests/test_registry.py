"""Names from config resolve through registries; an unknown name lists the valid ones and the near miss."""

import pytest

from detal.errors import ConfigError
from detal.registry import InvalidOption, lookup, near_miss


def test_lookup_and_near_miss():
    reg = {"entropy": 1, "margin": 2}
    assert lookup(reg, "margin", "measure") == 2
    assert near_miss("entrpy", reg) == "entropy" and near_miss("zzz", reg) is None
    with pytest.raises(InvalidOption, match=r"unknown measure 'entrpy'; valid: entropy, margin\. Did you mean 'entropy'\?") as e:
        lookup(reg, "entrpy", "measure")
    assert isinstance(e.value, ConfigError) and isinstance(e.value, ValueError)
    with pytest.raises(InvalidOption, match="valid: entropy, margin.$"):
        lookup(reg, 3, "measure")
