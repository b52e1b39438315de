"""Measured peak memory of one forward pass (batch as given, inference mode).

What "measured" means here:

- **CPU**: the peak of *live tensor storage*. Every aten op of the forward pass is intercepted (a
  ``TorchDispatchMode``); each storage that an op returns, or that an op reads without it having been
  seen before (a constant), is counted once by its ``nbytes``, and a weak reference on the storage
  takes it off the count at the moment it dies. Views and in-place results share their base's storage
  and add nothing. The storages alive at the start (parameters, buffers, the input) are counted from
  the start. The peak is taken after every op, when its outputs exist and its inputs are still held,
  which is when live storage is highest (deaths only happen between ops). Memory that CPU kernels
  allocate for themselves and free before returning (oneDNN / mkldnn workspaces, im2col buffers,
  reordered weights, the allocator's own overhead) is *not* tensor storage and is not counted; neither
  is anything outside PyTorch. The result is exact, deterministic and independent of the allocator,
  and it is the same definition that :func:`memsr_bench.measure.memory_model.predict_peak_memory`
  computes without running the kernels.
- **CUDA**: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the MemSR
  protocol): what the caching allocator handed out, so it includes cuDNN workspaces and the
  allocator's rounding (512-byte blocks); it is slightly above the CPU definition.

In both cases ``activations_bytes = peak_bytes - weights_bytes - input_bytes``: everything the pass
added on top of what was alive before it (intermediates, kernel workspaces on CUDA, and the output).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["PeakMemory", "measure_peak_memory", "unique_storage_bytes"]

CPU_METHOD = "live tensor storage (aten dispatch, inference_mode)"
CUDA_METHOD = "torch.cuda.max_memory_allocated (reset before the pass)"


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one forward pass, in bytes.

    ``peak_bytes`` counts weights (parameters, buffers and constant tensors), the input, and
    everything the pass allocated that was alive at the worst moment (the output included).
    ``activations_bytes = peak_bytes - weights_bytes - input_bytes``.
    """

    peak_bytes: int
    weights_bytes: int
    input_bytes: int
    activations_bytes: int
    device: str
    method: str

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def _storage(t: torch.Tensor) -> torch.UntypedStorage | None:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested, ... tensors: no single storage
        return None


