"""Measurements as stored cells: each is computed once per key and read back afterwards.

Every function here measures one thing of one model through :func:`memsr_bench.results.cached`, with
a key that holds the model's name, its architecture fingerprint and, where weights matter (quality),
their sha256 — so an edited model or other weights are never served an old row. Counts and timings do
not depend on the weights (``checkpoint="any"``).

- :func:`stored_counts`: every counted quantity and the predicted peak at one input (kind ``counts``);
- :func:`stored_runtime`: runtime at one input on one device (kind ``runtime``);
- :func:`stored_memory`: measured peak memory (kind ``memory``);
- :func:`stored_profile`: a :class:`~memsr_bench.measure.profile.Profile` assembled from those cells;
- :func:`stored_quality`: PSNR/SSIM of an upscaler on a test set, one cell per convention (kind ``quality``).

Each cell is a pair, used the same way here and by the sweeps of :mod:`memsr_bench.results.jobs` (which
run them locally or on a Dask cluster): a key function (``counts_key``, ``runtime_key``, ``memory_key``,
``quality_keys``) and a measure function (``measure_counts``, ...) that computes the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from memsr_bench.measure.profile import Profile, RuntimeOptions, model_dtype, profile
from memsr_bench.measure.quantities import COUNT_QUANTITIES, QUANTITIES
from memsr_bench.results.store import ResultKey, ResultsStore, cached, input_size

__all__ = [
    "WEIGHTS_INDEPENDENT",
    "counts_key",
    "device_label",
    "measure_counts",
    "measure_memory",
    "measure_quality",
    "measure_runtime",
    "memory_key",
    "quality_keys",
    "runtime_key",
    "stored_counts",
    "stored_memory",
    "stored_profile",
    "stored_quality",
    "stored_runtime",
    "latest_quality",
    "latest_runtime",
]

WEIGHTS_INDEPENDENT = "any"  # the checkpoint field of counts, runtime and memory keys
_COUNTS_CONVENTION = "memsr-bench quantities v3 (memsr_bench.measure.quantities)"  # v3: fvcore_flops


def device_label(device: str) -> str:
    """``"cpu (AMD EPYC ...)"``, ``"cuda:0 (NVIDIA H100 ...)"``: the device field of runtime/memory keys."""
    from memsr_bench.measure.runtime import device_name

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return f"{dev} ({device_name(dev)})"


def _key(kind: str, loaded, shape: Sequence[int], conventions: Any, device: str = "cpu") -> ResultKey:
    return ResultKey(
        kind=kind,
        model=loaded.name,
        checkpoint=WEIGHTS_INDEPENDENT,
        scale=loaded.scale,
        data=input_size(shape),
        conventions=conventions,
        device=device,
        fingerprint=loaded.fingerprint,
    )


def counts_key(loaded, shape: Sequence[int]) -> ResultKey:
    """The key of every count quantity of ``loaded`` at ``shape``."""
    dtype = str(model_dtype(loaded.module)).removeprefix("torch.")
    return _key("counts", loaded, shape, {"quantities": _COUNTS_CONVENTION, "dtype": dtype})


def measure_counts(loaded, shape: Sequence[int], max_memory: int | None = None) -> dict[str, Any]:
    """Every count quantity, ``params_used`` and the predicted peaks (one fake pass), with the details."""
    result = profile(
        loaded.module, shape, quantities=(*COUNT_QUANTITIES, "params_used"), name=loaded.name, max_memory=max_memory
    )
    return {**result.values, "details": result.details}


def stored_counts(
    store: ResultsStore | None, loaded, shape: Sequence[int], force: bool = False, max_memory: int | None = None
) -> dict[str, Any]:
    """Every count quantity, ``params_used`` and the predicted peaks of ``loaded`` at ``shape``."""
    return cached(store, counts_key(loaded, shape), lambda: measure_counts(loaded, shape, max_memory), force=force)


def runtime_options(options: RuntimeOptions | None, device: str) -> RuntimeOptions:
    """``options`` with the thread count resolved (it is part of the key, so it must not depend on where
    the cell runs: a worker times with the threads of the key)."""
    from dataclasses import replace

    options = options or RuntimeOptions()
    if options.threads is None and torch.device(device).type == "cpu":
        options = replace(options, threads=torch.get_num_threads())
    return options


def runtime_key(loaded, shape: Sequence[int], device: str = "cpu", options: RuntimeOptions | None = None) -> ResultKey:
    """The key of ``loaded``'s runtime at ``shape`` on ``device`` (its name), protocol and threads."""
    options = runtime_options(options, device)
    label = device_label(device)
    conventions = {
        "protocol": options.convention(),
        "threads": (options.threads or torch.get_num_threads()) if label.startswith("cpu") else None,
        "dtype": "float32",
    }
    return _key("runtime", loaded, shape, conventions, label)


