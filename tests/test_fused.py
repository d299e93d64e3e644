"""The fused native MLP step against the autograd path: the same step, the same SGD, the same evaluation."""

import copy
import math

import pytest
import torch

from predsparse.nn import native
from predsparse.nn.fused import FusedMLP
from predsparse.nn.models import build_model
from predsparse.patterns import generate_pattern
from predsparse.train import _CHECK_EVERY, train_epoch

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=native.STATUS)


def _model(net=(64, 128, 96, 16), fanouts=(32, 24, 4), classes=16, seed=0):
    pattern = generate_pattern(list(net), list(fanouts), "random", seed)
    torch.manual_seed(seed)
    return build_model("mlp", pattern, classes, init="he_dense")


def _sgd(model, lr=0.1, momentum=0.9, weight_decay=1e-3):
    """As predsparse.train.make_optimizer: weight decay on the weights only."""
    return torch.optim.SGD([{"params": [p for p in model.parameters() if p.ndim >= 2], "weight_decay": weight_decay},
                            {"params": [p for p in model.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                           lr=lr, momentum=momentum)


def _autograd_step(model, optimizer, x, y):
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item() * len(y), int((model.predict(logits.detach()) == y).sum())


def _data(samples=600, features=64, classes=16, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, features, generator=generator), torch.randint(0, classes, (samples,), generator=generator)


# 37: the kernels' batch tails; fo (64, 48, 8): every junction at 50 %, where the autograd path runs dense blocks.
# The last two junctions run as one pass (_native_step.h): a net of one hidden layer is only that pass, one of
# two also runs a layered junction below it; fo (32, 12) on (64, 128, 16) gives that pass fan-in 16 and fan-out
# 12, more than one group of connections on each side.
@pytest.mark.parametrize("batch, momentum, net, fanouts", [
    (64, 0.9, (64, 128, 96, 16), (32, 24, 4)), (37, 0.9, (64, 128, 96, 16), (32, 24, 4)),
    (64, 0.0, (64, 128, 96, 16), (32, 24, 4)), (64, 0.9, (64, 128, 96, 16), (64, 48, 8)),
    (64, 0.9, (64, 128, 16), (32, 12)), (37, 0.9, (64, 128, 16), (32, 12)), (64, 0.9, (64, 128, 16), (4, 1)),
    (37, 0.9, (64, 16), (8,))])
def test_a_fused_step_is_the_autograd_step_and_sgd(batch, momentum, net, fanouts):
    model = _model(net=net, fanouts=fanouts)
    twin = copy.deepcopy(model)
    ours, theirs = _sgd(model, momentum=momentum), _sgd(twin, momentum=momentum)
    x, y = _data()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(2))
    for step in range(6):
        picks = order[step * batch:(step + 1) * batch]
        loss, correct = FusedMLP(model, ours, capacity=batch).step(x, y, picks)
        expected_loss, expected_correct = _autograd_step(twin, theirs, x[picks], y[picks])
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert correct == expected_correct
    for mine, reference in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)
        if momentum:
            torch.testing.assert_close(ours.state[mine]["momentum_buffer"], theirs.state[reference]["momentum_buffer"],
                                       rtol=1e-4, atol=1e-6)
        else:
            assert "momentum_buffer" not in ours.state[mine]


def test_fused_evaluation_counts_only_real_classes():
    model = _model(classes=10)  # 16 outputs, 10 real classes: padded outputs never win
    with torch.no_grad():
        model.junctions()[-1].bias[10:] = 50.0
    x, y = _data(classes=10)
    loss, correct = FusedMLP(model, capacity=128).evaluate(x, y)
    with torch.no_grad():
        logits = model(x)
        expected_loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        expected_correct = int((model.predict(logits) == y).sum())
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert correct == expected_correct > 0


def test_fused_steps_are_the_same_at_any_thread_count():
    x, y = _data()
    picks = torch.arange(200)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = _model()
            optimizer = _sgd(model)
            losses = [FusedMLP(model, optimizer, capacity=200).step(x, y, picks) for _ in range(3)]
            results.append((losses, [p.detach().clone() for p in model.parameters()]))
    finally:
        torch.set_num_threads(before)
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_a_checkpoint_of_fused_steps_resumes_on_torch_sgd():
    """Momentum buffers sit in the optimiser's state, so its state_dict carries on in torch's SGD."""
    model = _model()
    optimizer = _sgd(model)
    x, y = _data()
    FusedMLP(model, optimizer, capacity=100).step(x, y, torch.arange(100))
    twin = copy.deepcopy(model)
    resumed = _sgd(twin)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as from a checkpoint file
    picks = torch.arange(100, 200)
    FusedMLP(model, optimizer, capacity=100).step(x, y, picks)
    _autograd_step(twin, resumed, x[picks], y[picks])
    for mine, reference in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)


def test_what_the_fused_step_does_not_take():
    model = _model()
    assert FusedMLP.reason(model, _sgd(model)) is None
    assert "Adam" in FusedMLP.reason(model, torch.optim.Adam(model.parameters()))
    nesterov = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    assert "Nesterov" in FusedMLP.reason(model, nesterov)
    assert "method" in FusedMLP.reason(model, _sgd(model), controller=object())
    dense = build_model("mlp", generate_pattern([64, 16], [16], "random", 0), 16)  # fo = N_2: dense
    assert FusedMLP.reason(dense) is not None
    assert FusedMLP.reason(model.double()) is not None


