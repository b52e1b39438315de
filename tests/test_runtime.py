"""Runtime measurement: protocol, pass counts, threads, memory format (CPU; CUDA when present)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memsr_bench.measure.runtime import measure_runtime


class Counting(nn.Module):
    """A tiny conv net that counts its forward passes and records the memory format it saw."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.calls = 0
        self.channels_last_inputs = 0

    def forward(self, x):
        self.calls += 1
        self.channels_last_inputs += x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        return self.conv(x)


def tiny_input() -> torch.Tensor:
    return torch.rand(1, 3, 8, 8)


def test_default_protocol_warms_up_then_times_repeats():
    model = Counting().eval()
    r = measure_runtime(model, tiny_input(), warmup=2, repeats=5)
    assert model.calls == 7
    assert len(r.samples_ms) == 5 and all(s > 0 for s in r.samples_ms)
    assert min(r.samples_ms) <= r.median_ms <= max(r.samples_ms)
    assert r.iqr_ms >= 0 and r.ms == r.median_ms
    assert r.protocol == "default" and r.warmup == 2
    assert r.device == "cpu" and r.device_name
    assert r.torch_version == torch.__version__
    assert r.threads == torch.get_num_threads()


def test_ntire2022_protocol_has_no_warmup_and_reports_the_mean():
    model = Counting().eval()
    r = measure_runtime(model, tiny_input(), warmup=10, repeats=4, protocol="ntire2022")
    assert model.calls == 4  # no warm-up
    assert r.warmup == 0
    assert r.ms == r.mean_ms == pytest.approx(sum(r.samples_ms) / 4)


def test_threads_are_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    r = measure_runtime(Counting().eval(), tiny_input(), warmup=0, repeats=1, threads=1)
    assert r.threads == 1
    assert torch.get_num_threads() == before


def test_channels_last_is_applied_and_undone():
    model = Counting().eval()
    r = measure_runtime(model, tiny_input(), warmup=1, repeats=2, channels_last=True)
    assert r.channels_last
    assert model.channels_last_inputs == 3
    assert model.conv.weight.is_contiguous()  # the model is back in the default format


def test_bad_arguments():
    model = Counting().eval()
    with pytest.raises(ValueError, match="protocol"):
        measure_runtime(model, tiny_input(), protocol="fastest")
    with pytest.raises(ValueError, match="repeats"):
        measure_runtime(model, tiny_input(), repeats=0)
    with pytest.raises(ValueError, match="devices"):
        measure_runtime(model, tiny_input(), device="meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("protocol", ["default", "ntire2022"])
def test_cuda_runtime_with_events(protocol):
    model = Counting().eval()
    r = measure_runtime(model, torch.rand(1, 3, 64, 64), "cuda", warmup=2, repeats=3, protocol=protocol)
    assert r.device.startswith("cuda") and r.device_name == torch.cuda.get_device_name()
    assert len(r.samples_ms) == 3 and all(s > 0 for s in r.samples_ms)
    assert model.calls == (3 if protocol == "ntire2022" else 5)
