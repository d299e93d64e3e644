"""SparseLinear and MaskedLinear: values and gradients against a dense masked reference, memory, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from predsparse.errors import PatternError
from predsparse.nn import MaskedLinear, SparseLinear, layers_from_pattern
from predsparse.nn import functional, native
from predsparse.nn.functional import sparse_linear
from predsparse.patterns import Pattern, generate_pattern, valid_fanouts
from layers import random_layer


def masked_twin(layer: SparseLinear) -> MaskedLinear:
    """The dense masked nn.Linear computing the same function as `layer`."""
    twin = MaskedLinear(layer.in_features, layer.out_features, layer.adjacency(), bias=layer.bias is not None)
    twin.to(layer.weight.dtype)
    with torch.no_grad():
        twin.weight.copy_(layer.dense_weight())
        if layer.bias is not None:
            twin.bias.copy_(layer.bias)
    return twin


def assert_same_step(layer: SparseLinear, x: torch.Tensor, atol=1e-5, input_relu=False):
    """Output and input/weight/bias gradients of `layer` equal those of its masked dense twin (fed
    relu(x) when `input_relu`: the fused activation of a hidden layer)."""
    twin = masked_twin(layer)
    x_sparse = x.detach().clone().requires_grad_()
    x_dense = x.detach().clone().requires_grad_()
    y = layer(x_sparse, input_relu=input_relu)
    y_ref = twin(torch.relu(x_dense) if input_relu else x_dense)
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=1e-5)
    grad_y = torch.randn_like(y_ref)
    y.backward(grad_y)
    y_ref.backward(grad_y)
    torch.testing.assert_close(x_sparse.grad, x_dense.grad, atol=atol, rtol=1e-5)
    idx = layer.fan_in_index.long()
    torch.testing.assert_close(layer.weight.grad, twin.weight.grad.gather(1, idx), atol=atol, rtol=1e-5)
    if layer.bias is not None:
        torch.testing.assert_close(layer.bias.grad, twin.bias.grad, atol=atol, rtol=1e-5)


@pytest.fixture(params=["native", "native tiles", "torch gathers", "dense blocks"])
def cpu_path(request, monkeypatch):
    """Run a test once on each CPU formulation, whatever the density (see DENSE_DISPATCH_DENSITY): the
    native kernels (row by row, and on packed tiles as for sources beyond native.TILED_SOURCE_BYTES), the
    torch formulations that stand in where they are not built, dense blocks."""
    if request.param.startswith("native") and not native.AVAILABLE:
        pytest.skip(native.STATUS)
    if request.param == "native tiles":
        monkeypatch.setattr(native, "_tiled", lambda *sizes: True)
    if request.param == "torch gathers":
        monkeypatch.setattr(native, "AVAILABLE", False)
    monkeypatch.setitem(functional.DENSE_DISPATCH_DENSITY, "cpu", 0.0 if request.param == "dense blocks" else math.inf)
    return request.param


@pytest.mark.parametrize(
    "n_in, n_out, fo, batch",
    [
        (64, 32, 4, 7),  # fi = 8
        (48, 12, 1, 5),  # fo = 1
        (12, 48, 4, 3),  # fi = 1
        (20, 10, 10, 6),  # fully dense, fi = N_i
        (30, 45, 9, 1),  # batch 1
        (1, 3, 3, 4),  # a single input neuron
    ],
)
@pytest.mark.parametrize("input_relu", [False, True])
def test_matches_masked_dense_reference(cpu_path, n_in, n_out, fo, batch, input_relu):
    layer = random_layer(n_in, n_out, fo)
    assert layer.fan_in * n_out == fo * n_in
    assert_same_step(layer, torch.randn(batch, n_in), input_relu=input_relu)


@settings(max_examples=25, deadline=None)
@given(
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    choice=st.integers(0, 1000),
    batch=st.integers(1, 9),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_reference(n_in, n_out, choice, batch, bias, seed):
    fanouts = valid_fanouts(n_in, n_out)
    layer = random_layer(n_in, n_out, fanouts[choice % len(fanouts)], seed, bias)
    assert_same_step(layer, torch.randn(batch, n_in))


@pytest.mark.parametrize(
    "make_input",
    [
        lambda: torch.randn(6, 80)[:, ::2],  # strided columns
        lambda: torch.randn(40, 6).t(),  # feature-major (the layout SparseLinear outputs)
        lambda: torch.randn(3, 6, 40).transpose(0, 1)[1:4],  # 3-D and non-contiguous
        lambda: torch.randn(40),  # a single sample without batch dimension
    ],
)
@pytest.mark.parametrize("input_relu", [False, True])
def test_non_contiguous_and_batched_inputs(cpu_path, make_input, input_relu):
    assert_same_step(random_layer(40, 24, 3), make_input(), input_relu=input_relu)


@pytest.mark.parametrize("batch", [3, 40, 300])  # below, at and above the weights' count (saved x layouts)
def test_fused_relu_keeps_nan_and_zeroes_the_gradient_of_negative_inputs(cpu_path, batch):
    layer = random_layer(40, 24, 3)
    x = torch.randn(batch, 40)
    x[0, layer.fan_in_index[0, 0]] = float("nan")  # reaches output 0 of sample 0
    x.requires_grad_()
    y = layer(x, input_relu=True)
    assert torch.isnan(y[0, 0]) and torch.isfinite(y[1:]).all()
    y[1:].sum().backward()
    assert (x.grad[1:][x[1:] <= 0] == 0).all() and (x.grad[1:][x[1:] > 0] != 0).any()


def test_gradcheck_float64_cpu(cpu_path):
    layer = random_layer(9, 6, 2, dtype=torch.float64)  # fi = 3
    x = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    index = (layer.fan_in_index, layer.fan_out_right, layer.fan_out_position)
    assert torch.autograd.gradcheck(lambda x, w, b: sparse_linear(x, w, b, *index), (x, layer.weight, layer.bias))


def test_gradients_under_create_graph_are_right_and_differentiating_them_again_is_an_error(cpu_path):
    """A backward pass with create_graph=True gives the usual gradients, but the products behind them are
    not differentiable again: a second differentiation raises instead of returning wrong numbers (here
    through grad_y, which a loss's own graph would make differentiable)."""
    layer = random_layer(24, 12, 3)
    x = torch.randn(5, 24, requires_grad=True)
    grad_y = torch.randn(5, 12, requires_grad=True)
    plain = torch.autograd.grad(layer(x), [x, layer.weight], grad_y)
    graph = torch.autograd.grad(layer(x), [x, layer.weight], grad_y, create_graph=True)
    for a, b in zip(plain, graph):
        torch.testing.assert_close(a, b)
    assert graph[0].requires_grad
    with pytest.raises(RuntimeError, match="differentiate twice"):
        graph[0].sum().backward()


def test_stack_of_sparse_layers_keeps_feature_major_layout():
    first, second = random_layer(32, 16, 2, seed=1), random_layer(16, 8, 4, seed=2)
    model = nn.Sequential(first, nn.ReLU(), second)
    reference = nn.Sequential(masked_twin(first), nn.ReLU(), masked_twin(second))
    x = torch.randn(5, 32)
    hidden = torch.relu(first(x))
    assert hidden.t().is_contiguous()  # the next layer reads it without a copy
    torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    torch.testing.assert_close(first.weight.grad, reference[0].weight.grad.gather(1, first.fan_in_index.long()))


def test_weights_only_where_connections_exist_and_adam_state_too():
    layer = random_layer(4096, 512, 1)  # fo = 1, fi = 8
    assert (layer.fan_in, layer.fan_out) == (8, 1)
    assert layer.weight.numel() == 4096 and layer.bias.numel() == 512
    assert sum(p.numel() for p in layer.parameters()) == 4096 + 512
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.randn(2, 4096)).sum().backward()
    optimizer.step()
    state_sizes = [t.numel() for s in optimizer.state.values() for k, t in s.items() if k != "step"]
    assert sorted(state_sizes) == [512, 512, 4096, 4096]  # exp_avg and exp_avg_sq of weight and bias


