"""The native kernels, the fused step and stacked training on every instruction set this CPU has.

_native.c compiles its loops three times (AVX-512, AVX2+FMA, baseline SSE2) and runs the best set the CPU
has, so a test run on one machine checks one set. Here the kernel, fused-step and grouped-training tests
run again in a child with PREDSPARSE_NATIVE_ISA set to each lesser set the CPU supports.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from predsparse.nn import native

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=native.STATUS)

TESTS = Path(__file__).parent
SUITES = ["test_sparse_linear.py", "test_native_kernels.py", "test_fused.py", "test_train_group.py"]


def _child_env(isa: str) -> dict:
    return {**os.environ, native.ISA_VARIABLE: isa}


def _isa_in_child(isa: str) -> str:
    code = "from predsparse.nn import native; print(native._native.ISA)"
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=_child_env(isa), capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.mark.parametrize("isa", native.ISAS)
def test_kernel_and_fused_step_tests_pass_on_every_instruction_set(isa):
    if isa == native._native.ISA:
        pytest.skip(f"{isa} is this CPU's best set: the rest of the test run checks it")
    if _isa_in_child(isa) != isa:
        pytest.skip(f"this CPU lacks {isa}")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                            cwd=TESTS, env=_child_env(isa), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_an_unknown_instruction_set_is_named_and_the_best_one_kept():
    code = "from predsparse.nn import native; print(native._native.ISA)"
    result = subprocess.run([sys.executable, "-c", code], env=_child_env("avx9"), capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == native._native.ISA
    assert "PREDSPARSE_NATIVE_ISA='avx9' is not one of avx512f, avx2+fma, baseline" in result.stderr
