"""MemSR training tools: schedules, distillation loss, patch sampling, the trainer (determinism,
checkpoint + resume, validation, distillation), model files, the ``convert`` / ``train`` CLI (teachers
from any model reference) and the experiment scripts ``experiments/memsr_reproduce.py`` and
``experiments/memsr_seed_repeat.py`` (end to end on tiny synthetic folders, so no ../shared is needed)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from memsr_bench.cli.convert import add_convert_parsers, load_teacher
from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr import train as tr
from memsr_bench.memsr.data import PatchSampler, load_training_images
from memsr_bench.memsr.distill import BridgeDistillLoss, kd_weight
from memsr_bench.memsr.modelio import load_model_file, save_model_file
from memsr_bench.memsr.plainify import plainify
from memsr_bench.memsr.student_init import init_student
from memsr_bench.memsr.train import TrainConfig, evaluate_model, lr_at, train
from zoo.edsr import EDSR


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (3 + c) + yy / (5 + c) + seed) for c in range(3)], axis=2)
    return np.clip((base * 0.4 + 0.5) * 255 + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _folder(path: Path, sizes, seed=0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_image(h, w, seed + i)).save(path / f"im{i}.png")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("memsr-data")
    return {
        "train": _folder(root / "train", [(40, 44), (36, 48), (48, 40)]),
        "val": _folder(root / "datasets" / "SetA" / "HR", [(24, 20), (22, 26)], seed=10).parent,
        "root": root,
    }


def _tiny_teacher(seed=0, scale=2) -> EDSR:
    torch.manual_seed(seed)
    return EDSR(scale=scale, n_resblocks=1, n_feats=4).eval()


def _config(data, **kw) -> TrainConfig:
    base = dict(
        train_dir=str(data["train"]),
        scale=2,
        epochs=2,
        steps_per_epoch=2,
        batch_size=2,
        patch_size=8,
        lr=1e-3,
    )
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
# schedules and loss


def test_learning_rate_schedules():
    assert lr_at(0, 100, 1.0, "constant") == lr_at(99, 100, 1.0, "constant") == 1.0
    assert lr_at(0, 100, 1.0, "cosine") == 1.0 and lr_at(50, 100, 1.0, "cosine") == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, "cosine") == pytest.approx(0.0)
    assert [lr_at(s, 100, 1.0, "step") for s in (0, 49, 50, 75, 99)] == [1.0, 1.0, 0.5, 0.25, 0.25]
    assert lr_at(0, 100, 1.0, "onecycle") == pytest.approx(1 / 25)  # torch OneCycleLR defaults
    assert max(lr_at(s, 100, 1.0, "onecycle") for s in range(100)) == pytest.approx(1.0, abs=1e-3)
    assert lr_at(99, 100, 1.0, "onecycle") == pytest.approx(1 / 25 / 1e4)
    for total in (7, 50, 333):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.Adam([p], lr=2e-4)
        ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-4, total_steps=total)
        for step in range(total):
            assert lr_at(step, total, 2e-4, "onecycle") == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
            opt.step()
            ref.step()
    with pytest.raises(MemsrInputError, match="schedule"):
        lr_at(0, 10, 1.0, "linear")


def test_kd_weight_and_loss():
    assert kd_weight(0, 10) == pytest.approx(0.3)
    assert kd_weight(5, 10) == pytest.approx(0.3 * 1e-5**0.5)
    assert kd_weight(10, 10) == pytest.approx(0.3e-5)
    assert all(kd_weight(e, 10) > kd_weight(e + 1, 10) for e in range(9))
    bridges = torch.nn.ModuleList([torch.nn.Conv2d(2, 3, 1), torch.nn.Identity()])
    s = [torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)]
    t = [bridges[0](s[0]).detach() + 1.0, s[1] + 2.0]
    with torch.no_grad():
        assert float(BridgeDistillLoss(bridges)(s, t)) == pytest.approx((1.0 + 4.0) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="one to one"):
        BridgeDistillLoss(bridges)(s[:1], t)


# ---------------------------------------------------------------------------------------------
# data


def test_patch_sampler_aligns_and_augments(data):
    sampler = PatchSampler(data["train"], 2, patch_size=18, seed=5)
    assert len(sampler) == 3 and sampler.skipped == []
    images = load_training_images(data["train"], 2)[0]
    seen = set()
    for _ in range(12):  # a patch as large as the smallest image: find the crop and the symmetry it used
        lr, hr = sampler.sample(1)
        lr_np, hr_np = lr[0].permute(1, 2, 0).byte().numpy(), hr[0].permute(1, 2, 0).byte().numpy()
        found = False
        for im in images:
            for code in range(8):
                inv = lambda a, c=code: _undo(a, c)  # noqa: E731
                ul, uh = inv(lr_np), inv(hr_np)
                h, w = im.lr.shape[:2]
                for y in range(h - 17):
                    for x in range(w - 17):
                        if np.array_equal(im.lr[y : y + 18, x : x + 18], ul):
                            found |= np.array_equal(im.hr[2 * y : 2 * y + 36, 2 * x : 2 * x + 36], uh)
                if found:
                    seen.add(code)
                    break
            if found:
                break
        assert found
    assert len(seen) > 1  # several symmetries occur
    a = PatchSampler(data["train"], 2, 8, seed=1).sample(4)
    b = PatchSampler(data["train"], 2, 8, seed=1).sample(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _undo(img: np.ndarray, code: int) -> np.ndarray:
    if code & 4:
        img = img.transpose(1, 0, 2)
    if code & 2:
        img = img[::-1, :]
    if code & 1:
        img = img[:, ::-1]
    return img


# ---------------------------------------------------------------------------------------------
# trainer


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_and_resumes_exactly(data, tmp_path, monkeypatch):
    cfg = _config(data, val_dir=str(data["val"]))
    first = train(_tiny_teacher(), cfg, tmp_path / "a", progress=False)
    second = train(_tiny_teacher(), cfg, tmp_path / "b", progress=False)
    w1, w2 = _weights(first.model), _weights(second.model)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert len(first.history) == 2 and {"val_psnr", "val_ssim", "l1", "lr", "epoch_seconds"} <= set(first.history[0])
    psnr, ssim = evaluate_model(first.model, data["val"], 2)
    assert first.history[-1]["val_psnr"] == pytest.approx(psnr) and first.history[-1]["val_ssim"] == pytest.approx(ssim)
    assert json.loads((tmp_path / "a" / "history.json").read_text())["history"] == first.history
    assert w1["head.0.weight"].ne(_weights(_tiny_teacher())["head.0.weight"]).any()  # it trained

    original = tr._save
    calls = []

    def crash_after_first_epoch(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "_save", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_teacher(), cfg, tmp_path / "c", progress=False)
    monkeypatch.setattr(tr, "_save", original)
    resumed = train(_tiny_teacher(seed=99), cfg, tmp_path / "c", resume=True, progress=False)
    assert resumed.steps_run == 2 and len(resumed.history) == 2
    w3 = _weights(resumed.model)
    assert all(torch.equal(w1[k], w3[k]) for k in w1)  # identical to the uninterrupted run

    with pytest.raises(MemsrInputError, match="--resume"):
        train(_tiny_teacher(), cfg, tmp_path / "a", progress=False)
    with pytest.raises(MemsrInputError, match="lr"):
        train(_tiny_teacher(), _config(data, val_dir=str(data["val"]), lr=5e-4), tmp_path / "a", resume=True)
    done = train(_tiny_teacher(), cfg, tmp_path / "a", resume=True, progress=False)  # finished: nothing to do
    assert done.steps_run == 0 and all(torch.equal(w1[k], v) for k, v in _weights(done.model).items())


def test_distillation_trains_student_and_bridges(data, tmp_path):
    teacher = _tiny_teacher(seed=1)
    plain, _ = plainify(teacher)
    calib = PatchSampler(data["train"], 2, 12, seed=0, augment=False).sample(4)[0]
    init = init_student(plain, calib, theta=0.2)
    before = _weights(init.bridges)
    cfg = _config(data, distill_coe=0.3)
    result = train(init.student, cfg, tmp_path / "kd", teacher=plain, bridges=init.bridges, progress=False)
    h = result.history
    assert h[0]["lambda"] == pytest.approx(0.3) and h[1]["lambda"] == pytest.approx(0.3 * 1e-5**0.5)
    assert all(r["kd"] > 0 and math.isfinite(r["loss"]) for r in h)
    assert h[0]["loss"] == pytest.approx(h[0]["l1"] + h[0]["lambda"] * h[0]["kd"], rel=1e-5)
    after = _weights(result.bridges)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the bridges are trained too
    model, bridges, payload = load_model_file(result.checkpoint)
    assert bridges is not None and payload["epoch"] == 2 and payload["config"]["distill_coe"] == 0.3
    with pytest.raises(MemsrInputError, match="distill"):
        train(init.student, cfg, tmp_path / "kd2", progress=False)  # no teacher / bridges


def test_bad_training_config(data, tmp_path):
    for kw, word in [({"epochs": 0}, "epochs"), ({"lr": 0}, "lr"), ({"schedule": "x"}, "schedule")]:
        with pytest.raises(MemsrInputError, match=word):
            train(_tiny_teacher(), _config(data, **kw), tmp_path / "bad", progress=False)
    with pytest.raises(MemsrInputError, match="not found"):
        train(_tiny_teacher(), _config(data, train_dir=str(tmp_path / "none")), tmp_path / "bad", progress=False)
    with pytest.raises(MemsrInputError, match="large enough"):
        train(_tiny_teacher(), _config(data, patch_size=64), tmp_path / "bad", progress=False)


# ---------------------------------------------------------------------------------------------
# model files


def test_model_files_round_trip(tmp_path):
    import zoo

    teacher = _tiny_teacher(scale=3)
    path = save_model_file(tmp_path / "t.pt", teacher, report={"note": "x"})
    loaded, bridges, payload = load_model_file(path)
    x = torch.rand(1, 3, 7, 6) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), teacher(x)) and bridges is None and payload["report"] == {"note": "x"}
        via_zoo = zoo.create("edsr-baseline", scale=3, checkpoint=path, n_resblocks=1, n_feats=4)
        assert torch.equal(via_zoo(x), teacher(x))  # teacher files load through zoo.create too
    plain, _ = plainify(teacher)
    init = init_student(plain, torch.rand(2, 3, 10, 10) * 255, theta=0.1)
    path = save_model_file(tmp_path / "s.pt", init.student, bridges=init.bridges)
    student, bridges, _ = load_model_file(path)
    with torch.no_grad():
        assert torch.equal(student(x), init.student(x)) and len(bridges) == len(init.bridges)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MemsrInputError, match="not a PyTorch model file|truncated or corrupt model file"):
        load_model_file(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(MemsrInputError, match="not a memsr-bench model file"):
        load_model_file(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsr-bench")
    add_convert_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _run(argv: list[str], capsys) -> tuple[int, str]:
    args = _parser().parse_args(argv)
    code = args.run(args)
    return code, capsys.readouterr().out


def test_cli_help_texts():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"convert", "train"}
    for top, names in (("convert", ("plain", "student")), ("train", ("teacher", "student"))):
        inner = next(a for a in sub.choices[top]._actions if isinstance(a, argparse._SubParsersAction))
        assert set(inner.choices) == set(names)
        for name in names:
            text = inner.choices[name].format_help()
            assert "Example" in text and "--seed" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "student", "edsr-baseline", "--theta", "0.1", "--fix-r", "4"])


def test_cli_convert_plain(tmp_path, capsys):
    code, out = _run(["convert", "plain", "edsr-baseline", "--scale", "3", "--config", "n_resblocks=2", "n_feats=6",
                      "--check", "--json", "--out", str(tmp_path / "p.pt")], capsys)  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["widths"] == [6, 18, 12, 18, 12, 6]
    assert report["params"] > report["teacher_params"] and 0 <= report["max_abs_diff"] <= 1e-3
    plain, _, payload = load_model_file(tmp_path / "p.pt")
    assert list(plain.widths) == report["widths"] and payload["report"]["widths"] == report["widths"]
    code, out = _run(["convert", "plain", "edsr-baseline", "--config", "n_resblocks=1", "n_feats=4", "--check"], capsys)
    assert code == 0 and "max |teacher - plain|" in out and "widths [4, 12, 8, 4]" in out
    code, out = _run(["convert", "plain", "edsr-baseline", "--config", "n_resblocks=1", "n_feats=4", "--check",
                      "--tolerance", "0"], capsys)  # fmt: skip
    assert code == 1 and "ABOVE" in out  # float32 rounding of the +-1000 offset is not zero


@pytest.mark.parametrize(
    "argv,where",
    [
        (["convert", "plain", "no-such-model"], "no-such-model"),
        (["convert", "plain", "edsr-baseline", "--config", "n_resblocks"], "--config"),
        (["convert", "plain", "edsr-baseline", "--config", "depth=3"], "--config depth"),  # load_model names it
        (["convert", "plain", "zoo.edsr:NoSuch"], "zoo.edsr:NoSuch"),
        (["convert", "plain", "edsr-baseline", "--scale", "5"], "edsr-baseline"),
        (["convert", "plain", "missing.pt"], "missing.pt"),
        (["convert", "plain", "fsrcnn"], "fsrcnn"),  # an unsupported teacher is named by its reference
        (["convert", "plain", "edsr-baseline", "--check", "--check-size", "0x4"], "--check-size"),
        (["convert", "student", "edsr-baseline", "--config", "n_resblocks=1", "n_feats=4"], "--calib"),
        (["convert", "student", "edsr-baseline", "--hr-size", "1080", "--calib", "x"], "--hr-size"),
    ],
)
def test_cli_bad_input(argv, where, capsys):
    with pytest.raises(MemsrInputError) as info:
        _run(argv, capsys)
    assert info.value.where == where


def test_cli_convert_student_and_train(data, tmp_path, capsys):
    tiny = ["--config", "n_resblocks=1", "n_feats=4"]
    code, out = _run(["convert", "student", "edsr-baseline", *tiny, "--theta", "0.1", "--calib", str(data["train"]),
                      "--n-calib", "4", "--calib-patch", "12", "--hr-size", "32x48", "--json",
                      "--out", str(tmp_path / "s.pt")], capsys)  # fmt: skip
    result = json.loads(out)
    assert code == 0 and len(result["widths"]) == 4 and result["widths"][-1] == 4 and result["theta"] == 0.1
    assert result["efficiency"]["lr_size"] == [16, 24] and result["efficiency"]["params"] == result["params"]
    assert len(result["layers"]) == 4 and {"teacher_width", "width", "residual", "bridge"} <= set(result["layers"][0])
    assert load_model_file(tmp_path / "s.pt")[1] is not None  # bridges saved

    common = ["--train-dir", str(data["train"]), "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
              "--patch-size", "8", "--no-progress", "--json"]  # fmt: skip
    code, out = _run(["train", "teacher", "edsr-baseline", *tiny, "--val-dir", str(data["val"]),
                      "--out", str(tmp_path / "t"), *common], capsys)  # fmt: skip
    summary = json.loads(out)
    assert code == 0 and summary["steps_run"] == 2 and "val_psnr" in summary["final"]
    teacher_file = tmp_path / "t" / "checkpoint.pt"
    code, out = _run(["convert", "plain", str(teacher_file), "--check", "--json"], capsys)
    assert code == 0 and json.loads(out)["ok"]
    for init, distill in (("random", []), ("memsr", ["--distill"])):
        out_dir = tmp_path / f"s-{init}"
        code, out = _run(["train", "student", str(teacher_file), "--init", init, *distill, "--fix-r", "3",
                          "--n-calib", "2", "--calib-patch", "8", "--out", str(out_dir), *common], capsys)  # fmt: skip
        summary = json.loads(out)
        assert code == 0 and summary["widths"] == [3, 3, 3, 4] and summary["distill"] == bool(distill)
        assert (summary["final"]["kd"] > 0) == bool(distill)
    with pytest.raises(MemsrInputError, match="drop --config"):
        _run(["convert", "plain", str(teacher_file), *tiny], capsys)


def test_teachers_from_any_model_reference(tmp_path, capsys):
    """FILE.py:factory and package.module:factory teachers (through memsr_bench.model.load_model) build
    the same seeded EDSR as the zoo name, read 0..255 like it, and convert."""
    (tmp_path / "my_edsr.py").write_text(
        "from zoo.edsr import EDSR\n\n\ndef build(scale=2, n_resblocks=1, n_feats=4):\n"
        "    return EDSR(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats)\n"
    )
    file_ref, tiny = f"{tmp_path / 'my_edsr.py'}:build", ["n_resblocks=1", "n_feats=4"]
    reference = load_teacher("edsr-baseline", 3, config=tiny, seed=7)
    x = torch.rand(1, 3, 9, 7) * 255
    for ref, config in ((file_ref, None), ("zoo.edsr:EDSR", tiny)):
        teacher = load_teacher(ref, 3, config=config, seed=7)
        assert teacher.scale == 3 and teacher.zoo_spec.input_range == 255
        with torch.no_grad():
            assert torch.equal(teacher(x), reference(x))
    code, out = _run(["convert", "plain", file_ref, "--scale", "3", "--check", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["widths"] == [4, 12, 8, 4]
    with pytest.raises(MemsrInputError) as info:
        load_teacher(file_ref, config=["depth=3"])
    assert info.value.where == "--config depth" and "n_resblocks" in info.value.problem


# ---------------------------------------------------------------------------------------------
# experiment scripts (experiments/ is not a package: import the scripts by path)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _experiment(name: str):
    """experiments/<name>.py as module ``name``, so that a script's ``import memsr_reproduce`` of its
    sibling finds the module loaded here."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_experiment_scripts_run_from_the_repository_root():
    for script in ("memsr_reproduce.py", "memsr_seed_repeat.py"):
        done = subprocess.run(
            [sys.executable, f"experiments/{script}", "--help"],
            cwd=EXPERIMENTS.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "--work" in done.stdout and "--data-root" in done.stdout, done.stderr


def test_reproduction_runs_end_to_end_on_tiny_data(data, tmp_path):
    rp = _experiment("memsr_reproduce")
    plan = rp.Plan(
        train_dir=str(data["train"]),
        data_root=str(data["root"] / "datasets"),
        out_dir=str(tmp_path / "report"),
        work_dir=str(tmp_path / "work"),
        n_resblocks=1,
        n_feats=4,
        theta=0.1,
        epochs=1,
        steps_per_epoch=1,
        batch_size=2,
        patch_size=8,
        n_calib=2,
        calib_patch=12,
        sets=("SetA",),
        val_set="SetA",
        sweep_thetas=(0.2, 0.1),
        smoke=True,
    )
    results = rp.run(plan, progress=False)
    names = [r["model"] for r in results["rows"]]
    assert names == ["bicubic", "teacher", "plain", *(name for name, *_ in rp.STUDENT_RUNS)]
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["plain"]["SetA_psnr"] == pytest.approx(rows["teacher"]["SetA_psnr"], abs=1e-3)
    same_arch = ("memsr-init", "memsr-init-l1", "memsr-init-kd", "student-random-l1", "student-random-kd")
    assert len({rows[n]["params"] for n in same_arch}) == 1
    assert rows["hybrid-init"]["params"] == rows["hybrid-init-kd"]["params"]
    assert [r["theta"] for r in results["init_sweep"]] == [0.2, 0.2, 0.2, 0.1, 0.1, 0.1]
    assert sorted(rp.ordering(results["rows"], "SetA")) == sorted(rp.PAPER_ORDER)
    for f in ("reproduction.md", "results.csv", "results.json", "training_curves.png"):
        assert (tmp_path / "report" / f).stat().st_size > 0
    assert "SMOKE" in (tmp_path / "report" / "reproduction.md").read_text()
    est = rp.estimate_full_run(results, rp.Plan(data_root=plan.data_root, sets=("SetA",), val_set="SetA"))
    assert est["total"] > 0 and set(rp.TRAINED) <= set(est)
    report_md = tmp_path / "report" / "reproduction.md"
    before = report_md.read_text()
    report_md.unlink()
    assert rp.main(["--rewrite-report", "--out", str(tmp_path / "report")]) == 0
    assert report_md.read_text() == before  # the report is a pure function of results.json
    assert rp.main(["--rewrite-report", "--out", str(tmp_path / "nothing")]) == 2
    assert "Regenerate: `python experiments/memsr_reproduce.py`" in before
    again = rp.run(plan, progress=False)  # resumes: every run is finished, nothing retrains
    assert all(v.get("steps", 0) == 0 for k, v in again["timings"].items() if k in rp.TRAINED)

    repeat = _experiment("memsr_seed_repeat").seed_repeat(plan, tmp_path / "work", seed=3)  # reuses the teacher
    assert repeat["widths"] == results["students"]["svd"]["widths"]
    assert set(repeat["runs"]) == {"memsr-init-l1", "memsr-init-kd"}
    assert all(math.isfinite(run["SetA_psnr"]) for run in repeat["runs"].values())
    assert (tmp_path / "work" / "memsr-init-kd-seed3" / "checkpoint.pt").is_file()
