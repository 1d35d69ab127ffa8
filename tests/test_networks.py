"""Networks pinned against the SSL4MIS reference code (``code/networks/unet.py``, ``discriminator.py``).

Parameter counts were counted from the reference classes (``UNet(1, 4)``, ``UNet_CCT(1, 4)``,
``UNet_URPC(1, 4)``, ``FCDiscriminator(4)``); forward passes on fixed weights pin the layer order
where it matters (the decoder's up step, the discriminator), written here from the reference
definition with plain torch functions.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslbench.methods.dan import FCDiscriminator
from sslbench.method import METHODS, MethodContext
from sslbench.nn.multihead import MultiDecoderUNet, PyramidUNet
from sslbench.nn.unet import UNet, UpBlock


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_equal_the_reference() -> None:
    assert count(UNet(in_channels=1, num_classes=4)) == 1_813_764
    assert count(MultiDecoderUNet(1, 4)) == 3_713_664          # UNet_CCT: encoder + main + 3 aux decoders
    assert count(PyramidUNet(1, 4)) == 1_831_060               # UNet_URPC (its unused bottleneck head included)
    assert count(FCDiscriminator(num_classes=4)) == 2_762_754


@pytest.mark.parametrize("name,expected", [
    ("unet-l", 1_813_764), ("unet-f", 1_813_764), ("em", 1_813_764), ("dct", 1_813_764), ("ict", 1_813_764),
    ("mt", 1_813_764), ("uamt", 1_813_764), ("cct", 3_713_664), ("urpc", 1_831_060),
    ("cps", 2 * 1_813_764), ("dan", 1_813_764),
])
def test_every_baseline_trains_the_reference_network(name: str, expected: int) -> None:
    """What each method optimises with SGD (EMA teachers and DAN's Adam-trained discriminator apart)."""
    cls = METHODS.get(name)
    ctx = MethodContext(in_channels=1, num_classes=4, image_size=256, device=torch.device("cpu"))
    method = cls(cls.Config(), ctx)
    assert sum(p.numel() for p in method.optim_parameters()) == expected
    if name == "dan":
        assert sum(p.numel() for p in method.extra_optimizers()["disc"].params) == 2_762_754


def test_conv_block_and_up_block_layer_order() -> None:
    net = UNet(1, 4)
    kinds = [type(m).__name__ for m in net.encoder.blocks[0]]
    assert kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU", "Dropout", "Conv2d", "BatchNorm2d", "LeakyReLU"]
    assert all(m.negative_slope == 0.01 for m in net.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(net.decoder.head, nn.Conv2d) and net.decoder.head.kernel_size == (3, 3)
    torch.manual_seed(0)
    block = UpBlock(8, 4, 4).eval()
    x, skip = torch.randn(2, 8, 5, 5), torch.randn(2, 4, 10, 10)
    # reference: 1x1 conv to the skip's width, bilinear x2 with align_corners=True, cat [skip, up], ConvBlock
    up = F.interpolate(F.conv2d(x, block.reduce.weight, block.reduce.bias), scale_factor=2, mode="bilinear",
                       align_corners=True)
    expected = block.conv(torch.cat([skip, up], dim=1))
    torch.testing.assert_close(block(x, skip), expected)
    # align_corners=True keeps the corner values of the reduced map exactly
    assert torch.allclose(up[..., 0, 0], F.conv2d(x, block.reduce.weight, block.reduce.bias)[..., 0, 0])


def test_unet_forward_shapes() -> None:
    out = UNet(1, 4)(torch.rand(2, 1, 64, 64), features=True)
    assert out.logits.shape == (2, 4, 64, 64) and out.bottleneck.shape == (2, 256, 4, 4)


def _reference_discriminator(d: FCDiscriminator, probs: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """SSL4MIS ``FCDiscriminator.forward`` written out: no activation on the sum; dropout after the
    activations of conv2 and conv3 only; AvgPool2d(7)."""
    convs = [m for m in d.body if isinstance(m, nn.Conv2d)]
    x = d.conv_map(probs) + d.conv_image(image)
    x = F.dropout2d(F.leaky_relu(convs[0](x), 0.2), 0.5, training=d.training)
    x = F.dropout2d(F.leaky_relu(convs[1](x), 0.2), 0.5, training=d.training)
    x = F.leaky_relu(convs[2](x), 0.2)
    x = F.avg_pool2d(x, 7)
    return d.classifier(torch.flatten(x, 1))


@pytest.mark.parametrize("train", [False, True])
def test_discriminator_layer_order_at_256(train: bool) -> None:
    torch.manual_seed(0)
    d = FCDiscriminator(num_classes=4).train(train)
    probs, image = torch.softmax(torch.randn(2, 4, 256, 256), dim=1), torch.rand(2, 1, 256, 256)
    torch.manual_seed(1)
    got = d(probs, image)
    torch.manual_seed(1)            # same dropout draws in the same places
    torch.testing.assert_close(got, _reference_discriminator(d, probs, image))


def test_discriminator_pooling_at_other_sizes() -> None:
    d = FCDiscriminator(num_classes=3).eval()
    x16 = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    assert torch.equal(d.pool(x16), x16[..., :14, :14].reshape(1, 1, 2, 7, 2, 7).mean((3, 5)))  # AvgPool2d(7)
    x4 = torch.rand(1, 1, 4, 4)
    assert torch.allclose(d.pool(x4), F.avg_pool2d(x4, 2))                  # 64 px: the whole map in 2x2 cells
    for size in (32, 64, 128):
        assert d(torch.rand(2, 3, size, size), torch.rand(2, 1, size, size)).shape == (2, 2)


def test_urpc_heads_read_the_reference_stages_and_perturbations() -> None:
    """1/8 stage (128 ch) through dropout 0.5, 1/4 (64 ch) through feature dropout, 1/2 (32 ch)
    through feature noise, in train mode only; outputs [main, 1/2, 1/4, 1/8] at the input size."""
    net = PyramidUNet(1, 4)
    seen: list[tuple[str, int]] = []

    def spy(tag: str):  # noqa: ANN202
        return lambda x, g=None: (seen.append((tag, x.shape[1])), x)[1]

    net.aux_perturbations = (spy("dropout"), spy("feature_dropout"), spy("feature_noise"))
    outs = net.forward_pyramid(torch.rand(2, 1, 64, 64))
    assert sorted(seen) == [("dropout", 128), ("feature_dropout", 64), ("feature_noise", 32)]
    assert [o.shape for o in outs] == [(2, 4, 64, 64)] * 4
    seen.clear()
    net.eval()
    net.forward_pyramid(torch.rand(2, 1, 64, 64))
    assert seen == []
    heads = [h.in_channels for h in net.aux_heads]
    assert heads == [128, 64, 32] and net.bottleneck_head.in_channels == 256


def test_cct_auxiliary_decoders_read_every_encoder_level_perturbed() -> None:
    net = MultiDecoderUNet(1, 4)
    seen: list[tuple[int, int]] = []

    def spy(k: int):  # noqa: ANN202
        return lambda x, g=None: (seen.append((k, x.shape[1])), x)[1]

    net.perturbations = (spy(0), spy(1), spy(2))
    main, aux = net.forward_all(torch.rand(2, 1, 32, 32))
    assert len(aux) == 3 and main.shape == aux[0].shape == (2, 4, 32, 32)
    assert seen == [(k, c) for k in range(3) for c in (16, 32, 64, 128, 256)]


def test_cct_perturbation_order_is_the_reference() -> None:
    """aux1 feature noise, aux2 F.dropout(p=0.3), aux3 feature dropout (SSL4MIS ``UNet_CCT``)."""
    from sslbench.nn import augment as perturb
    from sslbench.nn.multihead import CCT_PERTURBATIONS

    assert CCT_PERTURBATIONS[0] is perturb.feature_noise and CCT_PERTURBATIONS[2] is perturb.feature_dropout
    torch.manual_seed(0)
    x = torch.ones(1, 1, 200, 200)
    for g in (None, torch.Generator().manual_seed(0)):   # the global generator, or the trainer's
        kept = (CCT_PERTURBATIONS[1](x, g=g) != 0).float().mean()
        assert float(kept) == pytest.approx(0.7, abs=0.01)
        assert float(CCT_PERTURBATIONS[1](x, g=g).max()) == pytest.approx(1 / 0.7)      # inverted dropout scaling


def test_in_place_activations_give_the_out_of_place_values_and_gradients() -> None:
    """The UNet's LeakyReLUs run in place (one saved map fewer each): its logits and every parameter's
    gradient, dropout active, equal those of the same network with out-of-place activations."""
    import copy

    torch.manual_seed(0)
    net = UNet(1, 4).train()
    plain = copy.deepcopy(net)
    for m in plain.modules():
        if isinstance(m, nn.LeakyReLU):
            m.inplace = False
    assert any(isinstance(m, nn.LeakyReLU) and m.inplace for m in net.modules())
    x = torch.randn(2, 1, 32, 32)
    grads = []
    for model in (net, plain):
        torch.manual_seed(1)  # the same dropout draws
        out = model(x)
        (out.square().mean() + out[:, 1].sum()).backward()
        grads.append([out.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
