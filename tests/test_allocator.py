"""predsparse.allocator: freed blocks stay in the process, so repeated training steps fault no pages in."""

import platform
import subprocess
import sys

import pytest

# A child process times nothing: it runs 60 SparseLinear training steps (1024 x 1024 at 0.78 %, batch 256,
# one thread; each allocates several 1 MB activations and gradients afresh) after 20 to settle, and prints
# its minor page faults per step. glibc's default adjustment of its thresholds has given 22 to 5942 per
# step on this workload, a different figure in each process (it trims the heap's top, then grows it
# again); with keep_freed_memory() the blocks are reused: 4.65 per step.
_CHILD = """
import resource, sys, torch
from predsparse.allocator import keep_freed_memory
from predsparse.nn import SparseLinear
from predsparse.patterns import generate_pattern
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
layer = SparseLinear.from_pattern(generate_pattern([1024, 1024], [8], "random", 0), 0)
x = torch.randn(256, 1024, requires_grad=True)
grad = torch.randn(256, 1024)
def step():
    torch.autograd.grad(layer(x), [x, *layer.parameters()], grad)
for _ in range(20): step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(60): step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 60)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the mallopt thresholds are glibc's")
def test_kept_memory_leaves_training_steps_without_page_faults():
    faults = float(subprocess.run([sys.executable, "-c", _CHILD, "keep"], capture_output=True, text=True,
                                  check=True).stdout)
    # One fresh 1 MB buffer is 256 pages; what remains (about 5 per step) is Python's own small-object arenas.
    assert faults < 16


def test_elsewhere_nothing_changes(monkeypatch):
    from predsparse import allocator

    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.keep_freed_memory() is False