def test_index_buffers_are_int32_and_follow_the_module():
    layer = random_layer(16, 8, 2).double()
    assert layer.weight.dtype == torch.float64
    assert {layer.fan_in_index.dtype, layer.fan_out_right.dtype, layer.fan_out_position.dtype} == {torch.int32}
    assert [name for name, _ in layer.named_buffers()] == ["fan_in_index", "fan_out_right", "fan_out_position"]
    assert list(layer.state_dict()) == ["weight", "bias", "fan_in_index"]
    assert_same_step(layer, torch.randn(3, 16, dtype=torch.float64), atol=1e-12)


def test_initialisation_is_scaled_by_the_real_fan_in():
    layer = random_layer(1024, 256, 16)  # fi = 64
    bound = 1 / np.sqrt(64)
    for tensor in (layer.weight, layer.bias):
        assert tensor.abs().max() <= bound
        assert tensor.abs().max() > 0.95 * bound
    assert abs(layer.weight.std().item() - bound / np.sqrt(3)) < 0.05 * bound


def test_extra_repr_shows_fan_in_fan_out_and_density():
    text = repr(random_layer(64, 32, 4))
    assert "fi=8" in text and "fo=4" in text and "density=0.125" in text


def test_state_dict_round_trip(tmp_path):
    pattern = generate_pattern([24, 12], [3], "random", 5)
    layer = SparseLinear.from_pattern(pattern, 0)
    torch.save(layer.state_dict(), tmp_path / "layer.pt")
    other = SparseLinear.from_pattern(pattern, 0)
    other.load_state_dict(torch.load(tmp_path / "layer.pt"))
    x = torch.randn(4, 24)
    torch.testing.assert_close(other(x), layer(x), rtol=0, atol=0)


