"""Every registered model builds, runs forward and backward, with the right output shape."""

import pytest
import torch

from visiontune.errors import ConfigError
from visiontune.models import build_model, count_parameters, list_models, model_entry


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    kind = model_entry(name).kind
    if kind == "classification":
        inputs, expected = torch.randn(3, 1, 28, 28), (3, 10)
    else:
        inputs, expected = torch.randn(2, 2, 128, 128), (2, 2, 128, 128)
    model = build_model(name, in_channels=inputs.shape[1])
    output = model(inputs)
    assert output.shape == expected
    output.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_report_cnn_has_exactly_21578_weights():
    # Exercise 1.2: 8-16-32 convolutions and one linear layer (report: 21,578 learnable weights).
    assert count_parameters(build_model("cnn", blocks=3, width=8)) == 21578


def test_report_fnn_has_784_800_10_weights():
    assert count_parameters(build_model("fnn")) == 784 * 800 + 800 + 800 * 10 + 10


@pytest.mark.parametrize("blocks, flat", [(1, 8 * 28 * 28), (2, 16 * 14 * 14), (3, 32 * 7 * 7), (4, 64 * 6 * 6)])
def test_cnn_depth_follows_report_output_sizes(blocks, flat):
    # The report's CNN_block: 28 -> 14 -> 7, and the 4th block pools with stride 1 (7 -> 6).
    model = build_model("cnn", blocks=blocks, width=8)
    assert model.classifier.in_features == flat
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_pool_first_swaps_pooling_and_activation():
    after = [type(m).__name__ for m in build_model("cnn", blocks=2, pool_first=False).features]
    before = [type(m).__name__ for m in build_model("cnn", blocks=2, pool_first=True).features]
    assert after[:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert before[:3] == ["Conv2d", "MaxPool2d", "ReLU"]


def test_dropout_and_batchnorm_are_placed_as_in_report():
    layers = [type(m).__name__ for m in build_model("cnn", blocks=2, dropout=0.3, batchnorm=True).features]
    assert layers == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout2d", "Conv2d", "BatchNorm2d", "ReLU"]


def test_segmenter_variants_differ_as_designed():
    fcn, fcn2, unet = build_model("fcn"), build_model("fcn2"), build_model("unet")
    names = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert "BatchNorm2d" not in names(fcn) and "BatchNorm2d" in names(fcn2)
    assert count_parameters(fcn2) > count_parameters(fcn)
    assert unet.skips and not fcn2.skips


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_segmenter_depths_keep_resolution(depth):
    assert build_model("unet", depth=depth, width=4)(torch.randn(1, 2, 128, 128)).shape == (1, 2, 128, 128)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match="valid names: cnn, fcn, fcn2, fnn, resnet, unet"):
        build_model("vgg")


def test_unknown_argument_and_bad_value_are_config_errors():
    with pytest.raises(ConfigError, match="does not take blocks"):
        build_model("fnn", blocks=3)
    with pytest.raises(ConfigError, match="blocks must be between 1 and 4"):
        build_model("cnn", blocks=5)
    with pytest.raises(ConfigError, match="activation must be one of"):
        build_model("cnn", activation="swish")


@pytest.mark.parametrize("name", ["fcn", "fcn2", "unet"])
def test_segmenters_take_any_height_and_width_and_return_logits_of_that_size(name):
    """Padding inside the model to what its depth needs, then cropping back: non-square,
    non-power-of-two sizes work and K classes come out."""
    model = build_model(name, "segmentation", depth=3, width=4, in_channels=3, num_classes=4).eval()
    for height, width in ((37, 50), (5, 9), (64, 40)):
        assert model(torch.rand(2, 3, height, width)).shape == (2, 4, height, width)


def test_the_cnn_limits_its_blocks_to_what_the_image_size_allows():
    from visiontune.models.classifiers import max_blocks

    assert max_blocks((28, 28)) == 4 and max_blocks((3, 3)) == 3 and max_blocks((2, 5)) == 2
    model = build_model("cnn", "classification", blocks=3, in_channels=3, image_size=(3, 9), num_classes=5)
    assert model(torch.rand(2, 3, 3, 9)).shape == (2, 5)
    with pytest.raises(ConfigError, match="blocks=4 does not fit 3x9 images"):
        build_model("cnn", "classification", blocks=4, in_channels=3, image_size=(3, 9), num_classes=5)
    fnn = build_model("fnn", "classification", hidden=16, in_channels=3, image_size=(5, 7), num_classes=4)
    assert fnn(torch.rand(2, 3, 5, 7)).shape == (2, 4)
    assert build_model("cnn", "classification").classifier.in_features == 32 * 7 * 7  # the report's 28x28 CNN


@pytest.mark.parametrize("name, shape", [("fcn2", (3, 2, 40, 24)), ("unet", (3, 2, 32, 32)),
                                         ("resnet", (4, 1, 28, 28)), ("cnn", (4, 1, 28, 28))])
def test_folding_batchnorm_into_convolutions_keeps_the_outputs(name, shape):
    import copy

    from visiontune.models.layers import fold_batchnorm

    torch.manual_seed(0)
    model = build_model(name, in_channels=shape[1], **({"batchnorm": True} if name == "cnn" else {}))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for norm in norms:  # statistics as training would leave them, not the identity they start as
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5), norm.bias.data.uniform_(-0.5, 0.5)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    inputs = torch.rand(shape)
    with torch.inference_mode():
        assert torch.allclose(folded(inputs), model.eval()(inputs), atol=1e-5)
