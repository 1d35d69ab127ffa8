"""The 3-D track's network and inference: UA-MT's VNet (`code/networks/vnet.py`) and its sliding-window
prediction (`code/test_util.py`, ``test_single_case``), pinned by hand-worked numbers.

Everything here is tiny (widths 2-4 except the two full-width checks, volumes of a few voxels); the
file runs in seconds on one core."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sslbench.nn.sliding_window import pad_widths, sliding_window_predict, window_starts
from sslbench.nn.vnet import VNet, VNetOutput, build_vnet, convert_release_state_dict


# ================================================================== VNet: parameter count
def _conv(cin: int, cout: int, k: int) -> int:
    """Conv3d / ConvTranspose3d with bias: k^3 * cin * cout weights + cout biases."""
    return k ** 3 * cin * cout + cout


def _bn(c: int) -> int:
    """BatchNorm3d (or GroupNorm): an affine weight and bias per channel (running stats are buffers)."""
    return 2 * c


def _stage(units: int, cin: int, cout: int) -> int:
    """The release's ConvBlock(units, cin, cout, 'batchnorm'): units x (conv3x3x3 -> BN -> ReLU)."""
    return sum(_conv(cin if i == 0 else cout, cout, 3) + _bn(cout) for i in range(units))


def _step(cin: int, cout: int) -> int:
    """DownsamplingConvBlock / UpsamplingDeconvBlock: 2x2x2 stride-2 (transposed) conv -> BN -> ReLU."""
    return _conv(cin, cout, 2) + _bn(cout)


# The release's VNet(n_channels=1, n_classes=2, n_filters=16, normalization='batchnorm',
# has_dropout=True), stage by stage (Dropout3d has no parameters):
RELEASE_STAGES = {
    "block_one      ConvBlock(1, 1, 16)": (("encoder", 0), _stage(1, 1, 16)),          # 448 + 32 = 480
    "block_one_dw   16 -> 32": (("down", 0), _step(16, 32)),                            # 4,128 + 64 = 4,192
    "block_two      ConvBlock(2, 32, 32)": (("encoder", 1), _stage(2, 32, 32)),        # 2 x 27,744 = 55,488
    "block_two_dw   32 -> 64": (("down", 1), _step(32, 64)),                            # 16,448 + 128 = 16,576
    "block_three    ConvBlock(3, 64, 64)": (("encoder", 2), _stage(3, 64, 64)),        # 3 x 110,784 = 332,352
    "block_three_dw 64 -> 128": (("down", 2), _step(64, 128)),                          # 65,664 + 256 = 65,920
    "block_four     ConvBlock(3, 128, 128)": (("encoder", 3), _stage(3, 128, 128)),    # 3 x 442,752 = 1,328,256
    "block_four_dw  128 -> 256": (("down", 3), _step(128, 256)),                        # 262,400 + 512 = 262,912
    "block_five     ConvBlock(3, 256, 256)": (("encoder", 4), _stage(3, 256, 256)),    # 3 x 1,770,240 = 5,310,720
    "block_five_up  256 -> 128": (("up", 0), _step(256, 128)),                          # 262,272 + 256 = 262,528
    "block_six      ConvBlock(3, 128, 128)": (("decoder", 0), _stage(3, 128, 128)),    # 1,328,256
    "block_six_up   128 -> 64": (("up", 1), _step(128, 64)),                            # 65,600 + 128 = 65,728
    "block_seven    ConvBlock(3, 64, 64)": (("decoder", 1), _stage(3, 64, 64)),        # 332,352
    "block_seven_up 64 -> 32": (("up", 2), _step(64, 32)),                              # 16,416 + 64 = 16,480
    "block_eight    ConvBlock(2, 32, 32)": (("decoder", 2), _stage(2, 32, 32)),        # 55,488
    "block_eight_up 32 -> 16": (("up", 3), _step(32, 16)),                              # 4,112 + 32 = 4,144
    "block_nine     ConvBlock(1, 16, 16)": (("decoder", 3), _stage(1, 16, 16)),        # 6,928 + 32 = 6,960
    "out_conv       1x1x1 16 -> 2": (("head", None), _conv(16, 2, 1)),                  # 32 + 2 = 34
}
# encoder side 7,376,896 + decoder side 2,071,970
RELEASE_PARAMETERS = 9_448_866
# norm parameters: 2 x (16 + 2*32 + 3*64 + 3*128 + 3*256 + 3*128 + 3*64 + 2*32 + 16   (stages)
#                       + 32 + 64 + 128 + 256 + 128 + 64 + 32 + 16)                     (down / up steps)
#                = 2 x 2,800 = 5,600; instance norm (no affine) and "none" have none of them
NORM_PARAMETERS = 5_600


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def full_vnet() -> VNet:
    torch.manual_seed(0)
    return VNet(in_channels=1, num_classes=2, base_width=16, normalization="batchnorm", dropout=True)