def unique_storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (tied weights and views counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = _storage(t)
        if s is not None:
            seen.setdefault(s._cdata, s.nbytes())
    return sum(seen.values())


class LiveStorageMode(TorchDispatchMode):
    """Counts live tensor storage over the aten ops run under it; ``peak`` is the highest count.

    Each storage is keyed by its StorageImpl, counted once by ``nbytes`` and taken off the count by
    a weak-reference callback the moment it is freed. ``track(t)`` adds storages alive before the
    pass (weights, input); storages first seen as an op's *input* are constants (``constants``: ids).

    With ``on_op`` set, it is called after every op as ``on_op(func, in_ids, out_ids)`` with the ids
    (0, 1, 2, ... in order of first sight) of the op's input and output storages; ``on_free(id)`` is
    called when a storage dies. The predictor builds its graph from these; the plain measurement
    leaves them unset and only pays for the counting.
    """

    def __init__(
        self,
        on_op: Callable[[object, list[int], list[int]], None] | None = None,
        on_free: Callable[[int], None] | None = None,
    ):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.constants: list[int] = []
        self.ids: dict[int, int] = {}  # StorageImpl address -> id (first-sight order), live storages only
        self.nbytes: list[int] = []  # id -> nbytes (kept after the storage dies)
        self._refs: dict[int, weakref.ref] = {}
        self._on_op = on_op
        self._on_free = on_free
        self._mutable: dict[object, bool] = {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def _free(self, key: int, _ref: weakref.ref) -> None:
        sid = self.ids.pop(key)
        self.live -= self.nbytes[sid]
        del self._refs[key]
        if self._on_free is not None:
            self._on_free(sid)

    def bytes_of(self, ids: Iterable[int]) -> int:
        """Bytes of the distinct storages ``ids``."""
        return sum(self.nbytes[i] for i in set(ids))

    def _add(self, s: torch.UntypedStorage, key: int) -> None:
        n = s.nbytes()
        self.ids[key] = len(self.nbytes)
        self.nbytes.append(n)
        self._refs[key] = weakref.ref(s, partial(self._free, key))
        self.live += n

    def track(self, tensors: Iterable[torch.Tensor]) -> list[int]:
        """Count the storages of ``tensors`` (alive before the pass); returns their ids."""
        ids = []
        for t in tensors:
            s = _storage(t)
            if s is None:
                continue
            if s._cdata not in self.ids:
                self._add(s, s._cdata)
            ids.append(self.ids[s._cdata])
        self.peak = max(self.peak, self.live)
        return ids

    # -- dispatch ------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ids = self.ids
        recording = self._on_op is not None
        in_ids = []
        for t in tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor):
                s = _storage(t)
                if s is None:
                    continue
                key = s._cdata
                if key not in ids:  # a tensor no op produced: a constant held by the model
                    self._add(s, key)
                    self.constants.append(ids[key])
                if recording:
                    in_ids.append(ids[key])

        out = func(*args, **kwargs)

        mutable = self._mutable.get(func)
        if mutable is None:
            mutable = self._mutable[func] = bool(getattr(func, "_schema", None) and func._schema.is_mutable)
        out_ids = []
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                s = _storage(t)
                if s is None:
                    continue
                key = s._cdata
                if key not in ids:
                    self._add(s, key)
                elif mutable and s.nbytes() != self.nbytes[ids[key]]:  # resize_ / out= may grow it
                    n = s.nbytes()
                    self.live += n - self.nbytes[ids[key]]
                    self.nbytes[ids[key]] = n
                if recording:
                    out_ids.append(ids[key])
        if self.live > self.peak:
            self.peak = self.live
        if recording:
            self._on_op(func, in_ids, out_ids)
        return out


def model_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers (the weights that stay alive during a pass)."""
    return [*model.parameters(), *model.buffers()]


def measure_peak_memory(model: nn.Module, x: torch.Tensor, device: str | torch.device = "cpu") -> PeakMemory:
    """Peak memory of ``model(x)`` on ``device`` (model and input are moved there; the model in place).

    See the module docstring for what is measured on CPU (live tensor storage, exact) and on CUDA
    (``max_memory_allocated``).
    """
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"measure_peak_memory supports cpu and cuda devices, not {device}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    model = model.to(device)
    x = x.to(device)
    if device.type == "cuda":
        return _measure_cuda(model, x, device)

    mode = LiveStorageMode()
    with torch.inference_mode():
        weight_ids = mode.track(model_tensors(model))
        input_ids = mode.track([x])
        with mode:
            out = model(x)
        peak = mode.peak
        del out
    weights_bytes = mode.bytes_of(weight_ids + mode.constants)
    input_bytes = mode.bytes_of(input_ids)
    return PeakMemory(
        peak_bytes=peak,
        weights_bytes=weights_bytes,
        input_bytes=input_bytes,
        activations_bytes=peak - weights_bytes - input_bytes,
        device=str(device),
        method=CPU_METHOD,
    )


def _measure_cuda(model: nn.Module, x: torch.Tensor, device: torch.device) -> PeakMemory:
    weights_bytes = unique_storage_bytes(model_tensors(model))
    input_bytes = unique_storage_bytes([x])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)  # weights, input and anything else already alive
    with torch.inference_mode():
        out = model(x)
        torch.cuda.synchronize(device)
        peak_allocated = torch.cuda.max_memory_allocated(device)
        del out
    activations = peak_allocated - before
    return PeakMemory(
        peak_bytes=weights_bytes + input_bytes + activations,
        weights_bytes=weights_bytes,
        input_bytes=input_bytes,
        activations_bytes=activations,
        device=str(device),
        method=CUDA_METHOD,
    )
