"""A user's own network in every harness, by reference: a model file outside the repository, an installed
package's entry point, checkpoints recognised by content, no silent random weights, stale rows impossible."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from memsr_bench.cli import main

REPO = Path(__file__).resolve().parents[1]

# A network of the user's own: its code only, nothing imported from the repository. Its module tree mirrors
# zoo's FSRCNN (same names and shapes, Y input 0..1), so the same weights give the same SR output.
USER_MODEL = """
from torch import nn


class TinyFSRCNN(nn.Module):
    def __init__(self, scale=2, d=56, s=12, m=4):
        super().__init__()
        self.first_part = nn.Sequential(nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d))
        layers = [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.mid_part = nn.Sequential(*layers)
        self.last_part = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)
        # EXTRA

    def forward(self, x):
        x = self.first_part(x)
        # EXTRA-FORWARD
        return self.last_part(self.mid_part(x))


def build(scale=2, d=56, s=12, m=4):
    return TinyFSRCNN(scale, d, s, m)
"""
EXTRA_CONV = (
    ("# EXTRA\n", "self.extra = nn.Conv2d(d, d, 3, padding=1)\n"),
    ("# EXTRA-FORWARD\n", "x = self.extra(x)\n"),
)


def _write_model(folder: Path, edited: bool = False) -> Path:
    text = USER_MODEL
    if edited:
        for marker, line in EXTRA_CONV:
            indent = " " * 8
            text = text.replace(indent + marker, indent + line)
    path = folder / "tinysr.py"
    path.write_text(text)
    return path


def _ntire2022_hooks(model: nn.Module, shape) -> tuple[int, int]:
    """The NTIRE 2022 ESR script's counting (get_model_flops): forward hooks on module types; one hook for
    Conv2d and ConvTranspose2d, kh*kw*Cin*Cout/groups per *output* element; activations count their outputs."""
    total = 0

    def conv(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.shape[2] * output.shape[3] * k * module.in_channels * module.out_channels // module.groups

    def act(module, inputs, output):
        nonlocal total
        total += output.numel()

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            handles.append(m.register_forward_hook(conv))
        elif isinstance(m, (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)):
            handles.append(m.register_forward_hook(act))
    with torch.no_grad():
        model(torch.rand(shape))
    for h in handles:
        h.remove()
    return sum(p.numel() for p in model.parameters()), total


@pytest.fixture
def test_set(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "Set5"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(folder / f"{name}.png")
    return folder


def _run(capsys, *argv: str) -> str:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_a_model_file_outside_the_repository_in_every_command(tmp_path, capsys, test_set):
    outside = tmp_path / "outside"
    outside.mkdir()
    assert REPO not in outside.parents
    ref = f"{_write_model(outside)}:build"
    store = tmp_path / "store.sqlite"
    meta = ["--channels", "y", "--input-range", "1"]

    # profile: params and NTIRE 2022 FLOPs as the NTIRE script's hooks count them
    profile_ntire = ["profile", ref, *meta, "--scale", "2", "--preset", "ntire2022", "--no-runtime", "--json"]
    profile = json.loads(_run(capsys, *profile_ntire, "--store", store))
    import importlib.util

    spec = importlib.util.spec_from_file_location("tinysr_oracle", outside / "tinysr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params, flops = _ntire2022_hooks(module.build(scale=2), (1, 1, 256, 256))
    assert profile["params"] == params and profile["ntire2022_flops"] == flops
    assert (
        profile["reported"]["FLOPs"] == "ntire2022_flops"
        and profile["input"] == "Y 0..1 (given: --input-range, --channels)"
    )

    # --config reaches the constructor; a wrong key or value names the key
    out = _run(
        capsys,
        "profile",
        ref,
        *meta,
        "--scale",
        "2",
        "--config",
        "d=32",
        "m=2",
        "--input",
        "16x16",
        "--no-runtime",
        "--json",
        "--store",
        store,
    )
    assert json.loads(out)["params"] < params and json.loads(out)["config"] == {"d": 32, "m": 2}
    assert main(["profile", ref, "--config", "depth=3", "--store", str(store)]) == 2
    assert "--config depth: tinysr:build has no parameter 'depth'" in capsys.readouterr().err
    assert main(["profile", ref, "--config", "d=abc", "--store", str(store)]) == 2
    assert "--config d: expected an integer like the default 56, got 'abc'" in capsys.readouterr().err

    # eval with a saved state_dict (a BasicSR-style container): equal to the same network built from the zoo
    torch.manual_seed(1)
    weights = tmp_path / "mine.pth"
    torch.save({"params": module.build(scale=2).state_dict()}, weights)
    mine = json.loads(
        _run(
            capsys,
            "eval",
            ref,
            *meta,
            "--scale",
            "2",
            "--data",
            test_set,
            "--weights",
            weights,
            "--json",
            "--store",
            store,
        )
    )
    zoo_result = json.loads(
        _run(
            capsys,
            "eval",
            "fsrcnn",
            "--scale",
            "2",
            "--data",
            test_set,
            "--weights",
            weights,
            "--json",
            "--store",
            store,
        )
    )
    assert mine["psnr"] == zoo_result["psnr"] and mine["ssim"] == zoo_result["ssim"]
    assert mine["weights_sha256"] == zoo_result["weights_sha256"] and mine["fingerprint"] != zoo_result["fingerprint"]

    # a table row beside zoo models, highlighted; a figure that includes it
    table = _run(
        capsys,
        "table",
        "fmen-table4",
        "--models",
        "fsrcnn",
        ref,
        *meta,
        "--highlight",
        ref,
        "--max-gmacs",
        "1e-9",
        "--format",
        "csv",
        "--store",
        store,
    )
    rows = {r["model"]: r for r in _csv(table)}
    assert set(rows) == {"fsrcnn", "tinysr:build"} and rows["tinysr:build"]["highlight"] == "True"
    assert int(rows["tinysr:build"]["params"]) == params
    assert int(rows["tinysr:build"]["ntire2022_flops"]) == _ntire2022_hooks(module.build(scale=4), (1, 1, 256, 256))[1]
    _run(capsys, "eval", ref, *meta, "--scale", "4", "--data", test_set, "--random-weights", "--store", store)
    _run(
        capsys,
        "plot",
        "psnr-memory",
        "--models",
        "fsrcnn",
        ref,
        *meta,
        "--highlight",
        ref,
        "--dataset",
        "Set5",
        "--store",
        store,
        "--out",
        tmp_path / "fig",
    )
    assert (tmp_path / "fig.png").stat().st_size > 1000

    # the file changes (one more conv): table and profile follow without --force
    _write_model(outside, edited=True)
    edited = json.loads(_run(capsys, *profile_ntire, "--store", store))
    assert edited["params"] == params + 56 * 56 * 9 + 56 and edited["fingerprint"] != profile["fingerprint"]
    table = _run(
        capsys,
        "table",
        "fmen-table4",
        "--models",
        ref,
        *meta,
        "--max-gmacs",
        "1e-9",
        "--format",
        "csv",
        "--store",
        store,
    )
    assert int(_csv(table)[0]["params"]) == params + 56 * 56 * 9 + 56
    # the edited model has no PSNR yet: the figure refuses instead of showing the old version's
    assert (
        main(
            [
                "plot",
                "psnr-memory",
                "--models",
                ref,
                *meta,
                "--dataset",
                "Set5",
                "--store",
                str(store),
                "--out",
                str(tmp_path / "fig2"),
            ]
        )
        == 2
    )
    assert "no model has a stored PSNR" in capsys.readouterr().err


def _csv(text: str) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_entry_point_models_are_found_without_importing(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    (site / "labnets").mkdir(parents=True)
    (site / "labnets" / "__init__.py").write_text(
        "from torch import nn\n\n\ndef build_labnet(scale=4, width=8):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 3 * scale * scale, 3,"
        " padding=1), nn.PixelShuffle(scale))\n"
    )
    info = site / "labnets-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labnets\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[memsr_bench.models]\nlabnet = labnets:build_labnet\n")
    monkeypatch.syspath_prepend(str(site))

    rows = json.loads(_run(capsys, "zoo", "--json"))
    (row,) = [r for r in rows if r["model"] == "labnet"]
    assert "entry point of labnets 1.2 (labnets:build_labnet)" in row["origin"]
    out = json.loads(_run(capsys, "profile", "labnet", "--input", "16x16", "--no-runtime", "--json"))
    assert out["model"] == "labnet" and out["scale"] == 4 and out["params"] == 3 * 8 * 9 + 8 + 8 * 48 * 9 + 48


@pytest.mark.shared
def test_renamed_public_checkpoint_by_content_and_no_silent_random_weights(tmp_path, capsys, test_set):
    from conftest import require_shared

    renamed = tmp_path / "my_weights.pth"
    renamed.write_bytes(require_shared("weights", "fsrcnn_x2.pth").read_bytes())
    out = json.loads(
        _run(
            capsys,
            "profile",
            "fsrcnn",
            "--scale",
            "2",
            "--weights",
            renamed,
            "--input",
            "8x8",
            "--no-runtime",
            "--json",
        )
    )
    assert out["weights_known_as"] == "fsrcnn_x2.pth"
    assert main(["eval", "fsrcnn", "--scale", "4", "--data", str(test_set), "--weights", str(renamed)]) == 2
    err = capsys.readouterr().err
    assert "this file is fsrcnn_x2.pth, the public checkpoint of fsrcnn x2" in err and "not of fsrcnn x4" in err
    assert err.count("\n") == 1

    assert main(["eval", "fsrcnn", "--scale", "4", "--data", str(test_set)]) == 2
    err = capsys.readouterr().err
    assert "fsrcnn x4 has no weights" in err and "fsrcnn_x4.pth" in err and "--random-weights" in err


def test_no_second_copy_of_the_helpers_and_short_cli_functions():
    """One size parser, one byte formatter, one checkpoint lookup; every CLI function under ~60 lines."""
    defined: dict[str, list[str]] = {}
    for path in [*REPO.glob("memsr_bench/**/*.py"), *REPO.glob("zoo/*.py"), *REPO.glob("experiments/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(REPO)))
                if "cli" in path.parts:
                    assert node.end_lineno - node.lineno <= 60, f"{path}:{node.name} is {node.end_lineno - node.lineno}"
    assert defined["parse_size"] == ["memsr_bench/units.py"]
    assert defined["format_bytes"] == ["memsr_bench/units.py"]
    assert defined["find_checkpoint"] == ["zoo/checkpoints.py"]
    for copy in ("_fmt_bytes", "_format_bytes", "_mib_text", "lr_size_for", "_known_files"):
        assert copy not in defined, defined.get(copy)