def measure_runtime(
    loaded,
    shape: Sequence[int],
    device: str = "cpu",
    options: RuntimeOptions | None = None,
    max_memory: int | None = None,
) -> dict[str, Any]:
    """``runtime_ms``, ``runtime_iqr_ms`` and the samples, threads and device name of the timing."""
    result = profile(
        loaded.module,
        shape,
        quantities=("runtime_ms",),
        device=device,
        runtime=runtime_options(options, device),
        max_memory=max_memory,
    )
    return {**result.values, "details": result.details}


def stored_runtime(
    store: ResultsStore | None,
    loaded,
    shape: Sequence[int],
    device: str = "cpu",
    options: RuntimeOptions | None = None,
    force: bool = False,
    max_memory: int | None = None,
) -> dict[str, Any]:
    """``runtime_ms``, ``runtime_iqr_ms`` and the samples, threads and device name of the timing."""
    key = runtime_key(loaded, shape, device, options)
    return cached(store, key, lambda: measure_runtime(loaded, shape, device, options, max_memory), force=force)


def memory_key(loaded, shape: Sequence[int], device: str = "cpu") -> ResultKey:
    """The key of ``loaded``'s measured peak memory at ``shape`` on ``device``."""
    return _key("memory", loaded, shape, {"batch": 1, "dtype": "float32"}, device_label(device))


def measure_memory(loaded, shape: Sequence[int], device: str = "cpu", max_memory: int | None = None) -> dict[str, Any]:
    """``peak_memory_bytes_measured`` of one forward pass and how it was measured."""
    result = profile(
        loaded.module, shape, quantities=("peak_memory_bytes_measured",), device=device, max_memory=max_memory
    )
    return {**result.values, "details": result.details}


def stored_memory(
    store: ResultsStore | None,
    loaded,
    shape: Sequence[int],
    device: str = "cpu",
    force: bool = False,
    max_memory: int | None = None,
) -> dict[str, Any]:
    """``peak_memory_bytes_measured`` of one forward pass and how it was measured."""
    key = memory_key(loaded, shape, device)
    return cached(store, key, lambda: measure_memory(loaded, shape, device, max_memory), force=force)


def stored_profile(
    store: ResultsStore | None,
    loaded,
    shape: Sequence[int],
    quantities: Sequence[str] = COUNT_QUANTITIES,
    *,
    preset: str | None = None,
    device: str = "cpu",
    runtime: RuntimeOptions | None = None,
    force: bool = False,
    max_memory: int | None = None,
) -> Profile:
    """The :class:`Profile` of ``quantities``, every group read from (or measured into) the store; real
    passes that would exceed ``max_memory`` (default: available memory) are refused before they run."""
    groups = {QUANTITIES[q].group for q in quantities}
    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    if groups & {"params", "trace", "predicted", "usage"}:
        counts = stored_counts(store, loaded, shape, force, max_memory)
        details.update(counts.pop("details", {}))
        values.update(counts)
    if "measured" in groups:
        memory = stored_memory(store, loaded, shape, device, force, max_memory)
        details.update(memory.pop("details", {}))
        values.update(memory)
    if "runtime" in groups:
        timing = stored_runtime(store, loaded, shape, device, runtime, force, max_memory)
        details.update(timing.pop("details", {}))
        values.update(timing)
    return Profile(
        model=loaded.name,
        input_shape=tuple(int(s) for s in shape),
        values={q: values[q] for q in QUANTITIES if q in values and q in quantities},
        scale=loaded.scale,
        preset=preset,
        fingerprint=loaded.fingerprint,
        device=device,
        details=details,
    )


