"""The compression trainers (memsr_bench.compress.train) and ``memsr-bench compress prune|distill``: exact zeros
and density read-outs of OBProxSG pruning, distillation that lowers its loss, exact resume of both, and one-line
CLI errors. Tiny models and a few T91 images (copied from ../shared/train/T91, skipped where absent) keep the file
fast on CPU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from memsr_bench.cli import main
from memsr_bench.compress import train as ct
from memsr_bench.compress.train import DistillConfig, PruneConfig, distill, min_distill_patch, prune
from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr.modelio import load_model_file
from memsr_bench.model import load_model
from tests.conftest import require_shared

SMALL_EDSR = {"n_resblocks": 2, "n_feats": 8}
T91_SUBSET = ("t1", "t2", "t3", "t5", "t8", "tt2")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    t91 = require_shared("train", "T91")
    root = tmp_path_factory.mktemp("compress-data")
    train_dir = root / "T91-subset"  # a few images: loading all 91 (MATLAB bicubic LR) takes seconds per run
    train_dir.mkdir()
    for stem in T91_SUBSET:
        shutil.copy(t91 / f"{stem}.png", train_dir / f"{stem}.png")
    val_dir = root / "val"
    val_dir.mkdir()
    for i, stem in enumerate(T91_SUBSET[:2]):
        img = np.asarray(Image.open(t91 / f"{stem}.png").convert("RGB"))[:40, :48]
        Image.fromarray(img).save(val_dir / f"v{i}.png")
    return {"train": train_dir, "val": val_dir}


def _edsr(seed: int = 0, name: str = "edsr-baseline", config: dict | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    return load_model(name, 2, config=SMALL_EDSR if config is None else config).module


def _student(seed: int = 0) -> torch.nn.Module:
    from zoo.registry import names

    if "edsr-mini" in names():
        return _edsr(seed, "edsr-mini", {})
    return _edsr(seed)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _prune_config(data, **kw) -> PruneConfig:
    base = dict(
        train_dir=str(data["train"]),
        epochs=2,
        steps_per_epoch=3,
        batch_size=4,
        patch_size=16,
        lambda_=1.0,  # strong enough to zero weights in a handful of steps
        n_p=1,
        log_every=2,
    )
    return PruneConfig(**{**base, **kw})


def _distill_config(data, **kw) -> DistillConfig:
    base = dict(
        train_dir=str(data["train"]),
        epochs=2,
        steps_per_epoch=10,
        batch_size=4,
        patch_size=16,
        lr=1e-3,
        log_every=1,
    )
    return DistillConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pruned(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune") / "run"
    return prune(_edsr(), _prune_config(data, val_dir=str(data["val"])), out, progress=False), out


def test_prune_makes_exact_zeros_and_writes_the_density_files(pruned):
    result, out = pruned
    zeros = sum(int((p == 0).sum()) for p in result.model.parameters())
    assert zeros > 0 and result.steps_run == 6
    assert all(0 < d < 1 for d in result.layer_density.values())
    assert list(result.block_density) == ["body.0", "body.1"]
    assert set(result.proposed_config) == {"n_resblocks", "n_feats"}
    assert 1 <= result.proposed_config["n_feats"] <= 8 and result.proposed_config["n_resblocks"] <= 2

    history = json.loads((out / "history.json").read_text())
    rows = history["history"]
    assert [r["step"] for r in rows] == [2, 3, 4, 6]  # every log_every steps and every epoch end
    assert {"loss", "data", "l1_norm", "prox_fraction", "density", "layer_density", "block_density"} <= set(rows[0])
    assert rows[0]["prox_fraction"] == 1.0 and rows[-1]["prox_fraction"] == 0.0  # Np = 1 epoch, then orthant
    assert "val_psnr" in rows[-1] and np.isfinite(rows[-1]["val_psnr"])
    assert history["proposal"]["n_feats"] == result.proposed_config["n_feats"] and "rule" in history["proposal"]
    assert rows[-1]["layer_density"] == result.layer_density

    csv_lines = (out / "density.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == ["step", "density", *result.layer_density]
    assert len(csv_lines) == 1 + len(rows)
    md = (out / "density.md").read_text()
    cfg_text = f"n_resblocks={result.proposed_config['n_resblocks']} n_feats={result.proposed_config['n_feats']}"
    assert cfg_text in md and "Rule:" in md and "| body.0 |" in md and "| body.0.body.0 |" in md
    assert (out / "density.png").read_bytes().startswith(b"\x89PNG")

    model, _, payload = load_model_file(result.checkpoint)  # the checkpoint is a model file of the pruned EDSR
    assert _same(_weights(model), _weights(result.model)) and payload["kind"] == "prune"


def test_prune_resumes_exactly_and_refuses_mismatches(data, pruned, tmp_path, monkeypatch):
    result, out = pruned
    original = ct._save_checkpoint

    def crash_after_first_epoch(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    cfg = _prune_config(data, val_dir=str(data["val"]))
    monkeypatch.setattr(ct, "_save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        prune(_edsr(), cfg, tmp_path / "c", progress=False)
    monkeypatch.setattr(ct, "_save_checkpoint", original)
    resumed = prune(_edsr(seed=99), cfg, tmp_path / "c", resume=True, progress=False)
    assert resumed.steps_run == 3
    assert _same(_weights(resumed.model), _weights(result.model))  # identical to the uninterrupted run
    assert [r["step"] for r in resumed.history] == [r["step"] for r in result.history]
    assert resumed.proposed_config == result.proposed_config

    with pytest.raises(MemsrInputError, match="--resume"):
        prune(_edsr(), cfg, out, progress=False)
    with pytest.raises(MemsrInputError, match="lambda_"):
        prune(_edsr(), _prune_config(data, lambda_=0.5), out, resume=True, progress=False)
    with pytest.raises(MemsrInputError, match="--np"):
        prune(_edsr(), _prune_config(data, n_p=-1), tmp_path / "bad", progress=False)


def test_distill_lowers_the_loss_and_resumes_exactly(data, tmp_path, monkeypatch):
    cfg = _distill_config(data)
    first = distill(_edsr(seed=1), _student(), cfg, tmp_path / "a", ema=0.9, progress=False)
    rows = first.history
    assert len(rows) == 20 and first.steps_run == 20
    assert all(r["loss"] == pytest.approx(r["multilap"] + 0.1 * r["l1"], rel=1e-5) for r in rows)
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])

    original = ct._save_checkpoint

    def crash_after_first_epoch(*args, **kwargs):
        original(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ct, "_save_checkpoint", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(_edsr(seed=1), _student(), cfg, tmp_path / "b", ema=0.9, progress=False)
    monkeypatch.setattr(ct, "_save_checkpoint", original)
    resumed = distill(_edsr(seed=1), _student(seed=7), cfg, tmp_path / "b", resume=True, ema=0.9, progress=False)
    assert resumed.steps_run == 10 and [r["loss"] for r in resumed.history] == losses
    assert _same(_weights(resumed.model), _weights(first.model))  # the EMA student, as uninterrupted
    saved = torch.load(first.checkpoint, weights_only=True)
    again = torch.load(resumed.checkpoint, weights_only=True)
    assert _same(saved["train_model"], again["train_model"])  # and the raw student
    assert _same(saved["model"], _weights(first.model)) and saved["ema_decay"] == 0.9

    with pytest.raises(MemsrInputError, match="ema"):
        distill(_edsr(seed=1), _student(), cfg, tmp_path / "b", resume=True, ema=None, progress=False)


def test_distill_patch_size_is_checked_first(data, tmp_path):
    assert min_distill_patch(2, 15) == 16 and min_distill_patch(3, 1) == 16 and min_distill_patch(4, 9) == 12
    with pytest.raises(MemsrInputError, match="--patch-size 16"):
        distill(_edsr(), _edsr(), _distill_config(data, patch_size=12), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_one_line_errors(data, tmp_path, capsys):
    small = ["n_resblocks=1", "n_feats=4"]
    common = ["--scale", "2", "--train-dir", str(data["train"]), "--out", str(tmp_path / "run"), "--no-progress"]
    distill_args = ["compress", "distill", "edsr-baseline", "edsr-baseline", "--teacher-config", *small]
    code, _, err = _cli([*distill_args, "--student-config", *small, *common], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the teacher has no weights" in err
    distill_args.append("--random-teacher")
    code, _, err = _cli([*distill_args, "--student-config", *small, *common, "--patch-size", "15"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--patch-size" in err and "multiple of 16" in err

    prune_args = ["compress", "prune", "edsr-baseline", "--config", *small, *common]
    code, _, err = _cli([*prune_args, "--val-dir", str(tmp_path / "nope")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nope" in err and "not found" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()

    for bad in (["--lambda", "-1"], ["--np", "-2"], ["--epochs", "0"], ["--eps", "nan"], ["--device", "tpu"]):
        code, _, err = _cli([*prune_args, *bad], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and bad[0] in err
    code, _, err = _cli([*distill_args, *common, "--ema", "1.5"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--ema" in err


def test_cli_prune_json_summary(data, tmp_path, capsys):
    args = ["compress", "prune", "edsr-baseline", "--config", "n_resblocks=1", "n_feats=4", "--scale", "2"]
    args += ["--train-dir", str(data["train"]), "--out", str(tmp_path / "p"), "--epochs", "1", "--steps-per-epoch"]
    args += ["2", "--batch-size", "2", "--patch-size", "16", "--lambda", "1", "--np", "0", "--no-progress", "--json"]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["steps_run"] == 2 and set(summary["proposed_config"]) == {"n_resblocks", "n_feats"}
    assert summary["final"]["step"] == 2 and "layer_density" not in summary["final"]
    assert {"history", "density_csv", "density_md", "density_png"} == set(summary["files"])
    code, out, _ = _cli(args[:-1], capsys)  # a finished run: --resume is required
    assert code == 2
    code, out, _ = _cli([*args[:-1], "--resume"], capsys)
    assert code == 0 and "proposed compact configuration: --config n_resblocks=" in out


class _PointwiseTeacher(torch.nn.Module):
    """Nearest x2 upsampling then a 1x1 conv: local and flip-equivariant, so its output on a patch is exactly
    the patch of its output on the whole image; cached and online targets must then train alike."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.mix = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.mix(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_cached_teacher_targets_train_like_online_ones_for_a_pointwise_teacher(data, tmp_path):
    results = {}
    for targets in ("online", "cached"):
        cfg = _distill_config(data, epochs=1, steps_per_epoch=3, teacher_targets=targets)
        results[targets] = distill(_PointwiseTeacher(), _student(), cfg, tmp_path / targets, progress=False)
    online, cached = (results[k] for k in ("online", "cached"))
    assert [r["multilap"] for r in cached.history] == pytest.approx([r["multilap"] for r in online.history], rel=1e-5)
    for key, value in _weights(online.model).items():
        torch.testing.assert_close(_weights(cached.model)[key], value, rtol=1e-4, atol=1e-6)
    # a real network is not pointwise: its cached targets differ from the online ones (patch borders)
    cfg = _distill_config(data, epochs=1, steps_per_epoch=2)
    a = distill(_edsr(seed=1), _student(), cfg, tmp_path / "edsr-online", progress=False)
    cfg = _distill_config(data, epochs=1, steps_per_epoch=2, teacher_targets="cached")
    b = distill(_edsr(seed=1), _student(), cfg, tmp_path / "edsr-cached", progress=False)
    assert a.history[0]["l1"] == b.history[0]["l1"]  # the same patches
    assert a.history[0]["multilap"] != b.history[0]["multilap"]