def test_hand_count_adds_up() -> None:
    assert sum(n for _, n in RELEASE_STAGES.values()) == RELEASE_PARAMETERS
    assert _stage(1, 1, 16) == 480 and _step(16, 32) == 4_192 and _stage(3, 256, 256) == 5_310_720
    assert _conv(16, 2, 1) == 34


def test_parameter_count_equals_the_release_stage_by_stage(full_vnet: VNet) -> None:
    assert _count(full_vnet) == RELEASE_PARAMETERS
    for name, ((group, index), expected) in RELEASE_STAGES.items():
        module = getattr(full_vnet, group) if index is None else getattr(full_vnet, group)[index]
        assert _count(module) == expected, name
    built = build_vnet()
    assert _count(built) == RELEASE_PARAMETERS and built.dropout and built.normalization == "batchnorm"


@pytest.mark.parametrize(("normalization", "expected"), [
    ("groupnorm", RELEASE_PARAMETERS),                       # 16 groups, affine weight + bias per channel
    ("instancenorm", RELEASE_PARAMETERS - NORM_PARAMETERS),  # PyTorch default: affine=False
    ("none", RELEASE_PARAMETERS - NORM_PARAMETERS),
])
def test_parameter_count_of_the_other_normalisations(normalization: str, expected: int) -> None:
    assert _count(VNet(1, 2, 16, normalization)) == expected


def test_layout_is_plain_conv_stacks_with_stride_two_steps(full_vnet: VNet) -> None:
    def convs(stage: nn.Module) -> int:
        return sum(isinstance(m, nn.Conv3d) for m in stage.modules())
    assert [convs(s) for s in full_vnet.encoder] == [1, 2, 3, 3, 3]
    assert [convs(s) for s in full_vnet.decoder] == [3, 3, 2, 1]
    for step in full_vnet.down:
        assert isinstance(step[0], nn.Conv3d) and step[0].kernel_size == (2, 2, 2) and step[0].stride == (2, 2, 2)
    for step in full_vnet.up:
        assert isinstance(step[0], nn.ConvTranspose3d) and step[0].kernel_size == (2, 2, 2)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in full_vnet.modules()) == 12 + 9 + 8   # units + steps
    assert full_vnet.head.kernel_size == (1, 1, 1)


def test_output_shape_and_features(full_vnet: VNet) -> None:
    full_vnet.eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        logits = full_vnet(x)
        out = full_vnet(x, features=True)
    assert logits.shape == (1, 2, 32, 32, 32)
    assert isinstance(out, VNetOutput) and torch.equal(out.logits, logits)
    assert out.bottleneck.shape == (1, 256, 2, 2, 2)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32, 24), (1, 1, 40, 32, 32), (1, 1, 8, 16, 16)])
def test_sizes_not_divisible_by_16_are_refused(shape: tuple[int, ...]) -> None:
    # The release has no check: the stride-2 convs floor odd sizes and the skip addition then fails
    # with a size mismatch. Here the refusal is up front and says why.
    net = VNet(1, 2, base_width=2)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(*shape))
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        net(torch.randn(1, 32, 32, 32))