def quality_keys(upscaler, test_set, conventions: Sequence) -> list[ResultKey]:
    """One key per convention: the upscaler's name, fingerprint and checkpoint, the test set and its LR."""
    return [
        ResultKey(
            kind="quality",
            model=upscaler.name,
            checkpoint=upscaler.checkpoint,
            scale=upscaler.scale,
            data=test_set.name,
            conventions={
                "channel": convention.channel,
                "y_variant": convention.y_variant,
                "crop_border": convention.crop_border,
                "lr": test_set.lr_source_description,
            },
            fingerprint=upscaler.fingerprint,
        )
        for convention in conventions
    ]


def measure_quality(upscaler, test_set, conventions: Sequence, progress: bool | None = None) -> list[dict[str, Any]]:
    """The stored values of every convention (the upscaler runs once for all), in their order."""
    from memsr_bench.evaluate import evaluate_conventions

    results = evaluate_conventions(upscaler, test_set, conventions, progress)
    threads = torch.get_num_threads()
    device = device_label(str(getattr(upscaler, "device", "cpu")))  # recorded; PSNR barely depends on it
    return [{**r.to_json(), "threads": threads, "device": device} for r in results]


def stored_quality(
    store: ResultsStore | None,
    upscaler,
    test_set,
    conventions: Sequence,
    force: bool = False,
    progress: bool | None = None,
) -> list:
    """One :class:`~memsr_bench.evaluate.EvalResult` per convention; the upscaler runs once for all
    the conventions not stored yet. Keys: the upscaler's name, fingerprint and checkpoint."""
    from memsr_bench.evaluate import EvalResult, ImageScore

    keys = quality_keys(upscaler, test_set, conventions)
    rows = None if (store is None or force) else [store.get(k) for k in keys]
    if rows is not None and all(r is not None for r in rows):
        stored = [r.values for r in rows]
    else:
        if store is not None:
            for k in keys:
                store.check_not_failed(k)
        values = measure_quality(upscaler, test_set, conventions, progress)
        stored = [cached(store, k, lambda v=v: v, force=True) for k, v in zip(keys, values, strict=True)]
    return [
        EvalResult(
            model=v["model"],
            scale=v["scale"],
            dataset=v["dataset"],
            images=tuple(ImageScore(i["name"], i["psnr"], i["ssim"]) for i in v["images"]),
            conventions={**v["conventions"], "threads": v.get("threads")},
        )
        for v in stored
    ]


def latest_quality(store: ResultsStore | None, model, dataset: str, y_variant: str = "float") -> dict | None:
    """The latest stored Y PSNR/SSIM row of ``model`` (same name and fingerprint, any weights, crop =
    scale) on ``dataset``: its values plus ``weights_sha256`` and ``lr`` of that row; None if none."""
    import json

    if store is None:
        return None
    rows = store.rows(kind="quality", model=model.name, scale=model.scale, data=dataset, fingerprint=model.fingerprint)
    wanted = {"channel": "y", "y_variant": y_variant, "crop_border": model.scale}
    rows = [r for r in rows if wanted.items() <= json.loads(r.key.conventions).items()]
    if not rows:
        return None
    latest = max(rows, key=lambda r: r.measured_at)  # rows come in storage order, not by time
    return latest.values | {"weights_sha256": latest.key.checkpoint, "lr": json.loads(latest.key.conventions)["lr"]}


def latest_runtime(store: ResultsStore, model, shape: Sequence[int], device: str | None = None) -> dict | None:
    """The latest stored runtime row of ``model`` at ``shape`` (on ``device``, a device label, if given)."""
    rows = store.rows(
        kind="runtime", model=model.name, scale=model.scale, data=input_size(shape), fingerprint=model.fingerprint
    )
    rows = [r for r in rows if device is None or r.key.device == device]
    if not rows:
        return None
    row = max(rows, key=lambda r: r.measured_at)
    return {
        "runtime_ms": row.values["runtime_ms"],
        "runtime_iqr_ms": row.values.get("runtime_iqr_ms"),
        "threads": row.values.get("details", {}).get("threads"),
        "runtime_device": row.key.device,
    }
