"""The shared machinery of passes on fake tensors: the module stack and a fake input.

Counting (:mod:`memsr_bench.measure.counters`) and the memory prediction
(:mod:`memsr_bench.measure.memory_model`) both run the model under ``FakeTensorMode``: shapes,
dtypes and strides are propagated, no memory is allocated and no kernel runs, so any input size is
cheap. The real weights are wrapped by the mode, never copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

__all__ = ["ModuleStack", "fake_forward", "fake_input"]

_DATA_DEPENDENT = (
    torch._subclasses.fake_tensor.DataDependentOutputException,
    torch._subclasses.fake_tensor.DynamicOutputShapeException,
)


class ModuleStack:
    """Qualified name of the innermost module running, kept by global forward (pre-)hooks.

    Names are the first-occurrence names of ``model.named_modules()`` (fvcore's canonical names).
    A module that is not part of ``model`` (built inside a forward) is named by its type when
    ``unknown="type"``, or attributed to the module that runs it when ``unknown="caller"``.
    """

    def __init__(self, model: nn.Module, unknown: str = "type"):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.unknown = unknown
        self.stack: list[str] = []

    def __enter__(self):
        self._handles = [
            register_module_forward_pre_hook(self._push),
            register_module_forward_hook(self._pop, always_call=True),
        ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def _push(self, module, args):
        name = self.names.get(id(module))
        if name is None:
            name = type(module).__name__ if self.unknown == "type" else self.path
        self.stack.append(name)

    def _pop(self, module, args, output):
        self.stack.pop()

    @property
    def path(self) -> str:
        return self.stack[-1] if self.stack else ""


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (CPU for a module without tensors)."""
    return next((t.device for t in [*module.parameters(), *module.buffers()]), torch.device("cpu"))


def fake_input(model: nn.Module, input_shape: Sequence[int], dtype: torch.dtype) -> tuple[FakeTensorMode, torch.Tensor]:
    """A fake tensor of ``input_shape`` on the model's device, and the mode to run the model in."""
    device = module_device(model)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        x = torch.empty(tuple(int(s) for s in input_shape), dtype=dtype, device=device)
    return mode, x


def fake_forward(
    model: nn.Module,
    input_shape: Sequence[int],
    dtype: torch.dtype,
    observers: Sequence[AbstractContextManager],
    on_input: Callable[[torch.Tensor], None] | None = None,
) -> Any:
    """``model(x)`` under inference mode on a fake ``x``, inside every context of ``observers``.

    ``on_input(x)`` is called with the fake input before the pass. A model that reads tensor values
    (``x.item()``, data-dependent shapes) cannot run on shapes only: one-line error.
    """
    from memsr_bench.errors import MemsrInputError

    with torch.inference_mode():
        mode, x = fake_input(model, input_shape, dtype)
        if on_input is not None:
            on_input(x)
        try:
            with ExitStack() as stack:
                stack.enter_context(mode)
                for observer in observers:
                    stack.enter_context(observer)
                return model(x)
        except _DATA_DEPENDENT as err:
            raise MemsrInputError(
                "model",
                f"{type(model).__name__} reads tensor values in its forward ({type(err).__name__}); "
                "counts and the predicted peak run on shapes only",
            ) from err
