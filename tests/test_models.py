"""Models of the paper: conv stacks, CLs from patterns, padded outputs, flattening order, counts (Table 2)."""

import dataclasses

import pytest
import torch
from torch import nn

from predsparse.catalog import MODELS
from predsparse.density import pattern_density
from predsparse.errors import ConfigError
from predsparse.nn.models import build_model, count_macs, count_parameters
from predsparse.nn.sparse_linear import MaskedLinear, SparseLinear
from predsparse.patterns import generate_pattern
from predsparse.spec import RunSpec


def spec_for(dataset, model="mlp"):
    return RunSpec(study="s", run_name="r", dataset=dataset, data="d.npz", pattern="p.npz", model=model)


def build(spec, pattern, **kwargs):
    """`build_model` with a spec's model, classes, init and dataset name (as training calls it)."""
    return build_model(spec.model, pattern, spec.num_classes, init=spec.init, dataset=spec.dataset, **kwargs)


def model_for(dataset, model, net, fanouts, kind="random"):
    return build(spec_for(dataset, model), generate_pattern(net, fanouts, kind, 0))


def test_cifar_conv_stack_counts_match_table2():
    model = model_for("cifar10", "cifar_conv", [4096, 512, 16], [1, 1])
    params, macs = count_parameters(model), count_macs(model)
    # 3x3 kernels + biases of [64, 64, 128, 128, 256, 256] filters on 3 input channels
    assert params["conv"] == 1_145_408 and round(params["conv"] / 1e6, 2) == 1.15
    assert params["batch_norm"] == 2 * (64 + 64 + 128 + 128 + 256 + 256)
    # 32x32, 16x16, 8x8 'same' outputs: 9 * (3*64 + 64*64) * 1024 + 9 * (64*128 + 128*128) * 256 + ...
    expected = 9 * ((3 * 64 + 64 * 64) * 1024 + (64 * 128 + 128 * 128) * 256 + (128 * 256 + 256 * 256) * 64)
    assert macs["conv"] == expected and round(macs["conv"] / 1e9, 2) == 0.15
    assert params["cl_weights"] == macs["cl"] == 4096 + 512


def test_mnist_conv_stack_counts():
    """Table 2 prints 0.05M params and '0.1'B ops; ours are 0.052M and 0.0107B: the op reduction of the
    same row (18.29 %, checked below) is only reproduced with ~0.0107B, so the text lost a digit (0.01B)."""
    model = model_for("mnist", "mnist_conv", [3136, 784, 10], [16, 10])
    params, macs = count_parameters(model), count_macs(model)
    assert params["conv"] == (25 * 32 + 32) + (25 * 32 * 64 + 64) == 52_096
    assert macs["conv"] == 25 * 32 * 28 * 28 + 25 * 32 * 64 * 14 * 14 == 10_662_400
    assert params["batch_norm"] == 0


# Table 2 rows: model, dataset, CL net, the fan-outs giving its "sparse CL params", overall param and op
# reductions (percent) as printed.
TABLE2 = [
    ("cifar_conv", "cifar10", [4096, 512, 16], [1, 1], 64.63, 1.35),
    ("cifar_conv", "cifar100", [4096, 512, 128], [1, 32], 64.76, 1.38),
    ("cifar_conv", "cifar10", [4096, 512, 256, 16], [1, 2, 16], 65.83, 1.43),
    ("cifar_conv", "cifar100", [4096, 512, 256, 128], [1, 2, 32], 65.99, 1.45),
    ("mnist_conv", "mnist", [3136, 784, 10], [16, 10], 95.63, 18.29),
]


@pytest.mark.parametrize("model_name, dataset, net, fanouts, param_reduction, op_reduction", TABLE2)
def test_model_counts_reproduce_table2_reductions(model_name, dataset, net, fanouts, param_reduction, op_reduction):
    pattern = generate_pattern(net, fanouts, "random", 0)
    model = build(spec_for(dataset, model_name), pattern)
    params, macs = count_parameters(model), count_macs(model)
    account = pattern_density(pattern, other_params=params["conv"], other_ops=macs["conv"])
    assert params["cl_weights"] == macs["cl"] == account.weights
    assert abs(100 * account.param_reduction - param_reduction) <= 0.015
    # MNIST: 18.34 against 18.29, a difference of 0.03 % of its 13M ops (a counting detail we cannot see)
    assert abs(100 * account.op_reduction - op_reduction) <= 0.06


def test_cl_layers_follow_the_pattern_kind():
    model = model_for("morse", "mlp", [64, 128, 64], [128, 8])
    first, second = model.cls.junctions
    assert isinstance(first, nn.Linear) and not isinstance(first, SparseLinear)  # fo = N_2: dense
    assert isinstance(second, SparseLinear) and second.weight.shape == (64, 16)
    unstructured = model_for("morse", "mlp", [64, 128, 64], [32, 8], kind="unstructured")
    assert all(isinstance(j, MaskedLinear) for j in unstructured.cls.junctions)
    assert count_parameters(unstructured)["cl_weights"] == 64 * 32 + 128 * 8


