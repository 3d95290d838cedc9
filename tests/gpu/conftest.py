"""Tests marked ``cuda`` (``make test-gpu``) run only where torch sees a CUDA GPU; elsewhere they are collected and skipped.

They need no model weights, data or network: random-initialised models of the paper's shapes and
the stored Banking77 workload ids (bench/banking77_cap_ids.npz). bench/gpu_check.sh runs them on a
bare GPU machine.
"""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Skip every ``cuda`` test when no CUDA device is visible, so CPU-only CI stays green."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