def test_loading_another_index_rebuilds_the_fan_out_index():
    layer = SparseLinear.from_pattern(generate_pattern([24, 12], [3], "random", 1), 0)
    source = SparseLinear.from_pattern(generate_pattern([24, 12], [3], "random", 2), 0)
    assert not torch.equal(layer.fan_in_index, source.fan_in_index)
    layer.load_state_dict(source.state_dict())
    assert torch.equal(layer.fan_out_right, source.fan_out_right)
    assert torch.equal(layer.fan_out_position, source.fan_out_position)
    assert_same_step(layer, torch.randn(3, 24))


def test_loading_a_bad_index_is_refused():
    layer = random_layer(24, 12, 3)
    state = layer.state_dict()
    state["fan_in_index"] = state["fan_in_index"].clone()
    state["fan_in_index"][0, 1] = state["fan_in_index"][0, 0]
    with pytest.raises(PatternError, match="strictly increasing"):
        layer.load_state_dict(state)


def _balanced_index():
    return np.array([[0, 1], [2, 3], [0, 2], [1, 3]])  # 4 -> 4, fi = fo = 2


@pytest.mark.parametrize(
    "index, message",
    [
        (np.arange(8), "shape"),
        ([[0, 1], [2, 3], [0, 2], [1]], "rectangular"),
        (np.zeros((3, 2), dtype=int), "shape"),
        (np.zeros((4, 0), dtype=int), "shape"),
        (np.array([[0, 1], [2, 3], [0, 2], [1, 4]]), "out of range"),
        (np.array([[0, 1], [2, 3], [0, 2], [-1, 3]]), "out of range"),
        (np.array([[0, 0], [2, 3], [1, 2], [1, 3]]), "strictly increasing"),
        (np.array([[0, 1], [0, 3], [0, 2], [1, 3]]), "fan-out"),
        (_balanced_index().astype(float), "dtype"),
    ],
)
def test_bad_index_is_refused_at_construction(index, message):
    with pytest.raises(PatternError, match=message):
        SparseLinear(4, 4, index)


def test_connections_that_cannot_share_fan_out_equally_are_refused():
    with pytest.raises(PatternError, match="same fan-out"):
        SparseLinear(5, 4, np.array([[0, 1, 2], [2, 3, 4], [0, 2, 1], [1, 3, 4]]))  # 12 edges, 5 inputs


def test_rows_in_any_order_are_accepted_and_keep_their_weights():
    index = _balanced_index()[:, ::-1].copy()
    layer = SparseLinear(4, 4, torch.from_numpy(index))
    assert torch.equal(layer.fan_in_index, torch.from_numpy(index).int())
    assert_same_step(layer, torch.randn(2, 4))