def test_padded_outputs_never_win():
    model = model_for("cifar10", "cifar_conv", [4096, 512, 16], [1, 8])
    with torch.no_grad():
        model.cls.junctions[-1].bias[10:] = 1e6  # padded classes 10..15 get huge logits
    logits = model.eval()(torch.rand(4, 3, 32, 32))
    assert logits.shape == (4, 16)
    assert logits.argmax(1).min() >= 10  # the raw arg-max would pick a padded class...
    assert model.predict(logits).max() < 10  # ...predictions never do


def test_conv_features_are_flattened_channel_major():
    model = model_for("mnist", "mnist_conv", [3136, 784, 10], [4, 10]).eval()
    seen = {}
    model.cls.register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        model(x.reshape(2, 784))  # flat inputs are reshaped to the stack's 1x28x28
        features = model.features(x)
    c, h, w = 37, 5, 2
    _, height, width = MODELS["mnist_conv"].feature_shape
    assert features.shape[1:] == MODELS["mnist_conv"].feature_shape
    assert torch.equal(seen["x"][:, c * height * width + h * width + w], features[:, c, h, w])


def test_cl_only_nets_take_padded_images():
    model = model_for("mnist", "mlp", [1024, 64, 16], [1, 4])
    assert model(torch.rand(3, 1, 32, 32)).shape == (3, 16)
    assert model.input_shape == (1024,)


def test_bad_combinations_are_config_errors():
    with pytest.raises(ConfigError, match="gives 4096 conv features"):
        model_for("cifar10", "cifar_conv", [3136, 784, 16], [4, 16])
    with pytest.raises(ConfigError, match="has 10 outputs but cifar100 has 100 classes"):
        model_for("cifar100", "cifar_conv", [4096, 512, 10], [1, 10])
    pattern = generate_pattern([3136, 784, 10], [4, 10], "random", 0)
    shaped = dataclasses.replace(pattern, shapes=((7, 7, 64), None, None))
    with pytest.raises(ConfigError, match=r"flattens features of shape \(C, H, W\) = \[64, 7, 7\]"):
        build(spec_for("mnist", "mnist_conv"), shaped)
    build(spec_for("mnist", "mnist_conv"), dataclasses.replace(pattern, shapes=((64, 7, 7), None, None)))


@pytest.mark.parametrize("fanouts", [(128, 8), (16, 1)])
def test_init_laws_give_their_standard_deviations(fanouts):
    """uniform: U(+-1/sqrt(fi)), sd 1/sqrt(3 fi); he_dense: N(0, 2/N_i) over the dense fan-in N_i, biases 0."""
    pattern = generate_pattern([64, 1024, 64], list(fanouts), "random", 0)
    torch.manual_seed(0)
    ours = build(spec_for("morse"), pattern)
    torch.manual_seed(0)
    authors = build(dataclasses.replace(spec_for("morse"), init="he_dense"), pattern)
    for a, b, n_left in zip(ours.cls.junctions, authors.cls.junctions, (64, 1024)):
        fi = a.fan_in
        assert abs(a.weight.std().item() * (3 * fi) ** 0.5 - 1) < 0.05
        assert a.weight.abs().max().item() <= fi ** -0.5
        assert abs(b.weight.std().item() * (n_left / 2) ** 0.5 - 1) < 0.05
        assert abs(b.weight.mean().item()) < 0.05 * (2 / n_left) ** 0.5 * 10
        assert torch.count_nonzero(b.bias) == 0
        assert b.weight.shape == (b.out_features, fi)  # only existing connections are held


def test_he_dense_masked_layer_keeps_absent_weights_at_zero():
    pattern = generate_pattern([64, 1024, 64], [128, 8], "random", 0)
    model = build(dataclasses.replace(spec_for("morse"), init="he_dense"), pattern, masked=True)
    for layer in model.cls.junctions:
        assert isinstance(layer, MaskedLinear)
        assert torch.count_nonzero(layer.weight[~layer.mask.bool()]) == 0
        assert abs(layer.weight[layer.mask.bool()].std().item() * (layer.in_features / 2) ** 0.5 - 1) < 0.05


def test_unknown_init_is_refused():
    with pytest.raises(ConfigError, match="init 'xavier' is not one of"):
        dataclasses.replace(spec_for("morse"), init="xavier").check()


def test_junctions_are_the_models_api_and_a_replacement_must_fit():
    model = model_for("morse", "mlp", [64, 128, 64], [32, 8])
    first, second = model.junctions()
    assert first is model.cls.junctions[0] and isinstance(second, SparseLinear)
    dense = nn.Linear(128, 64)
    model.replace_junction(1, dense)
    assert model.junctions()[1] is dense and model(torch.rand(2, 64)).shape == (2, 64)
    with pytest.raises(ValueError, match="junction 0 joins 64 to 128 neurons; the new layer joins 128 to 64"):
        model.replace_junction(0, nn.Linear(128, 64))


def test_build_model_refuses_a_pattern_narrower_than_the_classes():
    pattern = generate_pattern([64, 128, 64], [32, 8], "random", 0)
    assert build_model("mlp", pattern, 64)(torch.rand(2, 64)).shape == (2, 64)
    with pytest.raises(ConfigError, match="has 64 outputs but the dataset has 100 classes"):
        build_model("mlp", pattern, 100)
