"""The C library keeps freed blocks: large activations are not page-faulted in afresh at every op."""

import subprocess
import sys

import pytest

PAGES_64MB = 64 * 2**20 // 4096
FAULTS_OF_TEN_64MB_OPS = """
import resource, sys, torch
from fusionframes import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(64 << 18)  # float32, 64 MB
for _ in range(3):
    x = x + 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    x = x + 1  # a fresh 64 MB result, the previous one freed: an activation chain
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", FAULTS_OF_TEN_64MB_OPS, mode], capture_output=True, text=True,
                         check=True)
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_blocks_are_reused_instead_of_faulted_in_again():
    # 64 MB is above glibc's largest mmap threshold: by default every result is a fresh mapping whose every page
    # faults; kept on the heap, most results land in blocks already faulted in.
    default = _faults("default")
    assert default > 9 * PAGES_64MB
    assert _faults("keep") < default / 2