@pytest.mark.parametrize("sizes", [(0, 4), (4, -1), (2.5, 4)])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(PatternError, match="at least 1"):
        SparseLinear(*sizes, _balanced_index())


def test_from_pattern_errors(tmp_path):
    pattern = generate_pattern([8, 4], [2], "random", 0)
    with pytest.raises(PatternError, match="junction 1 does not exist"):
        SparseLinear.from_pattern(pattern, 1)
    with pytest.raises(PatternError, match="no fixed fan-in"):
        SparseLinear.from_pattern(generate_pattern([8, 4], [2], "unstructured", 0), 0)
    with pytest.raises(PatternError, match="does not exist"):
        SparseLinear.from_pattern(tmp_path / "missing.npz", 0)


def test_input_errors():
    layer = random_layer(8, 4, 2)
    with pytest.raises(ValueError, match="expected N_i = 8"):
        layer(torch.randn(2, 9))
    with pytest.raises(TypeError, match="float32 or float64"):
        layer.bfloat16()(torch.randn(2, 8, dtype=torch.bfloat16))


def test_no_input_gradient_when_input_needs_none():
    layer = random_layer(8, 4, 2, bias=False)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.weight.grad is not None and layer.bias is None


def test_layers_from_pattern_picks_sparse_dense_and_masked(tmp_path):
    pattern = generate_pattern([16, 8, 4], [2, 4], "random", 0)  # junction 2 is fully dense
    pattern.save(tmp_path / "p.npz")
    layers = layers_from_pattern(tmp_path / "p.npz")
    assert [type(layer) for layer in layers] == [SparseLinear, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[0].fan_in) == (16, 8, 4)
    assert (layers[1].in_features, layers[1].out_features) == (8, 4)
    (masked,) = layers_from_pattern(generate_pattern([16, 8], [2], "unstructured", 0))
    assert isinstance(masked, MaskedLinear)


def test_masked_linear_from_unstructured_pattern():
    pattern = generate_pattern([16, 8], [2], "unstructured", 3)
    layer = MaskedLinear.from_pattern(pattern, 0)
    assert layer.mask.sum().item() == 16 * 2
    assert torch.equal(layer.mask, torch.from_numpy(pattern.adjacency(0)).bool())
    layer(torch.randn(3, 16)).sum().backward()
    assert (layer.weight.grad[~layer.mask] == 0).all()
    assert (layer.weight.grad[layer.mask] != 0).all()


def test_masked_linear_errors():
    with pytest.raises(PatternError, match="shape"):
        MaskedLinear(4, 3, torch.ones(4, 3))
    with pytest.raises(PatternError, match="0/1"):
        MaskedLinear(4, 3, torch.full((3, 4), 2))


def free_fan_out_index(n_in, n_out, fi, seed=0):
    """A fan-in index with fi per row whose fan-outs differ (some left neurons unused), as pruning leaves."""
    rng = np.random.default_rng(seed)
    index = np.stack([np.sort(rng.choice(n_in, fi, replace=False)) for _ in range(n_out)])
    counts = np.bincount(index.ravel(), minlength=n_in)
    assert counts.min() != counts.max()
    return index


@pytest.mark.parametrize("n_in, n_out, fi, batch", [(24, 16, 3, 5), (10, 40, 2, 3), (30, 6, 29, 4)])
def test_free_fan_outs_match_masked_dense_reference(cpu_path, n_in, n_out, fi, batch):
    torch.manual_seed(0)
    layer = SparseLinear(n_in, n_out, free_fan_out_index(n_in, n_out, fi), fixed_fan_out=False)
    assert layer.fan_out_right.shape[1] == np.bincount(layer.fan_in_index.numpy().ravel(), minlength=n_in).max()
    assert_same_step(layer, torch.randn(batch, n_in))


def test_free_fan_outs_are_refused_unless_asked_for():
    index = free_fan_out_index(24, 16, 3)
    with pytest.raises(PatternError, match="fan-out"):
        SparseLinear(24, 16, index)
    layer = SparseLinear(24, 16, index, fixed_fan_out=False)
    assert "(mean)" in repr(layer) and layer.fan_out == 2


