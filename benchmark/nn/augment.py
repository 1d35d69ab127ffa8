"""Every device-side transform in one place: input augmentations, view pairs and feature perturbations.

Spatial and photometric augmentations, shared by every method that needs more than SSL4MIS's
rot/flip (MONA, the contrastive frameworks, FixMatch-style plugins):

* ``SpatialTransform``: one sampling grid per sample that warps images (bilinear), label maps
  (nearest) and probability maps (bilinear) identically, plus the validity mask of warped pixels:
  what equivariance losses need (``T(f(x))`` vs ``f(T(x))``).
* ``random_spatial``: rotation, isotropic scale, translation, horizontal flip, and an optional smooth
  diffeomorphic deformation (a random smooth velocity field integrated by scaling and squaring, so
  the warp cannot fold).
* ``photometric``: per-sample brightness / contrast jitter and Gaussian blur (the strong view).
* ``cutmix``: each sample mixed with the next one in the batch inside a box of half the area, the same
  box applied to its targets.

All randomness comes from one ``torch.Generator`` on the batch's device, so nothing waits for the host.

SSL4MIS's weak augmentation (the trainer's ``augment = "ssl4mis"``, one ``grid_sample`` for the
whole batch): ``ssl4mis_weak`` reproduces SSL4MIS's ``RandomGenerator`` (2020-2025 version) per slice: with
probability 0.5 a rot90 by k in {0..3} followed by a flip of a random axis; otherwise, with
probability 0.5, a rotation by an integer angle in [-20, 19] degrees (nearest neighbour, zero fill,
no reshape); otherwise nothing. Images and labels are both resampled with nearest neighbour, as
SSL4MIS's ``order=0``. SSL4MIS rotates a slice at its native size and zooms it to the network size
after; our slices are zoomed first, so the small rotation is composed in the native pixel aspect
(``aspect`` = native height / width per slice): the same map as rotate-then-zoom up to
interpolation, where a rotation of the square grid would shear a 256 x 216 slice. rot90 and flips
map the normalised square onto itself, so they need no correction.

Feature perturbations of CCT (Ouali 2020) as SSL4MIS implements them (CCT and URPC): ``feature_noise``,
``feature_dropout``, ``dropout``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def uniform(shape: int | tuple[int, ...], low: float, high: float, g: torch.Generator, device: torch.device) -> Tensor:
    """U(low, high) draws of ``shape`` from ``g`` on ``device`` (every random factor of the augmenters)."""
    return low + (high - low) * torch.rand(shape, generator=g, device=device)


@dataclass
class SpatialTransform:
    grid: Tensor  # (B, H, W, 2) normalised sampling coordinates (align_corners=False)

    def apply(self, x: Tensor, kind: str = "image") -> Tensor:
        """Warp (B, C, H, W) images / probabilities, or (B, H, W) label maps (``kind="label"``)."""
        if kind == "label":
            return F.grid_sample(x[:, None].float(), self.grid, mode="nearest", padding_mode="zeros",
                                 align_corners=False)[:, 0].round().to(x.dtype)
        mode = "bilinear" if kind in ("image", "prob") else kind
        return F.grid_sample(x, self.grid.to(x.dtype), mode=mode, padding_mode="zeros", align_corners=False)

    def valid(self) -> Tensor:
        """(B, 1, H, W) mask of output pixels whose bilinear sample lies between input pixel centres
        (untouched by the zero padding): where a warped map can be compared with a warped input."""
        h, w = self.grid.shape[1:3]
        limit = torch.tensor([1 - 1 / w, 1 - 1 / h], device=self.grid.device, dtype=self.grid.dtype)
        return (self.grid.abs() <= limit).all(dim=-1)[:, None].float()


def identity_grid(n: int, h: int, w: int, device: torch.device) -> Tensor:
    eye = torch.eye(2, 3, device=device).expand(n, 2, 3)
    return F.affine_grid(eye, [n, 1, h, w], align_corners=False)


def smooth_displacement(n: int, h: int, w: int, magnitude: float, g: torch.Generator, device: torch.device,
                        control: int = 8, steps: int = 6) -> Tensor:
    """A diffeomorphic displacement (B, H, W, 2): a smooth random velocity field on a ``control`` grid,
    upsampled, integrated by scaling and squaring (``steps`` compositions)."""
    v = torch.randn(n, 2, control, control, generator=g, device=device) * magnitude
    v = F.interpolate(v, size=(h, w), mode="bicubic", align_corners=False) / (2 ** steps)
    base = identity_grid(n, h, w, device)
    disp = v.permute(0, 2, 3, 1)
    for _ in range(steps):  # phi <- phi o phi
        disp = disp + F.grid_sample(disp.permute(0, 3, 1, 2), base + disp, mode="bilinear",
                                    padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
    return disp


def random_spatial(n: int, h: int, w: int, g: torch.Generator, device: torch.device, rotate: float = 60.0,
                   scale: tuple[float, float] = (1 / 1.2, 1 / 0.8), translate: float = 0.1, flip: bool = True,
                   deform: float = 0.0) -> SpatialTransform:
    """Random per-sample affine warps (defaults: MONA's RandTPS affine ranges) and an optional smooth
    deformation of standard deviation ``deform`` (normalised units; up to about 0.1 it does not fold)."""
    angle = uniform(n, -rotate, rotate, g, device) * (math.pi / 180)
    s = uniform(n, *scale, g, device)
    t = uniform(2 * n, -translate, translate, g, device).view(n, 2)
    mirror = torch.where(torch.rand(n, generator=g, device=device) < 0.5, -1.0, 1.0) if flip \
        else torch.ones(n, device=device)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    mat = torch.stack([torch.stack([cos * mirror, -sin, t[:, 0]], dim=1),
                       torch.stack([sin * mirror, cos, t[:, 1]], dim=1)], dim=1)
    grid = F.affine_grid(mat, [n, 1, h, w], align_corners=False)
    if deform > 0:
        grid = grid + smooth_displacement(n, h, w, deform, g, device)
    return SpatialTransform(grid)


def random_deformation(n: int, h: int, w: int, g: torch.Generator, device: torch.device, magnitude: float = 0.05,
                       p: float = 0.5) -> SpatialTransform:
    """A smooth diffeomorphic deformation applied to each sample with probability ``p`` (identity
    otherwise): the strong view's morphological change, standing in for MONA's AdvMorph."""
    on = (torch.rand(n, generator=g, device=device) < p).float().view(n, 1, 1, 1)
    disp = smooth_displacement(n, h, w, magnitude, g, device)
    return SpatialTransform(identity_grid(n, h, w, device) + on * disp)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int = 4) -> Tensor:
    """Per-sample isotropic Gaussian blur of (B, C, H, W) with ``sigma`` (B,) in pixels; the kernel
    has a fixed ``radius`` (4 covers 3 sigma up to 1.3): a data-dependent size would need a host sync."""
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, K)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kx = kernel.repeat_interleave(c, 0)[:, None, None, :]
    ky = kernel.repeat_interleave(c, 0)[:, None, :, None]
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), kx, groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), ky, groups=b * c)
    return y.reshape(b, c, h, w)


def photometric(x: Tensor, g: torch.Generator, p: float = 0.5, brightness: tuple[float, float] = (0.75, 1.25),
                contrast: tuple[float, float] = (0.75, 1.25), blur: tuple[float, float] = (0.15, 1.15)) -> Tensor:
    """Strong photometric view: with probability ``p`` each, brightness x contrast jitter and a Gaussian
    blur (MONA / ReCo ranges), per sample, clipped to [0, 1]."""
    n, device = x.shape[0], x.device
    on_color = (torch.rand(n, generator=g, device=device) < p).to(x.dtype).view(n, 1, 1, 1)
    on_blur = (torch.rand(n, generator=g, device=device) < p).to(x.dtype).view(n, 1, 1, 1)
    bright = uniform(n, *brightness, g, device).view(n, 1, 1, 1).to(x.dtype)
    contr = uniform(n, *contrast, g, device).view(n, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    jittered = ((x - mean) * contr + mean) * bright
    x = on_color * jittered + (1 - on_color) * x
    blurred = gaussian_blur(x, uniform(n, *blur, g, device).to(x.dtype))
    x = on_blur * blurred + (1 - on_blur) * x
    return x.clamp(0.0, 1.0)


def cutmix(x: Tensor, targets: list[Tensor], g: torch.Generator, area: float = 0.5) -> tuple[Tensor, list[Tensor], Tensor]:
    """Paste a box (``area`` of the image, random aspect and position) from sample i+1 into sample i;
    the same box for every target map ((B, H, W) or (B, C, H, W)). Returns the mixed images, mixed
    targets and the (B, 1, H, W) box mask."""
    n, _, h, w = x.shape
    device = x.device
    aspect = uniform(n, 0.5, 2.0, g, device)
    bh = (torch.sqrt(area * h * w * aspect)).clamp(max=h)
    bw = (area * h * w / bh).clamp(max=w)
    y0 = torch.rand(n, generator=g, device=device) * (h - bh)
    x0 = torch.rand(n, generator=g, device=device) * (w - bw)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    box = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + bh).view(n, 1, 1))
           & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + bw).view(n, 1, 1)))[:, None]
    other = torch.roll(torch.arange(n, device=device), -1)

    def mix(t: Tensor) -> Tensor:
        m = box if t.dim() == 4 else box[:, 0]
        return torch.where(m, t[other], t)

    return mix(x), [mix(t) for t in targets], box.to(x.dtype)


def color_jitter(x: Tensor, g: torch.Generator, p: float, strength: float) -> Tensor:
    """torchvision ``ColorJitter(b, c)`` on grayscale images with probability ``p`` per sample (its
    saturation and hue are the identity on one channel): brightness ``x * f`` and contrast
    ``mean + (x - mean) * f`` (mean of the whole image), f ~ U(1 - strength, 1 + strength), each
    clipped to [0, 1], in a random order. UniMatch's (0.5, p 0.8) and ABD's (0.8, always) strong views."""
    n, device = x.shape[0], x.device
    on = (torch.rand(n, generator=g, device=device) < p).view(n, 1, 1, 1)
    fb = uniform((n, 1, 1, 1), 1 - strength, 1 + strength, g, device).to(x.dtype)
    fc = uniform((n, 1, 1, 1), 1 - strength, 1 + strength, g, device).to(x.dtype)
    brightness_first = (torch.rand(n, generator=g, device=device) < 0.5).view(n, 1, 1, 1)

    def bright(t: Tensor) -> Tensor:
        return (t * fb).clamp(0, 1)

    def contrast(t: Tensor) -> Tensor:
        mean = t.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + (t - mean) * fc).clamp(0, 1)

    jittered = torch.where(brightness_first, contrast(bright(x)), bright(contrast(x)))
    return torch.where(on, jittered, x)


def default_generator(device: torch.device) -> torch.Generator:
    """The global generator of ``device`` (checkpointed by the trainer with the RNG states)."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def strong_view(x: Tensor, g: torch.Generator | None = None) -> Tensor:
    """One random view for instance discrimination: a mild spatial warp (rotation up to 20 degrees,
    scale 0.85-1.15, shift, flip) and the strong photometric jitter."""
    g = g or default_generator(x.device)
    n, _, h, w = x.shape
    t = random_spatial(n, h, w, g, x.device, rotate=20.0, scale=(0.85, 1.15), translate=0.1)
    return photometric(t.apply(x), g)


def contrastive_views(x: Tensor, g: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two independent ``strong_view`` draws of a batch."""
    g = g or default_generator(x.device)
    return strong_view(x, g), strong_view(x, g)


# ------------------------------------------------------------------ SSL4MIS's weak augmentation
def rotation_matrices(degrees: Tensor, aspect: Tensor | None = None) -> Tensor:
    """(n, 2, 2) rotations by ``degrees`` in normalised coordinates of slices whose native height /
    width is ``aspect`` (n,) (None: square pixels grids). A rotation R in native pixels reads, in the
    normalised coordinates of the zoomed slice, ``D^-1 R D`` with D = diag(W, H) / 2; only the ratio
    r = H / W survives: [[cos, -sin r], [sin / r, cos]]. Same direction as ``scipy.ndimage.rotate``."""
    theta = degrees.float() * (math.pi / 180)
    cos, sin = torch.cos(theta), torch.sin(theta)
    r = torch.ones_like(cos) if aspect is None else aspect.to(cos)
    return torch.stack([torch.stack([cos, -sin * r], dim=-1), torch.stack([sin / r, cos], dim=-1)], dim=-2)


def ssl4mis_weak_matrices(n: int, generator: torch.Generator, device: torch.device,
                          aspect: Tensor | None = None) -> Tensor:
    """(n, 2, 3) affine matrices in normalised coordinates (``affine_grid`` convention); ``aspect``
    (n,) the native height / width of each slice, for the small rotation (None: square)."""
    u = torch.rand(n, 2, generator=generator, device=device)
    k = torch.randint(0, 4, (n,), generator=generator, device=device)
    flip_axis = torch.randint(0, 2, (n,), generator=generator, device=device)
    degrees = torch.randint(-20, 20, (n,), generator=generator, device=device).float()
    rot_flip = u[:, 0] < 0.5
    rotate = (~rot_flip) & (u[:, 1] < 0.5)

    # rot90 multiples snapped to exact integers so grid points land on pixel centres
    quarter = k.float() * (math.pi / 2)
    c90, s90 = torch.cos(quarter).round(), torch.sin(quarter).round()
    rot90 = torch.stack([torch.stack([c90, -s90], dim=-1), torch.stack([s90, c90], dim=-1)], dim=-2)
    # -1 on each sample's flipped axis; elementwise (an indexed assignment synchronises on CUDA)
    flip = torch.where(torch.arange(2, device=device)[None, :] == flip_axis[:, None], -1.0, 1.0)
    rot90 = rot90 * flip[:, None, :]
    small = rotation_matrices(degrees, aspect)
    eye = torch.eye(2, device=device).expand(n, 2, 2)
    lin = torch.where(rot_flip.view(n, 1, 1), rot90, torch.where(rotate.view(n, 1, 1), small, eye))
    return torch.cat([lin, torch.zeros(n, 2, 1, device=device)], dim=2)


def affine(mat: Tensor, like: Tensor) -> SpatialTransform:
    """The warp of per-sample affine matrices (``affine_grid`` convention) for batches shaped like ``like``."""
    return SpatialTransform(F.affine_grid(mat.to(like.dtype), list(like.shape), align_corners=False))


def ssl4mis_weak(x: Tensor, y: Tensor | None, generator: torch.Generator,
                 aspect: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Augment images (B, C, H, W) and, when given, their labels (B, H, W) with the same transform
    (nearest neighbour for both, as SSL4MIS's ``order=0``); ``aspect`` (B,) native height / width."""
    t = affine(ssl4mis_weak_matrices(x.shape[0], generator, x.device, aspect), x)
    return t.apply(x, "nearest"), (t.apply(y, "label") if y is not None else None)


def gaussian_noise(x: Tensor, std: float = 0.1, clip: float = 0.2, g: torch.Generator | None = None) -> Tensor:
    """``x + clamp(N(0, std^2), -clip, clip)``: the teacher-input noise of SSL4MIS's MT, UAMT."""
    noise = torch.randn(x.shape, generator=g or default_generator(x.device), device=x.device, dtype=x.dtype)
    return x + torch.clamp(noise * std, -clip, clip)


# ------------------------------------------------------------------ feature perturbations (CCT, URPC)
def feature_noise(x: Tensor, magnitude: float = 0.3, g: torch.Generator | None = None) -> Tensor:
    """``x + x * u`` with u ~ U(-m, m) of shape (C, H, W), shared across the batch."""
    u = (torch.rand(x.shape[1:], generator=g or default_generator(x.device), device=x.device, dtype=x.dtype) * 2
         - 1) * magnitude
    return x + x * u.unsqueeze(0)


def feature_dropout(x: Tensor, low: float = 0.7, high: float = 0.9, g: torch.Generator | None = None) -> Tensor:
    """Zero the most active positions: those whose channel-mean activation reaches gamma times its
    per-sample maximum, gamma ~ U(low, high) drawn once per call (SSL4MIS ``FeatureDropout``:
    ``x * (attention < threshold)``). Usually a few % of the positions are dropped."""
    attention = x.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    gamma = low + (high - low) * torch.rand((), generator=g or default_generator(x.device), device=x.device)
    return x * (attention < peak * gamma).to(x.dtype)


def dropout(x: Tensor, p: float, g: torch.Generator | None = None) -> Tensor:
    """Dropout that stays active in eval mode too (SSL4MIS's ``F.dropout(x, p)`` default): keep each
    element with probability 1 - p and scale by 1 / (1 - p), the mask drawn from ``g``."""
    if g is None:
        return F.dropout(x, p=p, training=True)
    keep = torch.rand(x.shape, generator=g, device=x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)
