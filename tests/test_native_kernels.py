"""The native gathers' two ways (row by row, packed batch tiles) and their operand forms, bit for bit."""

import pytest
import torch

from layers import random_layer
from predsparse.nn import native
from predsparse.nn.functional import fan_out_weights

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=native.STATUS)


def _gather(monkeypatch, tiled: bool, *args, **kwargs):
    monkeypatch.setattr(native, "_tiled", lambda *sizes: tiled)
    return native.gather_reduce(*args, **kwargs)


# batches: one sample, a tail shorter than a vector, several tiles with a short last one
SHAPES = [(64, 256, 32, 1), (300, 200, 20, 37), (256, 64, 8, 150), (96, 96, 12, 2 * 64)]


@pytest.mark.parametrize("n_in, n_out, fo, batch", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
def test_tiles_equal_rows_bit_for_bit(monkeypatch, n_in, n_out, fo, batch, relu):
    layer = random_layer(n_in, n_out, fo)
    weight, bias, index = layer.weight.detach(), layer.bias.detach(), layer.fan_in_index
    x = torch.randn(batch, n_in)
    x[x.abs() < 0.3] = 0.0
    mask = torch.randn(n_out, batch)
    rows = _gather(monkeypatch, False, x.t().contiguous(), index, weight, bias=bias, mask=mask, relu_src=relu)
    # and by hand: the gathered sum in fan-in order, then the bias, then the mask
    src = torch.relu(x) if relu else x
    assert torch.allclose(rows, torch.where(mask > 0, src[:, index.long()].mul(weight).sum(-1).t() + bias[:, None], 0.0),
                          atol=1e-5)
    tiles = _gather(monkeypatch, True, x.t().contiguous(), index, weight, bias=bias, mask=mask, relu_src=relu)
    assert torch.equal(tiles, rows)


@pytest.mark.parametrize("n_in, n_out, fo, batch", SHAPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("tiled", [False, True])
def test_layer_calls_are_the_primitives_bit_for_bit(monkeypatch, n_in, n_out, fo, batch, relu, tiled):
    """layer_forward and layer_backward, from batch-major (row-major) and feature-major operands, row by row
    and on tiles (which transpose a batch-major source on the way), equal gather_reduce and connection_dots
    on the feature-major copies, and hand back those copies."""
    layer = random_layer(n_in, n_out, fo)
    weight, bias, index = layer.weight.detach(), layer.bias.detach(), layer.fan_in_index
    right, position = layer.fan_out_right, layer.fan_out_position
    x, grad_y = torch.randn(batch, n_in), torch.randn(batch, n_out)
    x[x.abs() < 0.3] = 0.0
    x_t, grad_y_t = x.t().contiguous(), grad_y.t().contiguous()
    y_t = _gather(monkeypatch, False, x_t, index, weight, bias=bias, relu_src=relu)
    grad_x_t = _gather(monkeypatch, False, grad_y_t, right, weight, coef_index=position, mask=x_t if relu else None)
    sums = torch.empty(n_out)
    grad_w = native.connection_dots(grad_y_t, x_t, index, relu_src=relu, row_sums=sums)
    monkeypatch.setattr(native, "_tiled", lambda *sizes: tiled)
    for source, gradient in ((x, grad_y), (x_t.t(), grad_y_t.t())):  # batch-major, then feature-major
        out, copy = native.layer_forward(source, weight, bias, index, relu)
        # outputs and the kept input are (B, N) tensors laid out feature-major, not views
        assert out._base is None and (out.stride(0) == 1 or batch == 1) and torch.equal(out.t(), y_t)
        assert torch.equal(copy.t(), x_t) and (copy.stride(0) == 1 or batch == 1)
        gx, gw, gb = native.layer_backward(gradient, copy, weight, position, index, right, relu, True, True, True)
        assert gx._base is None and (gx.stride(0) == 1 or batch == 1)
        assert torch.equal(gx.t(), grad_x_t) and torch.equal(gw, grad_w) and torch.equal(gb, sums)
    gx, gw, gb = native.layer_backward(grad_y, x_t.t(), weight, position, index, right, relu, False, True, False)
    assert gx is None and gb is None and torch.equal(gw, grad_w)
    gx, gw, gb = native.layer_backward(grad_y, x_t.t(), weight, position, index, right, relu, True, False, True)
    assert torch.equal(gx.t(), grad_x_t) and gw is None and torch.allclose(gb, grad_y.sum(0), atol=1e-5)


@pytest.mark.parametrize("tiled", [False, True])
def test_weights_read_through_fan_out_positions_equal_their_copy(monkeypatch, tiled):
    layer = random_layer(128, 64, 16)
    weight, right, position = layer.weight.detach(), layer.fan_out_right, layer.fan_out_position
    grad_y_t = torch.randn(64, 70)
    copied = _gather(monkeypatch, tiled, grad_y_t, right, fan_out_weights(weight, position))
    in_place = _gather(monkeypatch, tiled, grad_y_t, right, weight, coef_index=position)
    assert torch.equal(in_place, copied)
    with pytest.raises(ValueError, match="coef_index of shape"):
        native.gather_reduce(grad_y_t, right, weight, coef_index=position[:, :-1].contiguous())


@pytest.mark.parametrize("tiled", [False, True])
def test_stacked_weights_read_through_fan_out_positions_equal_their_copy(monkeypatch, tiled):
    """R stacked input gradients reading each layer's weights through its positions (copied in that order
    first on tiles) equal the gathers of the copies in fan-out order."""
    layers = [random_layer(128, 64, 16, seed) for seed in range(3)]
    weight = torch.stack([layer.weight.detach() for layer in layers])
    right = torch.stack([layer.fan_out_right for layer in layers])
    position = torch.stack([layer.fan_out_position for layer in layers])
    grad_y_t = torch.randn(3, 64, 70)
    copied = _gather(monkeypatch, tiled, grad_y_t, right, fan_out_weights(weight, position))
    in_place = _gather(monkeypatch, tiled, grad_y_t, right, weight, coef_index=position)
    assert torch.equal(in_place, copied)


@pytest.mark.parametrize("tiled", [False, True])
def test_stacked_tiles_are_each_layers_gather(monkeypatch, tiled):
    """R stacked layers (3-D operands) on either way equal each layer gathered alone."""
    layers = [random_layer(80, 40, 10, seed) for seed in range(3)]
    x_t = torch.randn(3, 80, 100)
    weight = torch.stack([layer.weight.detach() for layer in layers])
    index = torch.stack([layer.fan_in_index for layer in layers])
    bias = torch.stack([layer.bias.detach() for layer in layers])
    stacked = _gather(monkeypatch, tiled, x_t, index, weight, bias=bias, relu_src=True)
    for r, layer in enumerate(layers):
        alone = _gather(monkeypatch, False, x_t[r], layer.fan_in_index, weight[r], bias=bias[r], relu_src=True)
        assert torch.equal(stacked[r], alone)


def test_tiles_start_only_past_the_size_and_with_a_tile_per_thread():
    pack = native._native.PACK
    big = native.TILED_SOURCE_BYTES // (4 * 256)  # source rows of TILED_SOURCE_BYTES at batch 256
    assert native._tiled(big, 256, 1, 2) and not native._tiled(big - 1, 256, 1, 2)
    assert not native._tiled(big * 8, pack, 1, 2)  # one tile, two threads: row by row
    assert native._tiled(big * 8, pack, 2, 2)  # two stacked layers: a tile each


def test_layer_takes_any_gradient_and_input_layout(monkeypatch):
    """An expanded gradient (y.sum()) and a strided input slice: copied to a layout the kernels read."""
    for tiled in (False, True):
        monkeypatch.setattr(native, "_tiled", lambda *sizes, tiled=tiled: tiled)
        layer = random_layer(32, 16, 4)
        wide = torch.randn(9, 64)
        x = wide[:, ::2].requires_grad_()
        layer(x).sum().backward()
        reference = wide[:, ::2].clone().requires_grad_()
        dense = layer.dense_weight()
        (reference @ dense.t() + layer.bias.detach()).sum().backward()
        torch.testing.assert_close(x.grad, reference.grad)
        expected = torch.ones(9, 16).t() @ wide[:, ::2]
        torch.testing.assert_close(layer.weight.grad, expected.gather(1, layer.fan_in_index.long()))
        assert torch.equal(layer.bias.grad, torch.full((16,), 9.0))