def test_sampler_targets_follow_the_patches(data):
    from memsr_bench.memsr.data import PatchSampler

    sampler = PatchSampler(data["train"], 2, 8, seed=4)
    plain = PatchSampler(data["train"], 2, 8, seed=4).sample(6)
    sampler.set_targets([im.hr.astype(np.float32) for im in sampler.images])
    lr, hr, target = sampler.sample(6, with_targets=True)
    assert torch.equal(lr, plain[0]) and torch.equal(hr, plain[1]) and torch.equal(target, hr)
    with pytest.raises(ValueError, match="shape"):
        sampler.set_targets([im.lr.astype(np.float32) for im in sampler.images])


def test_distill_validates_the_raw_student_beside_the_ema_and_skips_an_unused_teacher(data, tmp_path):
    class Refusing(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the teacher ran although lap_weight is 0")

    cfg = _distill_config(data, epochs=1, steps_per_epoch=3, lap_weight=0.0, l1_weight=1.0, val_dir=str(data["val"]))
    for targets in ("online", "cached"):
        cfg.teacher_targets = targets
        result = distill(Refusing(), _student(), cfg, tmp_path / targets, ema=0.5, progress=False)
        last = result.history[-1]
        assert {"val_psnr", "val_raw_psnr"} <= set(last) and last["val_psnr"] != last["val_raw_psnr"]
        assert all(r["multilap"] == 0 for r in result.history)


@pytest.mark.parametrize(
    ("name", "blocks", "width"),
    [
        ("edsr-mini", 8, 16),
        ("imdn", 6, 64),
        ("rfdn", 6, 48),
        ("rlfn", 6, 52),
        ("carn", 3, 64),
        ("latticenet", 4, 64),
        ("swinir-mini", 3, 24),
        ("fmen-s", 9, 50),  # the HFAB in its warm-up, 4 ERBs, 4 HFABs; ERB convs expand to 100 inside
    ],
)
def test_prune_structure_finds_the_repeated_blocks_and_the_shared_width(name, blocks, width):
    structure = ct._structure(load_model(name, 2).module)
    assert (len(structure.blocks), structure.base_channels) == (blocks, width)
