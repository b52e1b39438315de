"""SwinIR for lightweight SR (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021)
and SwinIR-mini (Jiang, Nawala, Zhang, Bull, "Compressing Deep Image Super-resolution Models", 2024).

Written from the description of JingyunLiang/SwinIR ``models/network_swinir.py`` (checked against its
commit 6545850): every parameter and buffer has the official state-dict name and shape, so an official
checkpoint loads strictly (``conv_first``, ``patch_embed.norm``, ``layers.<i>.residual_group.blocks.<j>.
{norm1, attn.relative_position_bias_table, attn.relative_position_index, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2, attn_mask}``, ``layers.<i>.conv``, ``norm``, ``conv_after_body``, ``upsample.0``).
``relative_position_index`` and ``attn_mask`` are persistent buffers as in the official module; the
``attn_mask`` of a shifted block holds the mask of the training patch size ``img_size`` (64 for the released
lightweight models, a (64, 64, 64) tensor).

Structure (``upsampler='pixelshuffledirect'``): RGB in 0..1, DIV2K mean subtracted and ``img_range``
applied; reflect padding of the bottom/right edges to a multiple of ``window_size``; 3x3 conv to
``embed_dim``; tokens + LayerNorm; residual Swin Transformer blocks (RSTB: ``depth`` Swin blocks with
window attention, odd blocks shifted by ``window_size // 2``, then a 3x3 conv and a skip); LayerNorm;
3x3 conv + global skip; one 3x3 conv to ``3 * scale**2`` channels + PixelShuffle; mean added back; the
output cropped to ``scale`` times the unpadded input size.

One deviation that changes no value: the official blocks read the stored ``attn_mask`` when the feature
size is ``img_size`` and otherwise each recompute the mask; here the mask of the actual feature size is
computed once per forward pass, whatever the size, and shared by every shifted block (the values are
identical; the stored buffers are kept for strict loading). So counts and memory are the same function of
the input size at every size, 64x64 included.

Parameter conventions: ``sum(p.numel() for p in model.parameters())`` includes the relative-position bias
tables ((2*window_size - 1)**2 * heads per block); the SwinIR paper's counts (878K / 886K / 897K for
SwinIR-light) leave them out, see :func:`params_excluding_relative_position_bias`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import register_model

__all__ = [
    "DIV2K_RGB_MEAN",
    "RSTB",
    "SwinIR",
    "SwinTransformerBlock",
    "WindowAttention",
    "params_excluding_relative_position_bias",
    "relative_position_index",
    "shifted_window_mask",
]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
_MASK_VALUE = -100.0  # the official additive mask value between tokens of different shifted regions


def _partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * H/ws * W/ws, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(-1, ws * ws, c)


def _merge(windows: Tensor, ws: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`_partition`: (B * nW, ws*ws, C) -> (B, H, W, C)."""
    x = windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).contiguous()
    return x.view(b, h, w, -1)