def test_a_diverging_fused_epoch_raises():
    model = _model()
    optimizer = _sgd(model)
    with torch.no_grad():
        model.junctions()[0].weight[0, 0] = math.inf
    x, y = _data(samples=_CHECK_EVERY * 8)
    with pytest.raises(FloatingPointError, match=f"batch {_CHECK_EVERY} of"):
        train_epoch(model, optimizer, x, y, 8, torch.Generator().manual_seed(0), lambda *a: None)


def test_labels_outside_the_outputs_are_refused_before_any_native_call():
    model = _model()
    x, y = _data()
    for bad in (-1, 16):
        labels = y.clone()
        labels[3] = bad
        with pytest.raises(ValueError, match=r"labels must lie in 0\.\.15"):
            FusedMLP(model, capacity=128).evaluate(x, labels)
        with pytest.raises(ValueError, match=r"labels must lie in 0\.\.15"):
            train_epoch(model, _sgd(model), x, labels, 64, torch.Generator().manual_seed(0), lambda *a: None)


def test_samples_of_another_width_are_refused_before_any_native_call():
    model = _model()
    x, y = _data(features=32)
    with pytest.raises(ValueError, match="samples have 32 values, the net takes 64"):
        FusedMLP(model, _sgd(model), capacity=64).step(x, y, torch.arange(64))


def test_the_fused_step_flushes_denormals_and_leaves_the_thread_as_it_was():
    """Its hidden activations, a denormal bias (1e-39) on zero weights, read as zero: every logit is 0 and the
    loss ln(classes); the autograd path keeps them (class 0's logit 1e-39 x 1e38 x fan-in). Afterwards torch
    on this thread keeps denormals again."""
    model = _model(net=(64, 128, 16), fanouts=(4, 1))
    first, last = model.junctions()
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(1e-39)
        last.weight.zero_()
        last.weight[0] = 1e38
        last.bias.zero_()
    x, y = _data(samples=64)
    loss, _ = FusedMLP(model, capacity=64).evaluate(x, y)
    assert loss == pytest.approx(64 * math.log(16), rel=1e-6)
    with torch.no_grad():
        kept = torch.nn.functional.cross_entropy(model(x), y, reduction="sum").item()
    assert abs(kept - loss) > 0.5  # class 0's logit 0.8 there
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0


@pytest.mark.parametrize("picks, labels, message", [
    (torch.tensor([0, 600]), None, "picks must lie in 0..599, got 0..600"),
    (torch.tensor([-1, 3]), None, "picks must lie in 0..599, got -1..3"),
    (torch.tensor([0, 1], dtype=torch.int32), None, "picks must be a contiguous 1-D int64 tensor"),
    (torch.arange(8)[::2], None, "picks must be a contiguous 1-D int64 tensor"),
    (torch.tensor([0, 1]), 599, "600 samples need as many labels, got shape (599,)"),
    (torch.tensor([0, 1]), "class 16", "labels must lie in 0..15, got 0..16")])
def test_a_step_refuses_picks_and_labels_the_native_code_would_read_out_of_bounds(picks, labels, message):
    model = _model()
    x, y = _data()
    if labels == 599:
        y = y[:599]
    elif labels == "class 16":
        y = y.clone()
        y[5] = 16
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FusedMLP(model, _sgd(model), capacity=64).step(x, y, picks)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # nothing was trained


@pytest.mark.parametrize("batch", [64, 37])  # 37: the batch tail of every sum
def test_the_paired_pass_gives_the_layer_kernels_results_bit_for_bit(batch):
    """The last two junctions' one pass (_native_step.h, pair_*) against the layer's own kernels on the same
    operands, read back from the step's workspace: the forward pass, the hidden gradient, both junctions'
    weight and bias gradients, equal bit for bit (the generator's fan-in rows are sorted). fo (32, 12) on
    (64, 128, 16): more than one group of connections on both sides of the hidden layer."""
    model = _model(net=(64, 128, 16), fanouts=(32, 12))
    first, last = model.junctions()
    weights = [(j.weight.detach().clone(), j.bias.detach().clone()) for j in (first, last)]
    x, y = _data()
    fused = FusedMLP(model, _sgd(model), capacity=64)
    fused.step(x, y, torch.arange(batch))

    def rows(buffer, n):  # an (n, batch) buffer of the workspace, rows fused.ld floats apart
        return buffer.as_strided((n, batch), (fused.ld, 1))

    # _keep holds, per junction: its output, weight gradient, bias gradient, weights in fan-out order
    (hidden, grad_first, bias_first, _), (logits, grad_last, bias_last, last_t) = \
        [fused._keep[4 * i:4 * i + 4] for i in range(2)]
    inputs, grad_out, grad_hidden = rows(fused.act0, 64), rows(fused.grads[0], 16), rows(fused.grads[1], 128)
    hidden, logits = rows(hidden, 128), rows(logits, 16)
    (w1, b1), (w2, b2) = weights
    assert torch.equal(hidden, native.gather_reduce(inputs, first.fan_in_index, w1, bias=b1))
    assert torch.equal(logits, native.gather_reduce(hidden, last.fan_in_index, w2, bias=b2, relu_src=True))
    sums = torch.empty(16)
    assert torch.equal(grad_last, native.connection_dots(grad_out, hidden, last.fan_in_index, relu_src=True,
                                                         row_sums=sums))
    assert torch.equal(bias_last, sums)
    expected_hidden = native.gather_reduce(grad_out, last.fan_out_right, last_t.view(128, -1), mask=hidden)
    assert torch.equal(grad_hidden, expected_hidden)
    sums = torch.empty(128)
    assert torch.equal(grad_first, native.connection_dots(expected_hidden, inputs, first.fan_in_index, row_sums=sums))
    assert torch.equal(bias_first, sums)