def test_bad_normalisation_is_refused() -> None:
    with pytest.raises(ValueError, match="normalization"):
        VNet(1, 2, normalization="layernorm")
    with pytest.raises(ValueError, match="16 groups"):
        VNet(1, 2, base_width=8, normalization="groupnorm")


# ================================================================== VNet: the math, by a functional restatement
def _reference_forward(net: VNet, x: torch.Tensor, training: bool, dropout: bool) -> torch.Tensor:
    """The release's forward written out with functional ops and `net`'s own tensors: units of
    conv3x3x3 -> BN -> ReLU (1, 2, 3, 3, 3 of them down, 3, 3, 2, 1 up), 2x2x2 stride-2 convs down,
    transposed convs up, skips *added*, channel dropout p = 0.5 on the bottleneck and before the 1x1
    head. BN running statistics are copied, so the network's own are not touched."""
    def bn(h: torch.Tensor, m: nn.BatchNorm3d) -> torch.Tensor:
        return F.batch_norm(h, m.running_mean.clone(), m.running_var.clone(), m.weight, m.bias,
                            training, m.momentum, m.eps)

    def stage(h: torch.Tensor, seq: nn.Sequential, units: int) -> torch.Tensor:
        for u in range(units):
            conv, norm = seq[3 * u], seq[3 * u + 1]
            h = F.relu(bn(F.conv3d(h, conv.weight, conv.bias, padding=1), norm))
        return h

    def down(h: torch.Tensor, seq: nn.Sequential) -> torch.Tensor:
        return F.relu(bn(F.conv3d(h, seq[0].weight, seq[0].bias, stride=2), seq[1]))

    def up(h: torch.Tensor, seq: nn.Sequential) -> torch.Tensor:
        return F.relu(bn(F.conv_transpose3d(h, seq[0].weight, seq[0].bias, stride=2), seq[1]))

    skips = []
    h = x
    for i, units in enumerate((1, 2, 3, 3)):
        h = stage(h, net.encoder[i], units)
        skips.append(h)
        h = down(h, net.down[i])
    h = stage(h, net.encoder[4], 3)
    h = F.dropout3d(h, 0.5, training=training and dropout)
    for i, units in enumerate((3, 3, 2, 1)):
        h = stage(up(h, net.up[i]) + skips[3 - i], net.decoder[i], units)
    h = F.dropout3d(h, 0.5, training=training and dropout)
    return F.conv3d(h, net.head.weight, net.head.bias)


@pytest.fixture()
def small_vnet() -> VNet:
    torch.manual_seed(3)
    net = VNet(1, 3, base_width=2, normalization="batchnorm", dropout=True)
    with torch.no_grad():                       # non-trivial BN statistics, so eval mode is pinned too
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net


@pytest.mark.parametrize("training", [False, True])
def test_forward_equals_the_functional_restatement(small_vnet: VNet, training: bool) -> None:
    x = torch.randn(2, 1, 16, 16, 32, generator=torch.Generator().manual_seed(1))
    small_vnet.train(training)
    with torch.no_grad():
        torch.manual_seed(11)
        got = small_vnet(x)
        torch.manual_seed(11)                   # the same dropout masks, drawn in the same order
        want = _reference_forward(small_vnet, x, training, dropout=True)
    assert got.shape == (2, 3, 16, 16, 32)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ================================================================== VNet: dropout where and when the release has it
def _dropout_calls(net: VNet, x: torch.Tensor, **kwargs: bool) -> list[tuple[tuple[int, ...], bool]]:
    calls: list[tuple[tuple[int, ...], bool]] = []
    handle = net.drop.register_forward_hook(lambda m, i, o: calls.append((tuple(i[0].shape), m.training)))
    with torch.no_grad():
        net(x, **kwargs)
    handle.remove()
    return calls


