"""Shared fixtures: a ``device`` fixture over cpu and cuda, and a headless matplotlib."""

from __future__ import annotations

import os

os.environ["MPLBACKEND"] = "Agg"  # before anything can import matplotlib

import pytest
import torch

_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.cuda),
]


@pytest.fixture(params=_DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device-generic test runs once per device; cuda skips cleanly without a GPU."""
    name: str = request.param
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