def relative_position_index(ws: int) -> Tensor:
    """(ws*ws, ws*ws) int64: row of the bias table for every (query, key) pair of a window."""
    rows, cols = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    d_row = rows[:, None] - rows[None, :] + ws - 1  # 0 .. 2ws-2
    d_col = cols[:, None] - cols[None, :] + ws - 1
    return d_row * (2 * ws - 1) + d_col


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> Tensor:
    """(nW, ws*ws, ws*ws) float32 additive mask of a shifted-window pass on an (h, w) feature map.

    After a cyclic shift by ``-shift`` the bottom and right windows mix tokens from up to three bands
    per axis; pairs from different bands get ``-100``, others 0.
    """
    bands_h, bands_w = (h - ws, ws - shift, shift), (w - ws, ws - shift, shift)
    # region label 3 * (row band) + (column band), built from constant blocks (no in-place writes)
    rows = [
        torch.cat([torch.full((bh, bw), float(3 * i + j)) for j, bw in enumerate(bands_w)], dim=1)
        for i, bh in enumerate(bands_h)
    ]
    region = torch.cat(rows, dim=0)
    ids = _partition(region.view(1, h, w, 1), ws).squeeze(-1)  # nW, ws*ws
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return diff.masked_fill(diff != 0, _MASK_VALUE).masked_fill(diff == 0, 0.0)


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (training only; identity in eval mode)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True, qk_scale=None):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: (B*nW, N, C) windows; ``mask``: (nW, N, N) additive or None."""
        bw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).reshape(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)  # B*nW, heads, N, N
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        scores = scores + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            scores = scores.view(bw // nw, nw, heads, n, n) + mask.to(scores.dtype).unsqueeze(1).unsqueeze(0)
            scores = scores.view(-1, heads, n, n)
        out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinTransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> skip; LayerNorm -> MLP -> skip.

    As in the official code, a training resolution ``input_resolution`` not larger than the window makes
    the window the whole map and disables the shift; a shifted block stores the mask of that resolution.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 8,
        shift_size: int = 0,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale=None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        if min(self.input_resolution) <= window_size:
            window_size, shift_size = min(self.input_resolution), 0
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size} (window {window_size})")
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*self.input_resolution, window_size, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: Tensor, x_size: tuple[int, int], mask: Tensor | None = None) -> Tensor:
        """``x``: (B, H*W, C) tokens; ``mask``: the shifted-window mask for ``x_size`` (computed once per
        pass by :class:`SwinIR`; computed here when None)."""
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(b, h, w, c)
        if shift > 0:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
            if mask is None:  # a block used on its own; SwinIR passes the mask of the pass
                mask = shifted_window_mask(h, w, ws, shift).to(x.device)
        else:
            mask = None
        y = _merge(self.attn(_partition(y, ws), mask), ws, b, h, w)
        if shift > 0:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + self.drop_path(y.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """``depth`` Swin blocks, every odd one shifted by half a window."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop_path):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                input_resolution,
                num_heads,
                window_size,
                0 if i % 2 == 0 else window_size // 2,
                mlp_ratio,
                qkv_bias,
                qk_scale,
                drop_path[i],
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor, x_size: tuple[int, int], mask: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, x_size, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: Swin blocks -> tokens to map -> conv -> map to tokens -> + input."""

    def __init__(
        self,
        dim,
        input_resolution,
        depth,
        num_heads,
        window_size,
        mlp_ratio,
        qkv_bias,
        qk_scale,
        drop_path,
        resi_connection: str = "1conv",
    ):
        super().__init__()
        self.residual_group = BasicLayer(
            dim, input_resolution, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop_path
        )
        self.conv = _resi_conv(dim, resi_connection)

    def forward(self, x: Tensor, x_size: tuple[int, int], mask: Tensor | None = None) -> Tensor:
        y = self.residual_group(x, x_size, mask)
        b, _, c = y.shape
        y = self.conv(y.transpose(1, 2).view(b, c, *x_size))
        return y.flatten(2).transpose(1, 2) + x


def _resi_conv(dim: int, kind: str) -> nn.Module:
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind == "3conv":  # 3x3 to dim/4, 1x1, 3x3 back, LeakyReLU(0.2) between
        q = dim // 4
        return nn.Sequential(
            nn.Conv2d(dim, q, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, q, 1, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(q, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', not {kind!r}")


class PatchEmbed(nn.Module):
    """(B, C, H, W) map -> (B, H*W, C) tokens, then LayerNorm (``patch_norm``)."""

    def __init__(self, dim: int, norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class SwinIR(nn.Module):
    """SwinIR with the lightweight reconstruction (``upsampler='pixelshuffledirect'``), patch size 1.

    ``img_size`` is the training patch size; it only decides the stored ``attn_mask`` buffers (and, when
    not larger than the window, the window itself), as in the official code.
    """

    def __init__(
        self,
        scale: int = 2,
        in_chans: int = 3,
        embed_dim: int = 60,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.1,
        img_size: int | tuple[int, int] = 64,
        img_range: float = 1.0,
        patch_norm: bool = True,
        upsampler: str = "pixelshuffledirect",
        resi_connection: str = "1conv",
    ):
        super().__init__()
        if upsampler != "pixelshuffledirect":
            raise ValueError(f"only the lightweight upsampler 'pixelshuffledirect' is implemented, not {upsampler!r}")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.scale = self.upscale = scale
        self.window_size = window_size
        self.img_range = img_range
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        res = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads, strict=True):
            rate = rates[start : start + depth]
            self.layers.append(
                RSTB(embed_dim, res, depth, heads, window_size, mlp_ratio, qkv_bias, qk_scale, rate, resi_connection)
            )
            start += depth
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _resi_conv(embed_dim, resi_connection)
        self.upsample = nn.Sequential(nn.Conv2d(embed_dim, in_chans * scale**2, 3, 1, 1), nn.PixelShuffle(scale))
        self.apply(_init_weights)

    def _mask_for(self, x_size: tuple[int, int], device: torch.device) -> Tensor | None:
        """The shifted-window mask for ``x_size``, once for all blocks (None without shifted blocks)."""
        for layer in self.layers:
            for block in layer.residual_group.blocks:
                if block.shift_size > 0:
                    return shifted_window_mask(*x_size, block.window_size, block.shift_size).to(device)
        return None

    def forward_features(self, x: Tensor) -> Tensor:
        x_size = (x.shape[2], x.shape[3])
        b, c = x.shape[:2]
        mask = self._mask_for(x_size, x.device)
        t = self.patch_embed(x)
        for layer in self.layers:
            t = layer(t, x_size, mask)
        return self.norm(t).transpose(1, 2).view(b, c, *x_size)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        ws = self.window_size
        x = F.pad(x, (0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws), "reflect")
        x = (x - self.mean.to(x.dtype)) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.upsample(x)
        x = x / self.img_range + self.mean.to(x.dtype)
        return x[:, :, : h * self.scale, : w * self.scale]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def params_excluding_relative_position_bias(model: nn.Module) -> int:
    """Parameters without the relative-position bias tables: the SwinIR paper's counting convention."""
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.endswith("relative_position_bias_table")
    )