def test_one_dropout3d_with_p_half_applied_at_the_bottleneck_and_before_the_head() -> None:
    net = VNet(1, 2, base_width=4, dropout=True)
    drops = [m for m in net.modules() if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                                        nn.AlphaDropout))]
    assert len(drops) == 1 and isinstance(drops[0], nn.Dropout3d) and drops[0].p == 0.5
    x = torch.randn(2, 1, 16, 32, 16)
    net.train()
    assert _dropout_calls(net, x) == [((2, 64, 1, 2, 1), True), ((2, 4, 16, 32, 16), True)]
    assert _dropout_calls(net, x, no_dropout=True) == []               # the release's turnoff_drop
    off = VNet(1, 2, base_width=4, dropout=False).train()
    assert _dropout_calls(off, x) == []


def test_dropout_acts_in_train_mode_only() -> None:
    torch.manual_seed(0)
    net = VNet(1, 2, base_width=4, dropout=True)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        net.train()        # UA-MT's teacher: train mode, plain calls -> T different MC samples
        a, b = net(x), net(x)
        assert not torch.allclose(a, b)
        c, d = net(x, no_dropout=True), net(x, no_dropout=True)
        assert torch.equal(c, d)
        net.eval()         # evaluation: deterministic
        assert torch.equal(net(x), net(x))
    off = VNet(1, 2, base_width=4, dropout=False).train()
    with torch.no_grad():
        assert torch.equal(off(x), off(x))    # train-mode BN alone is deterministic


def test_dropout_zeroes_whole_channels_and_scales_by_two() -> None:
    """Dropout3d drops whole feature maps of the last decoder stage: with the head's weights set to
    pick one channel, each sample's output map is either all zeros or twice the undropped map."""
    torch.manual_seed(4)
    net = VNet(1, 1, base_width=2, normalization="none", dropout=True)
    calls: list[int] = []

    def only_the_last(module: nn.Module, args: tuple[torch.Tensor]) -> None:
        calls.append(1)                          # p = 0 at the bottleneck (first call), 0.5 before the head
        module.p = 0.5 if len(calls) % 2 == 0 else 0.0

    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.weight[0, 0] = 1.0              # the output is channel 0 of the last decoder stage
        x = torch.randn(16, 1, 16, 16, 16)
        net.train()
        plain = net(x, no_dropout=True)
        assert plain.abs().sum() > 0
        handle = net.drop.register_forward_pre_hook(only_the_last)
        dropped = net(x)
        handle.remove()
    assert len(calls) == 2
    for i in range(x.shape[0]):
        kept = torch.allclose(dropped[i], 2 * plain[i])
        gone = bool((dropped[i] == 0).all())
        assert kept != gone or (plain[i] == 0).all()
    assert any(bool((dropped[i] == 0).all()) for i in range(16))
    assert any(torch.allclose(dropped[i], 2 * plain[i]) and plain[i].abs().sum() > 0 for i in range(16))


# ================================================================== VNet: release checkpoints load
def test_release_checkpoint_keys_are_renamed() -> None:
    net = VNet(1, 2)
    mine = net.state_dict()
    # A few of the release's keys and shapes, written down from its layer definitions.
    release = {
        "block_one.conv.0.weight": (16, 1, 3, 3, 3),
        "block_one.conv.1.running_var": (16,),
        "block_two.conv.3.weight": (32, 32, 3, 3, 3),           # second unit's conv (conv, BN, ReLU per unit)
        "block_one_dw.conv.0.weight": (32, 16, 2, 2, 2),
        "block_five.conv.7.bias": (256,),                       # third unit's BN
        "block_five_up.conv.0.weight": (256, 128, 2, 2, 2),     # ConvTranspose3d: (in, out, k, k, k)
        "block_eight_up.conv.1.num_batches_tracked": (),
        "block_nine.conv.0.weight": (16, 16, 3, 3, 3),
        "out_conv.weight": (2, 16, 1, 1, 1),
        "out_conv.bias": (2,),
    }
    renamed = convert_release_state_dict({k: torch.zeros(s) for k, s in release.items()})
    assert set(renamed) == {"encoder.0.0.weight", "encoder.0.1.running_var", "encoder.1.3.weight", "down.0.0.weight",
                            "encoder.4.7.bias", "up.0.0.weight", "up.3.1.num_batches_tracked", "decoder.3.0.weight",
                            "head.weight", "head.bias"}
    for key, value in renamed.items():
        assert mine[key].shape == value.shape, key
    # BCP's layout: the same layers under encoder./decoder., plus heads its LA forward never uses
    bcp = {"encoder.block_one.conv.0.weight": torch.zeros(16, 1, 3, 3, 3),
           "decoder.block_six.conv.0.bias": torch.zeros(128), "decoder.out_conv.bias": torch.zeros(2),
           "projection_head.0.weight": torch.zeros(32, 16), "contrastive_class_selector_memory1.3.bias": torch.zeros(1),
           "module.contrastive_class_selector_0.0.weight": torch.zeros(32, 32)}
    assert set(convert_release_state_dict(bcp)) == {"encoder.0.0.weight", "decoder.0.0.bias", "head.bias"}
    with pytest.raises(KeyError, match="block_ten"):
        convert_release_state_dict({"block_ten.conv.0.weight": torch.zeros(1)})


