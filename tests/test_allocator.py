"""The allocator setting: freed batch-sized buffers are reused instead of faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# Four 20 MB buffers per "batch", freed together: the pattern of a network's activations.
COUNT_FAULTS = """
import resource, sys
import numpy as np
from transferlab.allocator import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else False
def batch():
    buffers = [np.ones(20 * 1024**2 // 8) for _ in range(4)]
    del buffers
batch(); batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", COUNT_FAULTS, mode], env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_tuned_allocator_reuses_freed_buffers_without_page_faults():
    applied, tuned = page_faults("tuned")
    _, default = page_faults("default")
    assert applied == "True"
    assert default > 10_000  # glibc's default returns the buffers to the kernel every batch
    assert tuned < default / 20


def test_an_explicit_malloc_setting_is_left_alone():
    applied, _ = page_faults("tuned", MALLOC_ARENA_MAX="2")
    assert applied == "False"
