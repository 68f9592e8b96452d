"""Training on several GPUs is Ultralytics' own DDP (`model.device: 0,1`): detal checks the device list
at load and launches nothing of its own (docs/scale-out.md). No GPU here: the checks only."""

import pytest

from detal.config import parse_config
from detal.errors import ConfigError


@pytest.mark.parametrize("device, batch", [("0,1", 16), ("0,1,2,3", 64), ("1,0", 2), ("0", 7), ("cuda:0", 8)])
def test_gpu_lists_load(device, batch):
    assert parse_config({"data": "d.yaml", "model": {"device": device, "batch": batch}}).model.device == device


@pytest.mark.parametrize("device, batch, message", [
    ("0,1,2", 8, r"model: batch 8 with device 0,1,2 .*3 GPUs.*use a multiple of 3, e\.g\. 6"),
    ("0,1", 1, r"use a multiple of 2, e\.g\. 2"),
    ("0,0", 8, r"names a GPU twice; list each once"),
    ("0;1", 8, r"device '0;1' is not valid; use auto, cpu, mps, 0, cuda:0, or 0,1"),
    ("gpu", 8, r"device 'gpu' is not valid"),
])
def test_bad_gpu_lists_are_refused_at_load(device, batch, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"data": "d.yaml", "model": {"device": device, "batch": batch}}, "c.yaml")


def test_more_gpus_than_the_machine_has_is_one_line():
    """At run time the list meets the machine: more GPUs than it has is a ConfigError naming the count."""
    import torch

    from detal.detector import resolve_device

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"model.device '{n},{n + 1}' requested but this machine has {n} CUDA GPU"):
        resolve_device(f"{n},{n + 1}")