# ================================================================== sliding window: window arithmetic
@pytest.mark.parametrize(("size", "patch", "stride", "starts"), [
    (6, 4, 2, [0, 2]),                  # ceil(2/2) + 1 = 2
    (5, 4, 2, [0, 1]),                  # ceil(1/2) + 1 = 2, the last pulled back to 5 - 4
    (4, 4, 2, [0]),                     # ceil(0/2) + 1 = 1
    (10, 4, 3, [0, 3, 6]),              # ceil(6/3) + 1 = 3, lands flush
    (11, 4, 3, [0, 3, 6, 7]),           # ceil(7/3) + 1 = 4
    (140, 112, 18, [0, 18, 28]),        # LA in-plane: ceil(28/18) + 1 = 3
    (88, 80, 4, [0, 4, 8]),             # LA slices: ceil(8/4) + 1 = 3
    (112, 112, 18, [0]),
])
def test_window_starts_follow_the_release_formula(size: int, patch: int, stride: int, starts: list[int]) -> None:
    assert window_starts(size, patch, stride) == starts
    assert len(starts) == math.ceil((size - patch) / stride) + 1


@pytest.mark.parametrize(("shape", "patch", "widths"), [
    ((3, 5, 2), (4, 4, 4), ((0, 1), (0, 0), (1, 1))),
    ((1, 4, 9), (4, 4, 4), ((1, 2), (0, 0), (0, 0))),       # odd: the extra voxel after
    ((100, 130, 70), (112, 112, 80), ((6, 6), (0, 0), (5, 5))),
    ((111, 112, 77), (112, 112, 80), ((0, 1), (0, 0), (1, 2))),
])
def test_pad_widths(shape: tuple[int, ...], patch: tuple[int, ...], widths: tuple[tuple[int, int], ...]) -> None:
    assert pad_widths(shape, patch) == widths


