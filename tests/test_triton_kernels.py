"""The Triton kernels of SparseLinear against a plain PyTorch reference.

On a CUDA machine the compiled, autotuned kernels run on the GPU. Without one they run in Triton's
interpreter on CPU tensors, which needs TRITON_INTERPRET=1 before anything imports triton (torch itself
may import it earlier in a test session, e.g. in torch.optim), so `test_kernels_in_the_interpreter`
runs this file again in a child process with the variable set; in this process the kernel tests then
report as skipped and the child's result is that one test's.
"""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from predsparse.nn import SparseLinear
from predsparse.nn.functional import CPU_BACKEND, SparseLinearFunction, gather_backend
from predsparse.patterns import generate_pattern

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
RUNS_HERE = INTERPRETED or torch.cuda.is_available()
DEVICE = "cpu" if INTERPRETED or not torch.cuda.is_available() else "cuda"
kernel_test = pytest.mark.skipif(not RUNS_HERE, reason="runs in the child process of test_kernels_in_the_interpreter")


@pytest.mark.skipif(RUNS_HERE, reason="the kernel tests run in this process")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                    reason="triton is not installed (pip install -e '.[gpu]', Linux only)")
def test_kernels_in_the_interpreter():
    child = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=dict(os.environ, TRITON_INTERPRET="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-2000:]
    assert " passed" in child.stdout and "skipped" in child.stdout  # this test itself skips in the child


@pytest.fixture(scope="module")
def kernels():
    from predsparse.nn import triton_kernels

    return triton_kernels


def layer_for(n_in, n_out, fo, seed=0):
    torch.manual_seed(seed)
    return SparseLinear.from_pattern(generate_pattern([n_in, n_out], [fo], "random", seed), 0)


def reference_products(layer, x_t, grad_y_t):
    """forward, input gradient, weight gradient in float64 through the dense weight matrix (on the CPU)."""
    dense = layer.dense_weight().double().cpu()
    x64, gy64 = x_t.double().cpu(), grad_y_t.double().cpu()
    weight_grad = (gy64 @ x64.t()).gather(1, layer.fan_in_index.long().cpu())
    return dense @ x64, dense.t() @ gy64, weight_grad


def kernel_products(kernels, layer, x_t, grad_y_t, weight):
    """forward, input gradient, weight gradient from the two kernels, composed as SparseLinearFunction does."""
    return (
        kernels.gather_reduce(x_t, layer.fan_in_index, weight),
        kernels.gather_reduce(grad_y_t, layer.fan_out_right, weight.reshape(-1)[layer.fan_out_position]),
        kernels.connection_dots(grad_y_t, x_t.t(), layer.fan_in_index),
    )


SHAPES = [
    (24, 16, 4, 5),  # fi = 6, batch not a multiple of any block
    (32, 8, 1, 3),  # fo = 1
    (8, 32, 4, 2),  # fi = 1
    (12, 6, 6, 70),  # fully dense, batch over one block
    (20, 10, 3, 1),  # batch 1
]


@kernel_test
@pytest.mark.parametrize("n_in, n_out, fo, batch", SHAPES)
def test_kernels_match_reference_float32(kernels, n_in, n_out, fo, batch):
    layer = layer_for(n_in, n_out, fo).to(DEVICE)
    x_t = torch.randn(n_in, batch, device=DEVICE)
    grad_y_t = torch.randn(n_out, batch, device=DEVICE)
    got = kernel_products(kernels, layer, x_t, grad_y_t, layer.weight.detach())
    for g, want in zip(got, reference_products(layer, x_t, grad_y_t)):
        assert g.dtype == torch.float32 and g.device.type == DEVICE
        torch.testing.assert_close(g.double().cpu(), want, atol=1e-5, rtol=1e-5)


@kernel_test
def test_bfloat16_inputs_give_bfloat16_results(kernels):
    layer = layer_for(64, 32, 8).to(DEVICE)  # fi = 16
    x_t = torch.randn(64, 40, device=DEVICE).bfloat16()
    grad_y_t = torch.randn(32, 40, device=DEVICE).bfloat16()
    weight = layer.weight.detach().bfloat16()
    layer.weight.data = weight.float()  # the reference uses exactly the rounded weights
    got = kernel_products(kernels, layer, x_t, grad_y_t, weight)
    for g, want in zip(got, reference_products(layer, x_t, grad_y_t)):
        assert g.dtype == torch.bfloat16
        # Only the final cast to bfloat16 separates the result from float64: within one bfloat16 ulp
        # (2^-7 relative), as the interpreter truncates where the GPU rounds to nearest.
        torch.testing.assert_close(g.double().cpu(), want, atol=1e-6, rtol=2**-7)


@kernel_test
def test_bfloat16_products_accumulate_in_float32(kernels):
    # 256 + 1 is not a bfloat16 (spacing 2 there): a bfloat16 accumulator would stay at 256, while
    # float32 reaches 256 + 64 = 320, which bfloat16 holds exactly.
    n = 65
    layer = SparseLinear(n, 1, torch.arange(n)[None, :], bias=False).to(DEVICE)  # fi = n, fo = 1
    ones = torch.ones(1, n, dtype=torch.bfloat16, device=DEVICE)
    x_t = torch.ones(n, 1, dtype=torch.bfloat16, device=DEVICE)
    x_t[0] = 256
    assert kernels.gather_reduce(x_t, layer.fan_in_index, ones).item() == 320
    grad_y_t = torch.ones(1, n, dtype=torch.bfloat16, device=DEVICE)
    grad_y_t[0, 0] = 256
    x_all_ones = torch.ones(n, n, dtype=torch.bfloat16, device=DEVICE)
    assert kernels.connection_dots(grad_y_t, x_all_ones, layer.fan_in_index)[0, 0].item() == 320


def assert_backends_agree(kernels, layer, bias: bool):
    """One SparseLinearFunction step on the Triton backend equals the CPU backend's."""
    triton_backend = gather_backend(kernels.gather_reduce, kernels.connection_dots)
    x, grad_y = torch.randn(5, layer.in_features), torch.randn(5, layer.out_features)
    results = []
    for backend, device in ((triton_backend, DEVICE), (CPU_BACKEND, "cpu")):
        on = layer.to(device)
        xi = x.to(device).requires_grad_()
        w = on.weight.detach().clone().requires_grad_()
        b = on.bias.detach().clone().requires_grad_() if bias else None
        index = (on.fan_in_index, on.fan_out_right, on.fan_out_position)
        y = SparseLinearFunction.apply(xi, w, b, *index, backend)
        y.backward(grad_y.to(device))
        results.append([t.detach().cpu() for t in (y, xi.grad, w.grad) + ((b.grad,) if bias else ())])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@kernel_test
def test_autograd_function_on_triton_backend_matches_cpu_backend(kernels):
    assert_backends_agree(kernels, layer_for(24, 12, 2), bias=True)


@kernel_test
def test_free_fan_outs_on_triton_backend_match_cpu_backend(kernels):
    # A pruned or rewired junction: fi = 3 on every row, fan-outs from 0 up (padded fan-out index).
    index = torch.stack([torch.randperm(24, generator=torch.Generator().manual_seed(r))[:3].sort().values
                         for r in range(12)])
    layer = SparseLinear(24, 12, index, fixed_fan_out=False)
    assert layer.fan_out_position.numel() > layer.weight.numel()
    assert_backends_agree(kernels, layer, bias=False)
