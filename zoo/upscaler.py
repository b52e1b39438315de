"""A uniform wrapper: every harness feeds uint8 RGB and gets uint8 RGB back, whatever the model reads.

The model's conventions come from its registry entry: input range (0..1 or 0..255) and RGB or
Y-only input. Mean shifts live inside the zoo modules (as in the reference code), so the wrapper
does not apply any. For Y-only models (FSRCNN, SRCNN) the luma is super-resolved by the model
and the chroma is upscaled with MATLAB bicubic, the usual way these models are evaluated.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from memsr_bench.color import rgb_to_ycbcr, ycbcr_to_rgb
from memsr_bench.data.matlab_resize import imresize
from zoo.registry import ModelSpec


class ModelUpscaler:
    """Callable ``lr (uint8 RGB H x W x 3) -> sr (uint8 RGB sH x sW x 3)`` around a zoo model.

    Output conversion: scale to 0..255, clamp, round half to even (torch.round), uint8 — the
    same as the reference test scripts' ``(x * 255).round()`` up to ties, which float outputs
    practically never hit.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ModelSpec,
        scale: int,
        device: str | torch.device = "cpu",
        *,
        name: str | None = None,
        fingerprint: str | None = None,
        checkpoint: str = "random-init",
    ):
        from memsr_bench.model import architecture_fingerprint

        self.model = model.eval().to(device)
        self.spec = spec
        self.scale = int(scale)
        self.device = torch.device(device)
        self.name = name or spec.name
        self.fingerprint = fingerprint or architecture_fingerprint(model)
        self.checkpoint = checkpoint  # the weights' sha256 or "random-init": keys the results
        self.description = f"input {spec.channels.upper()} 0..{spec.input_range:g}"

    def _run(self, planes: np.ndarray) -> torch.Tensor:
        """Run the model on float planes C x H x W in 0..255 (a fresh array: it may be scaled in place);
        returns float32 C x sH x sW in 0..255.

        In-place scaling, clamping and rounding give the same values as out-of-place ones and keep the
        host temporaries of a tile small (tiled upscaling budgets them per pixel)."""
        x = torch.from_numpy(planes).to(torch.float32).unsqueeze(0).to(self.device)
        if self.spec.input_range != 255.0:
            x.mul_(self.spec.input_range / 255.0)
        with torch.inference_mode():
            out = self.model(x)
        expected = (planes.shape[1] * self.scale, planes.shape[2] * self.scale)
        if tuple(out.shape[-2:]) != expected:
            raise RuntimeError(f"{self.name} returned {tuple(out.shape[-2:])} for x{self.scale}, expected {expected}")
        out = out[0].float().cpu()
        if not bool(torch.isfinite(out).all()):
            from memsr_bench.errors import MemsrInputError

            raise MemsrInputError(
                self.name,
                f"non-finite output (NaN or inf) for a {planes.shape[1]}x{planes.shape[2]} input: check its weights",
            )
        if self.spec.input_range != 255.0:
            with torch.inference_mode():  # out is an inference tensor: in-place ops only inside the mode
                out.mul_(255.0 / self.spec.input_range)
        return out

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if lr.dtype != np.uint8 or lr.ndim != 3 or lr.shape[2] != 3:
            raise ValueError(f"expected uint8 RGB H x W x 3, got {lr.dtype} {lr.shape}")
        if self.spec.channels == "rgb":
            # uint8 -> float32 directly: the same values as through float64, at a third of the bytes
            sr = self._run(lr.transpose(2, 0, 1).astype(np.float32))
            with torch.inference_mode():
                return sr.clamp_(0, 255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        # Y-only model: luma from the network, chroma from MATLAB bicubic upscaling.
        y_sr = self._run(rgb_to_ycbcr(lr)[None, :, :, 0]).numpy()[0].astype(np.float64)
        ycbcr = rgb_to_ycbcr(imresize(lr, self.scale))
        ycbcr[:, :, 0] = y_sr
        return np.clip(np.round(ycbcr_to_rgb(ycbcr)), 0, 255).astype(np.uint8)


def upscaler(model: nn.Module, device: str | torch.device = "cpu") -> ModelUpscaler:
    """Wrap a model made by ``zoo.create`` (it carries ``zoo_spec`` and ``scale``)."""
    spec = getattr(model, "zoo_spec", None)
    scale = getattr(model, "scale", None)
    if spec is None or scale is None:
        raise ValueError("zoo.upscaler needs a model made by zoo.create (it reads model.zoo_spec and model.scale)")
    return ModelUpscaler(model, spec, scale, device, checkpoint=getattr(model, "weights_sha256", None) or "random-init")
