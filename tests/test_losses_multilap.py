"""MultiLapLoss / LapLoss against an independent transcription of the released algebra.

The reference below is written from the description of Pikapi22/SRModelCompression@ab9919e
(basicsr/losses/basic_loss.py) with plain loops, explicit zero insertion by slicing and an explicit
reflect pad before F.conv2d, so it shares no code path with memsr_bench.losses.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from memsr_bench.losses import LapLoss, MultiLapLoss, laplacian_pyramid


def _ref_blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    row = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype)
    k = torch.zeros(5, 5, dtype=x.dtype)
    for i in range(5):
        for j in range(5):
            k[i, j] = row[i] * row[j] / 256.0
    out = []
    # One channel at a time: the transcription must not depend on grouped convolution.
    for c in range(x.shape[1]):
        padded = F.pad(x[:, c : c + 1], (2, 2, 2, 2), mode="reflect")
        out.append(F.conv2d(padded, (gain * k)[None, None]))
    return torch.cat(out, dim=1)


def _ref_pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    levels = []
    cur = x
    for _ in range(4):
        blurred = _ref_blur(cur)
        n, c, h, w = blurred.shape
        reduced = blurred.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))
        up = torch.zeros(n, c, h, w, dtype=x.dtype)
        up[:, :, 0::2, 0::2] = reduced
        levels.append(cur - _ref_blur(up, gain=4.0))
        cur = reduced
    levels.append(cur)
    return levels


def _ref_laploss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    total = torch.zeros((), dtype=x.dtype)
    for i, (a, b) in enumerate(zip(_ref_pyramid(x), _ref_pyramid(y), strict=True)):
        total = total + 2**i * torch.mean(torch.abs(a - b))
    return total


def _ref_multilap(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _ref_laploss(p, t) + _ref_laploss(p - _ref_blur(p), t - _ref_blur(t))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(32, 32), (48, 64), (96, 32)])
def test_matches_transcription(channels: int, size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(100 * channels + size[0] + size[1])
    p = torch.rand(2, channels, *size, generator=g)
    t = torch.rand(2, channels, *size, generator=g)
    got_lap = LapLoss()(p, t)
    got_multi = MultiLapLoss()(p, t)
    assert got_lap.item() == pytest.approx(_ref_laploss(p, t).item(), abs=1e-6)
    assert got_multi.item() == pytest.approx(_ref_multilap(p, t).item(), abs=1e-6)
    # Same check in float64 to confirm the agreement is not a float32 coincidence.
    assert MultiLapLoss()(p.double(), t.double()).item() == pytest.approx(
        _ref_multilap(p.double(), t.double()).item(), abs=1e-12
    )


def test_pyramid_levels_match_and_reconstruct() -> None:
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours, ref = laplacian_pyramid(x), _ref_pyramid(x)
    assert [tuple(a.shape[-2:]) for a in ours] == [(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)]
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # Burt-Adelson: each band plus the expansion of the next coarser image gives back the finer one.
    cur = ours[-1]
    for band in reversed(ours[:-1]):
        up = torch.zeros(*cur.shape[:2], 2 * cur.shape[2], 2 * cur.shape[3], dtype=cur.dtype)
        up[..., ::2, ::2] = cur
        cur = band + _ref_blur(up, gain=4.0)
    torch.testing.assert_close(cur, x, rtol=0, atol=1e-12)


def test_constant_images_by_hand() -> None:
    # For a constant image the blur and the 4·G expansion of a zero-interleaved constant give the
    # constant back everywhere (even and odd taps of [1,4,6,4,1]/16 both sum to 1/2, reflect borders
    # included), so every band is 0 and only the coarsest level (weight 2**4) differs; the high-pass
    # term p - G*p is 0 for both.
    a, b = 0.75, 0.25
    p = torch.full((2, 3, 32, 48), a)
    t = torch.full((2, 3, 32, 48), b)
    assert LapLoss()(p, t).item() == pytest.approx(16 * (a - b), abs=1e-6)
    assert MultiLapLoss()(p, t).item() == pytest.approx(16 * (a - b), abs=1e-6)
    assert MultiLapLoss(loss_weight=0.5)(p, t).item() == pytest.approx(8 * (a - b), abs=1e-6)


def test_zero_for_equal_positive_for_different() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert MultiLapLoss()(x, x.clone()).item() == 0.0
    y = x.clone()
    y[0, 1, 5, 7] += 0.1
    assert MultiLapLoss()(x, y).item() > 0.0
    assert LapLoss()(x, y).item() > 0.0


def test_gradients_flow() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(2, 3, 32, 32, generator=g, requires_grad=True)
    t = torch.rand(2, 3, 32, 32, generator=g)
    MultiLapLoss()(p, t).backward()
    assert p.grad is not None
    assert torch.isfinite(p.grad).all()
    assert p.grad.abs().sum().item() > 0


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 3, 24, 32), (2, 3, 32, 40), (2, 1, 33, 32)])
def test_bad_sizes_are_value_errors(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    with pytest.raises(ValueError, match=r"multiples of 16 and at least 32"):
        MultiLapLoss()(x, x)
    with pytest.raises(ValueError, match=f"{shape[2]}x{shape[3]}"):
        LapLoss()(x, x)


def test_shape_mismatch_and_rank_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        MultiLapLoss()(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        MultiLapLoss()(torch.rand(3, 32, 32), torch.rand(3, 32, 32))


def test_any_channel_count_is_per_channel() -> None:
    # The released kernel only runs for C in {1, 3}; ours is depthwise, so C=4 is the mean-weighted
    # combination of single-channel losses.
    g = torch.Generator().manual_seed(4)
    p = torch.rand(1, 4, 32, 32, generator=g, dtype=torch.float64)
    t = torch.rand(1, 4, 32, 32, generator=g, dtype=torch.float64)
    per_channel = sum(MultiLapLoss()(p[:, c : c + 1], t[:, c : c + 1]) for c in range(4)) / 4
    assert MultiLapLoss()(p, t).item() == pytest.approx(per_channel.item(), abs=1e-12)


def test_level_weights_default_to_the_released_ones_and_weigh_each_level() -> None:
    torch.manual_seed(5)
    pred, target = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    per_level = [(a - b).abs().mean() for a, b in zip(laplacian_pyramid(pred), laplacian_pyramid(target), strict=True)]
    assert torch.allclose(LapLoss()(pred, target), sum(2.0**i * v for i, v in enumerate(per_level)))
    assert torch.allclose(LapLoss(level_weights=[1, 0, 0, 0, 3])(pred, target), per_level[0] + 3 * per_level[4])
    assert MultiLapLoss(level_weights=[1, 2, 4, 8, 16])(pred, target) == MultiLapLoss()(pred, target)
    for bad in ([1, 1, 1, 1], [1, 1, 1, 1, -1], [1, 1, 1, 1, float("inf")]):
        with pytest.raises(ValueError, match="level weights"):
            MultiLapLoss(level_weights=bad)