def _coded(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel (x, y, z) holds 1000 + 100x + 10y + z: a window's corner value names its start, and any
    zero is padding."""
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    return (1000 + 100 * x + 10 * y + z).astype(np.float32)


def _corner(window: torch.Tensor) -> tuple[int, int, int]:
    code = round(float(window[0, 0, 0])) - 1000
    return code // 100, code // 10 % 10, code % 10


class WindowNet:
    """Class 1 gets probability q(window start), constant over the window; records what it sees."""

    def __init__(self, q: dict[tuple[int, int, int], float]) -> None:
        self.q = q
        self.seen: list[tuple[int, int, int]] = []
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.empty(x.shape[0], 2, *x.shape[2:])
        for b in range(x.shape[0]):
            corner = _corner(x[b, 0])
            self.seen.append(corner)
            q = self.q[corner]
            out[b, 0], out[b, 1] = math.log(1 - q), math.log(q)     # softmax -> (1 - q, q)
        return out


# The (6, 5, 4) case, patch (4, 4, 4), strides 2 / 2: windows x at 0 and 2, y at 0 and 1, z at 0.
Q = {(0, 0, 0): 0.1, (0, 1, 0): 0.2, (2, 0, 0): 0.7, (2, 1, 0): 0.9}


def test_windows_are_visited_x_outermost_and_cover_what_they_should() -> None:
    net = WindowNet(Q)
    sliding_window_predict(net, _coded((6, 5, 4)), 2, patch=(4, 4, 4), stride_xy=2, stride_z=2)
    assert net.seen == [(0, 0, 0), (0, 1, 0), (2, 0, 0), (2, 1, 0)]
    assert net.calls == 4


@pytest.mark.parametrize(("voxel", "windows"), [
    ((0, 0, 1), [(0, 0, 0)]),                                       # x < 2, y < 1: the first window only
    ((0, 4, 2), [(0, 1, 0)]),                                       # y = 4 only in windows starting at y 1
    ((5, 0, 3), [(2, 0, 0)]),
    ((5, 4, 0), [(2, 1, 0)]),
    ((1, 2, 0), [(0, 0, 0), (0, 1, 0)]),                            # (0.1 + 0.2) / 2 = 0.15
    ((3, 0, 0), [(0, 0, 0), (2, 0, 0)]),                            # (0.1 + 0.7) / 2 = 0.4
    ((3, 4, 1), [(0, 1, 0), (2, 1, 0)]),                            # (0.2 + 0.9) / 2 = 0.55 -> label 1
    ((3, 2, 2), [(0, 0, 0), (0, 1, 0), (2, 0, 0), (2, 1, 0)]),      # 1.9 / 4 = 0.475 -> label 0
])
def test_probabilities_are_averaged_over_the_covering_windows(voxel: tuple[int, int, int],
                                                              windows: list[tuple[int, int, int]]) -> None:
    labels, probs = sliding_window_predict(WindowNet(Q), _coded((6, 5, 4)), 2, patch=(4, 4, 4),
                                           stride_xy=2, stride_z=2)
    assert labels.shape == (6, 5, 4) and labels.dtype == np.uint8
    assert probs.shape == (2, 6, 5, 4) and probs.dtype == np.float32
    q = sum(Q[w] for w in windows) / len(windows)
    assert probs[1][voxel] == pytest.approx(q, abs=1e-6)
    assert probs[0][voxel] == pytest.approx(1 - q, abs=1e-6)
    assert labels[voxel] == int(q > 0.5)


def test_probability_map_values_by_hand_everywhere() -> None:
    _, probs = sliding_window_predict(WindowNet(Q), _coded((6, 5, 4)), 2, patch=(4, 4, 4), stride_xy=2, stride_z=2)
    # Per (x, y) column (z does not matter: one window along z). x: 0-1 -> {x0}, 2-3 -> {x0, x2}, 4-5 -> {x2};
    # y: 0 -> {y0}, 1-3 -> {y0, y1}, 4 -> {y1}.
    xs = {0: [0], 1: [0], 2: [0, 2], 3: [0, 2], 4: [2], 5: [2]}
    ys = {0: [0], 1: [0, 1], 2: [0, 1], 3: [0, 1], 4: [1]}
    want = np.empty((6, 5), np.float64)
    for x in range(6):
        for y in range(5):
            qs = [Q[(a, b, 0)] for a in xs[x] for b in ys[y]]
            want[x, y] = sum(qs) / len(qs)
    np.testing.assert_allclose(probs[1], np.repeat(want[:, :, None], 4, axis=2), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)


# ================================================================== sliding window: padding and crop
def test_small_volume_is_zero_padded_on_both_sides_and_cropped_back() -> None:
    vol = _coded((3, 5, 2))
    seen: list[torch.Tensor] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        seen.extend(x[:, 0].clone())
        return torch.cat([torch.zeros_like(x), x / 1000 - 1.2005], dim=1)   # class-1 logit from the voxel value

    labels, probs = sliding_window_predict(net, vol, 2, patch=(4, 4, 4), stride_xy=2, stride_z=2)
    # padded to (4, 5, 4): x (0, 1), y none, z (1, 1); windows x [0], y [0, 1], z [0]
    assert len(seen) == 2
    first = seen[0].numpy()
    np.testing.assert_array_equal(first[3], 0)                  # x: the one pad voxel after
    np.testing.assert_array_equal(first[:, :, 0], 0)            # z: one before...
    np.testing.assert_array_equal(first[:, :, 3], 0)            # ...and one after
    np.testing.assert_array_equal(first[:3, :, 1:3], vol[:, 0:4, :])
    np.testing.assert_array_equal(seen[1].numpy()[:3, :, 1:3], vol[:, 1:5, :])
    # cropped back: each voxel's own sigmoid, whether one window covered it or two
    assert labels.shape == (3, 5, 2) and probs.shape == (2, 3, 5, 2)
    want = 1 / (1 + np.exp(-(vol.astype(np.float64) / 1000 - 1.2005)))
    np.testing.assert_allclose(probs[1], want, atol=1e-6)
    np.testing.assert_array_equal(labels, (vol > 1200).astype(np.uint8))


def test_padding_is_what_the_network_predicts_on_not_what_is_returned() -> None:
    # A net that answers "1" exactly on zero (padding) voxels: nothing of it may survive the crop.
    def net(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), torch.where(x == 0, 5.0, -5.0)], dim=1)

    labels, probs = sliding_window_predict(net, _coded((1, 4, 9)), 2, patch=(4, 4, 4), stride_xy=3, stride_z=3)
    assert labels.shape == (1, 4, 9) and not labels.any()
    np.testing.assert_allclose(probs[1], 1 / (1 + math.exp(5.0)), rtol=1e-6)


# ================================================================== sliding window: batching, inputs
@pytest.mark.parametrize("batch_size", [2, 3, 4, 7])
def test_batched_windows_equal_one_at_a_time(batch_size: int) -> None:
    vol = _coded((6, 5, 7))                                         # windows 2 x 2 x 2 with stride_z 3
    q = {(x, y, z): 0.05 + 0.1 * i for i, (x, y, z) in
         enumerate((x, y, z) for x in (0, 2) for y in (0, 1) for z in (0, 3))}
    one = WindowNet(q)
    many = WindowNet(q)
    l1, p1 = sliding_window_predict(one, vol, 2, patch=(4, 4, 4), stride_xy=2, stride_z=3)
    lb, pb = sliding_window_predict(many, torch.from_numpy(vol), 2, patch=(4, 4, 4), stride_xy=2, stride_z=3,
                                    batch_size=batch_size)
    assert many.seen == one.seen and len(one.seen) == 8
    assert many.calls == math.ceil(8 / batch_size)
    np.testing.assert_array_equal(lb, l1)
    np.testing.assert_array_equal(pb, p1)


def test_batched_windows_with_a_real_vnet() -> None:
    torch.manual_seed(2)
    net = VNet(1, 2, base_width=2).eval()
    vol = np.random.default_rng(0).standard_normal((20, 18, 13)).astype(np.float64)   # float64: cast, z padded
    l1, p1 = sliding_window_predict(net, vol, 2, patch=(16, 16, 16), stride_xy=3, stride_z=4)
    lb, pb = sliding_window_predict(net, vol, 2, patch=(16, 16, 16), stride_xy=3, stride_z=4, batch_size=4)
    assert l1.shape == (20, 18, 13) and p1.shape == (2, 20, 18, 13)
    np.testing.assert_allclose(pb, p1, atol=1e-6)     # the conv backend may round a batch differently
    np.testing.assert_array_equal(lb, np.argmax(pb, axis=0))


def test_wrong_logit_shapes_and_volumes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        sliding_window_predict(lambda x: x, _coded((4, 4, 4)), 2, patch=(4, 4, 4))
    with pytest.raises(ValueError, match="3-D"):
        sliding_window_predict(WindowNet(Q), np.zeros((1, 4, 4, 4)), 2, patch=(4, 4, 4))
    with pytest.raises(ValueError, match="pad it first"):
        window_starts(3, 4, 2)
