"""Markdown table of the runtime and peak memory that ``experiments/cuda_measure.sh`` measured.

Reads its ``cuda_profiles.jsonl`` (one ``memsr-bench profile --json`` object a line, with a ``run`` entry:
command line, protocol, CUDA/cuDNN versions; failed runs carry ``error``) and writes one table per preset:
a row per model and scale, the runtime under each protocol, the measured peak beside the predicted one and
their ratio. Every column names its convention; the definitions are quoted from the JSON under the table.

    python experiments/cuda_table.py OUT/cuda_profiles.jsonl            # -> reports/cuda/h100_runtime_memory.md
    python experiments/cuda_table.py OUT/cuda_profiles.jsonl -o t.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MIB = 2**20
PROTOCOLS = ("default", "ntire2022")


def load(path: Path) -> tuple[list[dict], list[dict]]:
    """(successful records, failed records) in file order."""
    ok, failed = [], []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            (failed if "error" in record else ok).append(record)
    return ok, failed


def _distinct(values) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v is not None))
    return " / ".join(seen) if seen else "?"


def _mib(value) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def _ms(record: dict | None) -> str:
    if record is None or "runtime_ms" not in record:
        return "-"
    iqr = record.get("runtime_iqr_ms")
    return f"{record['runtime_ms']:,.3f}" + (
        f" ({iqr:,.3f})" if iqr is not None and record["run"]["protocol"] == "default" else ""
    )


def _weights(record: dict) -> str:
    return record.get("weights_known_as") or (Path(record["weights"]).name if record.get("weights") else "random init")


def _input(record: dict) -> str:
    shape = record.get("input_shape") or []
    return f"{shape[2]}x{shape[3]}" if len(shape) == 4 else "?"


def preset_table(preset: str, records: list[dict]) -> list[str]:
    """The markdown lines of one preset's table."""
    cells: dict[tuple[str, int], dict[str, dict]] = {}
    for r in records:
        cells.setdefault((r["model"], r["scale"]), {})[r["run"]["protocol"]] = r
    flops = _distinct(r.get("reported", {}).get("FLOPs") for r in records)
    protocol_text = {
        p: _distinct(r["details"].get("runtime_protocol") for r in records if r["run"]["protocol"] == p)
        for p in PROTOCOLS
    }
    method = _distinct(r["details"].get("peak_memory_measured_method") for r in records)
    lines = [
        f"## Preset {preset}",
        "",
        f"Runtime protocols as run: {protocol_text['default']}; {protocol_text['ntire2022']}.",
        "",
        "| model | x | LR input | weights | runtime [ms], default protocol: median (IQR) "
        "| runtime [ms], ntire2022 protocol: mean, no warm-up "
        f"| peak measured [MiB]: {method}, weights + input included "
        "| peak predicted [MiB]: traced graph, eager frees "
        "| measured / predicted "
        "| peak predicted [MiB]: freed at last use "
        f"| preset FLOPs [G]: `{flops}` |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (model, scale), by_protocol in cells.items():
        first = by_protocol.get("default") or next(iter(by_protocol.values()))
        measured = [by_protocol[p].get("peak_memory_bytes_measured") for p in PROTOCOLS if p in by_protocol]
        measured = [m for m in measured if m is not None]
        predicted = first.get("peak_memory_bytes_predicted")
        shown = _mib(measured[0]) if measured else "-"
        if len(set(measured)) > 1:  # the two runs' memory passes disagree: show both
            shown = " / ".join(_mib(m) for m in measured)
        ratio = f"{measured[0] / predicted:.3f}" if measured and predicted else "-"
        flops_q = first.get("reported", {}).get("FLOPs")
        flops_v = first.get(flops_q) if flops_q else None
        lines.append(
            f"| {model} | {scale} | {_input(first)} | {_weights(first)} | {_ms(by_protocol.get('default'))} "
            f"| {_ms(by_protocol.get('ntire2022'))} | {shown} | {_mib(predicted)} | {ratio} "
            f"| {_mib(first.get('peak_memory_bytes_predicted_last_use'))} "
            f"| {'-' if flops_v is None else f'{flops_v / 1e9:,.2f}'} |"
        )
    return lines + [""]


def render(ok: list[dict], failed: list[dict], source: str) -> str:
    everything = ok + failed
    device = _distinct(r.get("details", {}).get("device_name") for r in ok)
    conventions = next((r["conventions"] for r in ok if "conventions" in r), {})
    lines = [
        f"# Runtime and peak memory on {device}",
        "",
        "Measured by `experiments/cuda_measure.sh` with "
        f"`memsr-bench profile --device {_distinct(r.get('device') for r in ok)}`; "
        f"table by `python experiments/cuda_table.py {source}`.",
        "",
        f"- device: {device}",
        f"- torch {_distinct(r.get('details', {}).get('torch') for r in ok)}, "
        f"CUDA {_distinct(r['run'].get('cuda') for r in everything)}, "
        f"cuDNN {_distinct(r['run'].get('cudnn') for r in everything)} "
        f"(torch.backends.cudnn.allow_tf32 = {_distinct(r['run'].get('cudnn_allow_tf32') for r in everything)}, "
        f"benchmark = {_distinct(r['run'].get('cudnn_benchmark') for r in everything)}: torch's defaults)",
        f"- {len(ok)} runs, {len(failed)} failed; batch 1, float32, random input in the model's input range, "
        "each run loads the model afresh and makes one measured-memory pass before its timed passes",
        "",
    ]
    presets = list(dict.fromkeys(r["preset"] for r in ok))
    for preset in presets:
        lines += preset_table(preset, [r for r in ok if r["preset"] == preset])
    lines += ["## Definitions (from the JSON)", ""]
    for name in (
        "runtime_ms",
        "peak_memory_bytes_measured",
        "peak_memory_bytes_predicted",
        "peak_memory_bytes_predicted_last_use",
    ):
        if name in conventions:
            lines.append(f"- `{name}`: {conventions[name].split('; here ')[0]}")
    methods = _distinct(r["details"].get("peak_memory_measured_method") for r in ok)
    lines += [
        f"- measured peak method: {methods}",
        "- measured / predicted: `peak_memory_bytes_measured / "
        "peak_memory_bytes_predicted` (1.000 = the prediction is exact; above 1 = allocator or library "
        "memory the graph does not show, e.g. cuDNN workspaces)",
        "",
    ]
    if failed:
        lines += ["## Failed or not run", ""]
        done = {(r["model"], r["scale"], r["preset"], r["run"]["protocol"]) for r in ok}
        for r in failed:
            err = " ".join(str(r["error"]).split())[:400]
            run = r["run"]
            key = (r["model"], r["scale"], r["preset"], run["protocol"])
            again = " **Measured again without weights: in the table.**" if key in done else ""
            lines.append(
                f"- {r['model']} x{r['scale']} {r['preset']} ({run['protocol']}): "
                + (f"`{run['cli']}`: " if run.get("cli") else "")
                + f"{err}{again}"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jsonl", type=Path, help="cuda_profiles.jsonl written by experiments/cuda_measure.sh")
    parser.add_argument("-o", "--out", type=Path, default=Path("reports/cuda/h100_runtime_memory.md"))
    args = parser.parse_args()
    ok, failed = load(args.jsonl)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(ok, failed, args.jsonl.name))
    print(f"wrote {args.out}: {len(ok)} runs, {len(failed)} failed")


if __name__ == "__main__":
    main()