def test_rewire_keeps_fan_in_and_weights_and_refuses_another_fan_in():
    layer = random_layer(24, 16, 2)  # fi = 3
    weight = layer.weight.detach().clone()
    index = free_fan_out_index(24, 16, 3, seed=1)
    layer.rewire(index)
    assert not layer.fixed_fan_out and torch.equal(layer.fan_in_index, torch.from_numpy(index).int())
    assert torch.equal(layer.weight, weight)
    assert_same_step(layer, torch.randn(4, 24))
    with pytest.raises(PatternError, match="fan-in fi cannot change"):
        layer.rewire(free_fan_out_index(24, 16, 4))
    with pytest.raises(PatternError, match="not strictly increasing"):
        layer.rewire(np.zeros((16, 3), dtype=np.int64))


def test_state_dict_of_a_rewired_layer_loads_into_a_free_layer():
    layer = random_layer(24, 16, 2)
    layer.rewire(free_fan_out_index(24, 16, 3, seed=2))
    twin = SparseLinear(24, 16, free_fan_out_index(24, 16, 3, seed=3), fixed_fan_out=False)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(3, 24)
    torch.testing.assert_close(twin(x), layer(x))
    with pytest.raises(PatternError, match="fan-out"):
        random_layer(24, 16, 2).load_state_dict(layer.state_dict())


def test_layers_from_pattern_runs_constant_fan_in_csr_on_sparse_linear():
    index = free_fan_out_index(24, 16, 3)
    pattern = Pattern((24, 16), (2,), (index.reshape(-1).astype(np.int32),), "random",
                      (np.arange(0, 49, 3, dtype=np.int64),))
    (layer,) = layers_from_pattern(pattern)
    assert isinstance(layer, SparseLinear) and not layer.fixed_fan_out
    assert torch.equal(layer.fan_in_index, torch.from_numpy(index).int())
    (masked,) = layers_from_pattern(pattern, masked=True)
    assert isinstance(masked, MaskedLinear) and masked.mask.sum() == 48


def _readme_tables(kind: str) -> list[tuple[str, str]]:
    """(CSV, block) of every README table between `<!-- {kind} table: python benchmarks/<script> --markdown
    <CSV> -->` and `<!-- end of {kind} table -->`."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.findall(rf"<!-- {kind} table: python benchmarks/\S+ --markdown (\S+) -->\n(.*?)<!-- end of {kind} table -->",
                      readme, flags=re.S)


def test_readme_speed_tables_are_the_committed_benchmark_csvs(monkeypatch):
    """The README's speed tables (one per machine) cannot drift from the benchmark's output: each is the
    --markdown rendering of the CSV its marker names."""
    import importlib.util
    from pathlib import Path

    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))  # as when run as a script: its sibling modules import
    spec = importlib.util.spec_from_file_location("bench_sparse_linear", repo / "benchmarks/sparse_linear.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    blocks = _readme_tables("speed")
    assert sorted(csv for csv, _ in blocks) == ["benchmarks/measured/sparse_linear_cpu.csv",
                                                "benchmarks/measured/sparse_linear_cpu_xeon.csv",
                                                "benchmarks/measured/sparse_linear_cpu_zen4.csv"]
    for csv, block in blocks:
        assert block == bench.markdown(pd.read_csv(repo / csv)), csv


def test_without_the_native_build_the_layer_says_so_and_still_trains(tmp_path):
    """A source tree whose install found no compiler (no _native*.so): one clear status, torch formulations."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    shutil.copytree(src, tmp_path / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    code = ("import torch; from predsparse.nn import native, SparseLinear; "
            "layer = SparseLinear(8, 4, [[0, 1], [2, 3], [4, 5], [6, 7]]); "
            "layer(torch.randn(3, 8), input_relu=True).sum().backward(); "
            "print(native.AVAILABLE, native.STATUS)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"}, check=True)
    assert done.stdout.startswith("False native CPU kernels not built") and "C compiler" in done.stdout


