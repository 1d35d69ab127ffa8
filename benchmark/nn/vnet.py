"""The 3-D VNet of UA-MT (`code/networks/vnet.py`), the network of the Left Atrium benchmark that UA-MT
and BCP train.

Layout (widths for ``base_width`` w = 16; every stage is a plain stack of conv3x3x3 -> norm -> ReLU
units, *not* the residual variant the file also defines, because ``VNet`` only instantiates the
plain ``ConvBlock``):

    encoder   1 unit  in -> w  | down 2x2x2/2 w -> 2w
              2 units 2w       | down 2w -> 4w
              3 units 4w       | down 4w -> 8w
              3 units 8w       | down 8w -> 16w
              3 units 16w      (bottleneck, then dropout)
    decoder   up (transposed 2x2x2/2) 16w -> 8w, + skip of the 8w stage, 3 units 8w
              up 8w -> 4w, + skip, 3 units 4w
              up 4w -> 2w, + skip, 2 units 2w
              up 2w -> w,  + skip, 1 unit  w (then dropout)
    head      conv 1x1x1 w -> classes

Skips are *added* (not concatenated). Every down / up step is conv -> norm -> ReLU too. With
``VNet(1, 2)`` and batch norm the network has 9,448,866 parameters, the release's count.

What the release does and this module reproduces on purpose:

- One single ``Dropout3d(p=0.5)`` module, used twice: on the bottleneck output (which then feeds only
  the decoder; the four skips are never dropped) and on the last decoder stage just before the 1x1
  head (release lines 177, 195-196, 225-226). Channel-wise (whole feature maps) dropout, p = 0.5 at
  both places. It acts only when the network was built with ``dropout=True`` (the release's
  ``has_dropout``) *and* the module is in train mode (``nn.Dropout3d`` is the identity in eval mode).
  UA-MT's uncertainty estimate (``train_LA_meanteacher_certainty_unlabel.py`` lines 119-120, 150-158)
  keeps the EMA teacher in train mode and calls it plainly, ``ema_model(inputs)``, T = 8 times with
  noise: the Monte-Carlo passes differ through this dropout (and through train-mode batch norm).
  Testing (``test_LA.py`` line 27, 31) builds ``has_dropout=False`` and calls ``net.eval()``; the
  weights are the same either way (dropout has none).
- ``forward(x, no_dropout=True)`` is the release's ``turnoff_drop=True`` (skip the dropout for one
  call, whatever the mode); UA-MT's scripts never use it.
- Group norm has 16 groups whatever the width (release lines 20, 77, 104), so it needs widths that
  are multiples of 16; instance norm is PyTorch's default (no affine parameters, no running
  statistics); "none" leaves the conv -> ReLU (the down / up steps then differ only by the missing
  norm, as in the release).
- Down / up steps have kernel 2, stride 2, no padding: each spatial size must be divisible by 16 (four
  halvings), else the skip additions cannot line up. The release then fails inside the addition with
  a size mismatch; here ``forward`` refuses such inputs up front with a ``ValueError`` naming the size.
- PyTorch's default initialisation (the release's ``__init_weight`` is commented out and never called).
- ``nn.ReLU(inplace=True)`` as the release; the values are those of an out-of-place ReLU.

The parameter names are this module's own (``encoder.0``, ``down.0``, ...); ``convert_release_state_dict``
renames a UA-MT or BCP checkpoint's keys so that their published weights load here.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

NORMALIZATIONS = ("batchnorm", "groupnorm", "instancenorm", "none")
GROUPNORM_GROUPS = 16       # hard-coded in the release, whatever the width
DROPOUT_P = 0.5
ENCODER_UNITS = (1, 2, 3, 3, 3)   # conv units per encoder stage, finest to the bottleneck
DECODER_UNITS = (3, 3, 2, 1)      # conv units per decoder stage, coarsest to finest
DOWNSAMPLINGS = len(ENCODER_UNITS) - 1
SIZE_MULTIPLE = 2 ** DOWNSAMPLINGS  # 16


def _norm(kind: str, channels: int) -> list[nn.Module]:
    """The normalisation layer after each conv, as a list (empty for "none")."""
    if kind == "batchnorm":
        return [nn.BatchNorm3d(channels)]
    if kind == "groupnorm":
        return [nn.GroupNorm(num_groups=GROUPNORM_GROUPS, num_channels=channels)]
    if kind == "instancenorm":
        return [nn.InstanceNorm3d(channels)]
    if kind == "none":
        return []
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")


def _conv_stage(units: int, cin: int, cout: int, norm: str) -> nn.Sequential:
    """``units`` times conv3x3x3 (padding 1) -> norm -> ReLU, flat (one Sequential, like the release's
    ``ConvBlock.conv``, so that the inner indices of a checkpoint carry over unchanged)."""
    layers: list[nn.Module] = []
    for i in range(units):
        layers.append(nn.Conv3d(cin if i == 0 else cout, cout, kernel_size=3, padding=1))
        layers += _norm(norm, cout)
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _resample(cin: int, cout: int, norm: str, up: bool) -> nn.Sequential:
    """Halve (strided conv) or double (transposed conv) every spatial size: kernel 2, stride 2,
    padding 0, then norm -> ReLU."""
    conv = nn.ConvTranspose3d if up else nn.Conv3d
    return nn.Sequential(conv(cin, cout, kernel_size=2, stride=2, padding=0), *_norm(norm, cout),
                         nn.ReLU(inplace=True))


@dataclass
class VNetOutput:
    logits: Tensor
    bottleneck: Tensor   # the deepest encoder stage, after the dropout (what BCP's VNet hands on)


class VNet(nn.Module):
    """UA-MT's VNet: ``forward(x)`` maps (N, in_channels, D, H, W) to logits (N, num_classes, D, H, W);
    D, H and W must each be divisible by 16."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_width: int = 16,
                 normalization: str = "batchnorm", dropout: bool = False) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if normalization == "groupnorm" and base_width % GROUPNORM_GROUPS:
            raise ValueError(f"groupnorm uses {GROUPNORM_GROUPS} groups (as the release): base_width must be "
                             f"a multiple of {GROUPNORM_GROUPS}, got {base_width}")
        widths = [base_width * 2 ** i for i in range(len(ENCODER_UNITS))]   # 16, 32, 64, 128, 256
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.normalization = normalization
        self.dropout = dropout

        cins = [in_channels] + widths[1:]
        self.encoder = nn.ModuleList(_conv_stage(n, cin, w, normalization)
                                     for n, cin, w in zip(ENCODER_UNITS, cins, widths))
        self.down = nn.ModuleList(_resample(widths[i], widths[i + 1], normalization, up=False)
                                  for i in range(DOWNSAMPLINGS))
        rev = widths[::-1]                                                   # 256, 128, 64, 32, 16
        self.up = nn.ModuleList(_resample(rev[i], rev[i + 1], normalization, up=True)
                                for i in range(DOWNSAMPLINGS))
        self.decoder = nn.ModuleList(_conv_stage(n, w, w, normalization) for n, w in zip(DECODER_UNITS, rev[1:]))
        self.head = nn.Conv3d(base_width, num_classes, kernel_size=1)
        # Built whatever `dropout` says (as the release); one module serves both places.
        self.drop = nn.Dropout3d(p=DROPOUT_P)

    def _check_size(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"VNet expects (N, C, D, H, W), got shape {tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % SIZE_MULTIPLE]
        if bad:
            raise ValueError(f"VNet needs every spatial size divisible by {SIZE_MULTIPLE} (four stride-2 "
                             f"steps whose outputs are added to the skips), got {tuple(x.shape[2:])}")

    def forward(self, x: Tensor, features: bool = False, no_dropout: bool = False) -> Tensor | VNetOutput:
        """Logits (N, num_classes, D, H, W); with ``features`` also the bottleneck. ``no_dropout`` skips
        the dropout for this call (the release's ``turnoff_drop``); otherwise dropout acts when built
        with ``dropout=True`` and in train mode."""
        self._check_size(x)
        use_drop = self.dropout and not no_dropout
        skips = []
        h = x
        for stage, down in zip(self.encoder[:-1], self.down):
            h = stage(h)
            skips.append(h)
            h = down(h)
        h = self.encoder[-1](h)
        if use_drop:
            h = self.drop(h)
        bottleneck = h
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            h = stage(up(h) + skip)
        if use_drop:
            h = self.drop(h)
        logits = self.head(h)
        if features:
            return VNetOutput(logits, bottleneck)
        return logits


# ------------------------------------------------------------------ release checkpoints
_ENCODER_NAMES = ("one", "two", "three", "four", "five")
_DECODER_NAMES = ("six", "seven", "eight", "nine")
_RELEASE_PREFIX = {
    **{f"block_{n}": f"encoder.{i}" for i, n in enumerate(_ENCODER_NAMES)},
    **{f"block_{n}_dw": f"down.{i}" for i, n in enumerate(_ENCODER_NAMES[:4])},
    **{f"block_{n}_up": f"up.{i}" for i, n in enumerate(("five", "six", "seven", "eight"))},
    **{f"block_{n}": f"decoder.{i}" for i, n in enumerate(_DECODER_NAMES)},
}
# BCP's VNet wraps the same layers in `encoder.` / `decoder.` and adds heads its LA forward never uses.
_BCP_UNUSED = re.compile(r"^(projection_head|prediction_head|contrastive_class_selector_(memory)?\d+)\.")
_RELEASE_KEY = re.compile(r"^(?:module\.)?(?:encoder\.|decoder\.)?(block_[a-z]+(?:_dw|_up)?)\.conv\.(.+)$")
_RELEASE_HEAD = re.compile(r"^(?:module\.)?(?:decoder\.)?out_conv\.(.+)$")


def convert_release_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a UA-MT (``block_one.conv.0.weight``, ``out_conv.bias``) or BCP (``encoder.block_one...``,
    ``decoder.out_conv...``) VNet state dict to this module's keys (``encoder.0.0.weight``,
    ``head.bias``); a ``module.`` prefix (DataParallel) is dropped, BCP's unused projection /
    selector heads are left out. Any other key is an error. Load the result with ``strict=True``."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        bare = key.removeprefix("module.")
        if _BCP_UNUSED.match(bare):
            continue
        m = _RELEASE_KEY.match(key)
        if m and m.group(1) in _RELEASE_PREFIX:
            out[f"{_RELEASE_PREFIX[m.group(1)]}.{m.group(2)}"] = value
            continue
        m = _RELEASE_HEAD.match(key)
        if m:
            out[f"head.{m.group(1)}"] = value
            continue
        raise KeyError(f"not a key of the UA-MT / BCP VNet: {key!r}")
    return out


def build_vnet(in_channels: int = 1, num_classes: int = 2, base_width: int = 16, dropout: bool = True) -> VNet:
    """The LA benchmark's network as UA-MT and BCP train it: batch norm, dropout on (both release
    training scripts build ``has_dropout=True``; evaluation puts the network in eval mode)."""
    return VNet(in_channels, num_classes, base_width, "batchnorm", dropout)


__all__ = ["VNet", "VNetOutput", "build_vnet", "convert_release_state_dict"]