_LIGHT = {"embed_dim": 60, "depths": (6, 6, 6, 6), "num_heads": (6, 6, 6, 6), "window_size": 8, "mlp_ratio": 2.0}
_MINI = {"embed_dim": 24, "depths": (4, 4, 4), "num_heads": (6, 6, 6), "window_size": 8, "mlp_ratio": 2.0}
_COMMON = {"img_size": 64, "img_range": 1.0, "upsampler": "pixelshuffledirect", "resi_connection": "1conv"}


@register_model(
    "swinir-light",
    scales=(2, 3, 4),
    input_range=1.0,
    paper="Liang, Cao, Sun, Zhang, Van Gool, Timofte: SwinIR: Image Restoration Using Swin Transformer, "
    "ICCV Workshops 2021 (lightweight SR, SwinIR-S)",
    published_params={2: 878_000, 3: 886_000, 4: 897_000},
    notes="embed 60, depths [6,6,6,6], heads 6, window 8, mlp ratio 2, pixelshuffledirect, img_size 64; "
    "RGB 0..1 (DIV2K mean inside); input reflect-padded to a multiple of 8, output cropped. "
    "910,152 / 918,267 / 929,628 parameters at x2/x3/x4 with the relative-position bias tables "
    "(24 x 225 x 6 = 32,400); the published 878K / 886K / 897K leave the tables out "
    "(877,752 / 885,867 / 897,228: zoo.swinir.params_excluding_relative_position_bias).",
)
def swinir_light(scale: int = 2, **config) -> SwinIR:
    return SwinIR(scale=scale, **{**_LIGHT, **_COMMON, **config})


@register_model(
    "swinir-mini",
    scales=(2, 3, 4),
    input_range=1.0,
    paper="Jiang, Nawala, Zhang, Bull: Compressing Deep Image Super-resolution Models, 2024 "
    "(code Pikapi22/SRModelCompression, SwinIRmini)",
    published_params={2: 98_868},
    notes="embed 24, depths [4,4,4], heads 6, window 8, mlp ratio 2, pixelshuffledirect, img_size 64 "
    "(released options test_SwinIR_minix2.yml / distill_SwinIRmini_SRx2_scratch_kd.yml, x2 only; x3/x4 use "
    "the same body with the x3/x4 tail, nothing published). 98,868 / 102,123 / 106,680 parameters at "
    "x2/x3/x4 with the relative-position bias tables (12 x 225 x 6 = 16,200; 82,668 at x2 without them).",
)
def swinir_mini(scale: int = 2, **config) -> SwinIR:
    return SwinIR(scale=scale, **{**_MINI, **_COMMON, **config})