def test_docstring_examples_run_on_every_cpu_path(cpu_path):
    """SparseLinear's Examples (its output a transposed view) hold on each CPU formulation."""
    import doctest

    import predsparse.nn.sparse_linear as module

    finder = doctest.DocTestFinder()
    (test,) = [t for t in finder.find(module.SparseLinear, "SparseLinear", module=module) if t.name == "SparseLinear"]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=lambda text: None)
    assert test.examples and result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_fused_step_benchmark_times_both_paths_and_the_overhead(monkeypatch):
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))  # as when run as a script: its sibling modules import
    spec = importlib.util.spec_from_file_location("bench_fused_step", repo / "benchmarks/fused_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.time_fanouts((128, 8), rounds=1, steps=2)
    assert [r["method"] for r in rows] == ["autograd", "fused", "autograd_no_products"]
    assert all(r["ms_per_step"] > 0 for r in rows) and rows[1]["fused_vs_autograd"] > 0
    assert (rows[0]["density_1"], rows[0]["density_2"]) == (0.125, 0.125)
    assert native.AVAILABLE and native._native.ISA != "none"  # the real kernels are back


def test_readme_fused_step_table_is_the_committed_benchmark_csv(monkeypatch):
    """As the speed table: the README's fused-step table is benchmarks/fused_step.py's --markdown of its CSV."""
    import csv
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_fused_step_table", repo / "benchmarks/fused_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with (repo / "benchmarks/measured/fused_step_cpu.csv").open(newline="") as handle:
        table = bench.markdown(list(csv.DictReader(handle)))
    assert "| (128, 8) | 12.5 / 12.5 % |" in table
    assert _readme_tables("fused step") == [("benchmarks/measured/fused_step_cpu.csv", table)]


def test_tiles_benchmark_forces_each_way_and_restores_the_rule(monkeypatch):
    """`benchmarks/sparse_linear.py --tiles` times the native gathers row by row and on packed tiles: its
    steps really take the way they are named, and leave native.TILED_SOURCE_BYTES's rule in place."""
    import importlib.util
    from pathlib import Path

    if not native.AVAILABLE:
        pytest.skip(native.STATUS)
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_sparse_linear_tiles", repo / "benchmarks/sparse_linear.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real, rule, seen = native._native, native._tiled, []

    class Spy:  # records the `tiled` argument of every layer forward
        def __getattr__(self, name):
            if name == "layer_forward":
                return lambda *args: (seen.append(args[14]), real.layer_forward(*args))[1]
            return getattr(real, name)

    monkeypatch.setattr(native, "_native", Spy())
    x, grad_y = bench.step_inputs(70, 64, 32, torch.device("cpu"), torch.float32, False)
    for method, tiled in (("rows", 0), ("tiles", 1), ("rows", 0)):
        bench.make_step(method, 64, 32, 4, x, grad_y)()
        assert seen[-1] == tiled and native._tiled is rule


def test_a_step_is_one_native_call_per_pass(monkeypatch):
    """`benchmarks/sparse_linear.py --parts` times the native calls inside a step: a layer fed row-major data
    makes exactly one call for its forward and one for its backward (the transposes inside them)."""
    import importlib.util
    from pathlib import Path

    if not native.AVAILABLE:
        pytest.skip(native.STATUS)
    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_sparse_linear_parts", repo / "benchmarks/sparse_linear.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(repo / "benchmarks"))
    spec.loader.exec_module(bench)
    real, calls = native._native, []
    parts = bench.time_parts(64, 32, 4, 70, steps=3, rounds=2, dtype=torch.float32, feature_major=False)
    assert native._native is real
    assert set(parts) == {"step_ms", "layer_forward_ms", "layer_backward_ms", "outside_native_ms", "noop_step_ms",
                          "autograd_floor_ms"}
    assert parts["step_ms"] >= parts["layer_forward_ms"] + parts["layer_backward_ms"] > 0
    assert parts["noop_step_ms"] > 0 and parts["autograd_floor_ms"] > 0

    class Count:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(real, name)

    layer = random_layer(64, 32, 4)
    x = torch.randn(70, 64, requires_grad=True)
    try:
        native._native = Count()
        layer(x).backward(torch.randn(70, 32))
    finally:
        native._native = real
    assert [c for c in calls if c != "PACK"] == ["layer_forward", "layer_backward"]
