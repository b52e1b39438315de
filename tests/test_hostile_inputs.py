"""Catalogue of hostile inputs through the CLI: each is one line on stderr, exit 2, and costs no result.

Every case runs ``memsr_bench.cli.main`` against a results store that already holds a row, and
asserts the exit code, that stderr is exactly one line (no traceback) naming the file or option, and
that the store's rows are unchanged. Where the input is legitimate (``zoo --json | head``) the right
result is asserted instead. Image-reading cases are in ``test_hostile_images.py``, store cases in
``test_hostile_store.py``; the fuzzing of checkpoints is at the end of this module.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import require_shared

from memsr_bench.cli import main
from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultsStore
from memsr_bench.results.store import ResultKey
from memsr_bench.torch_files import load_weights_only
from zoo.checkpoints import read_state_dict


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding one row, which no failure may change."""
    path = tmp_path / "store.sqlite"
    with ResultsStore(path) as s:
        key = ResultKey(
            kind="counts", model="sentinel", scale=2, checkpoint="any", data="1x3x8x8", conventions="c", device="cpu"
        )
        s.put(key, {"params": 1})
    return path


def _rows(path: Path) -> list:
    with ResultsStore(path) as s:
        return [(r.key, r.values) for r in s.rows()]


def fails_in_one_line(capsys, store: Path, argv: list[str], *expected: str) -> str:
    """``argv`` (with ``--store``, unless it is ``train``, which stores nothing) fails as the suite promises."""
    before = _rows(store)
    assert main(argv if argv[0] == "train" else [*argv, "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    assert _rows(store) == before
    return err.strip()


@pytest.fixture
def set5() -> Path:
    return require_shared("datasets", "Set5")


@pytest.fixture
def fsrcnn_x2_weights() -> Path:
    return require_shared("weights", "fsrcnn_x2.pth")


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["profile", "fsrcnn", "--threads", "0"], "--threads: must be at least 1, not 0"),
        (["profile", "fsrcnn", "--repeats", "0"], "--repeats: must be at least 1, not 0"),
        (["profile", "fsrcnn", "--warmup", "-1"], "--warmup: must be 0 or more, not -1"),
        (["profile", "fsrcnn", "--device", "gpu"], "--device: expected cpu, cuda or cuda:N, not 'gpu'"),
        (["profile", "fsrcnn", "--input", "0x5"], "--input"),
        (["profile", "fsrcnn", "--max-memory", "12XB"], "--max-memory"),
        (["profile", "fsrcnn", "--scale", "0"], "--scale"),
        (["profile", "nosuchmodel"], "nosuchmodel"),
        (["profile", "edsr", "--config", "n_resblocks=-1"], "--config n_resblocks: must be 0 or more, got -1"),
        (["profile", "edsr", "--config", "n_feats=abc"], "--config n_feats: expected an integer, got 'abc'"),
        (["profile", "edsr", "--config", "depth=3"], "--config depth: edsr has no parameter 'depth'"),
        (["profile", "edsr", "--config", "res_scale=nan"], "--config res_scale: expected a number"),
        (["table", "nosuchpreset"], "nosuchpreset"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_options(capsys, store, argv, expected):
    fails_in_one_line(capsys, store, argv, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_cuda(capsys, store, set5):
    argv = ["eval", "fsrcnn", "--scale", "2", "--data", str(set5), "--random-weights", "--device", "cuda"]
    fails_in_one_line(capsys, store, argv, "--device: CUDA is not available on this machine")


def test_negative_crop(capsys, store, set5):
    argv = ["eval", "bicubic", "--scale", "2", "--data", str(set5), "--crop", "-1"]
    fails_in_one_line(capsys, store, argv, "--crop: must be 0 or more, not -1")


# ----------------------------------------------------------------------------- weights


def test_nan_weights_are_refused(capsys, store, tmp_path, set5, fsrcnn_x2_weights):
    sd = dict(read_state_dict(fsrcnn_x2_weights))
    key = next(iter(sd))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    torch.save(sd, tmp_path / "diverged.pth")
    argv = ["eval", "fsrcnn", "--scale", "2", "--data", str(set5), "--weights", str(tmp_path / "diverged.pth")]
    fails_in_one_line(capsys, store, argv, "diverged.pth: 1 non-finite weights (NaN or inf)", repr(key))


def test_non_finite_outputs_are_refused(capsys, store, tmp_path, set5):
    model = tmp_path / "nan_net.py"
    model.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, scale=2):\n        super().__init__()\n        self.scale = scale\n"
        "        self.conv = nn.Conv2d(3, 3, 1)\n\n"
        "    def forward(self, x):\n"
        "        y = nn.functional.interpolate(self.conv(x), scale_factor=self.scale)\n"
        "        return y / torch.zeros_like(y)\n\n\n"
        "def build(scale=2):\n    return Net(scale)\n"
    )
    argv = ["eval", f"{model}:build", "--scale", "2", "--data", str(set5), "--random-weights"]
    fails_in_one_line(capsys, store, argv, "non-finite output (NaN or inf)")


def _evil_file(path: Path) -> Path:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"params": Evil()}, path)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("random", "not a PyTorch checkpoint: neither a zip archive nor a pickle"),
        ("empty", "empty file, not a PyTorch checkpoint"),
        ("truncated", "truncated or corrupt checkpoint"),
        ("evil", "holds pickled Python objects (posix.system) that safe loading refuses"),
        ("pickle-junk", "corrupt checkpoint: its pickle data cannot be read"),
    ],
)
def test_unreadable_checkpoints(capsys, store, tmp_path, set5, fsrcnn_x2_weights, content, expected):
    path = tmp_path / "weights.pth"
    if content == "random":
        path.write_bytes(random.Random(0).randbytes(3000))
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        full = fsrcnn_x2_weights.read_bytes()
        path.write_bytes(full[: len(full) // 2])
    elif content == "evil":
        _evil_file(path)
    else:
        path.write_bytes(b"\x80\x02" + random.Random(1).randbytes(200))
    argv = ["eval", "fsrcnn", "--scale", "2", "--data", str(set5), "--weights", str(path)]
    err = fails_in_one_line(capsys, store, argv, "weights.pth", expected)
    assert "weights_only=False" not in err


# ----------------------------------------------------------------------------- training


def _train(out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "teacher",
        "edsr-baseline",
        "--scale",
        "2",
        "--config",
        "n_resblocks=1",
        "n_feats=8",
        "--train-dir",
        str(require_shared("train", "T91")),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        *extra,
    ]


@pytest.mark.parametrize("val", ["missing", "empty"])
def test_val_dir_checked_before_training(capsys, store, tmp_path, val):
    folder = tmp_path / "val"
    if val == "empty":
        folder.mkdir()
    out = tmp_path / "run"
    fails_in_one_line(capsys, store, _train(out, "--val-dir", str(folder)), str(folder))
    assert not out.exists()  # no epoch trained, no empty --out left behind


@pytest.mark.parametrize("state", ["truncated", "evil", "random"])
def test_resume_from_a_bad_training_state(capsys, store, tmp_path, state):
    out = tmp_path / "run"
    out.mkdir()
    checkpoint = out / "checkpoint.pt"
    if state == "evil":
        _evil_file(checkpoint)
    elif state == "random":
        checkpoint.write_bytes(random.Random(2).randbytes(500))
    else:
        torch.save({"format": "x", "model": {"w": torch.zeros(100)}}, checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    err = fails_in_one_line(capsys, store, _train(out, "--resume"), "checkpoint.pt")
    assert "training state" in err and "weights_only=False" not in err


# ----------------------------------------------------------------------------- legitimate input, right result


def test_zoo_json_into_a_closed_pipe():
    reader = subprocess.run(
        f"{sys.executable} -m memsr_bench zoo --json | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert reader.stdout and "Traceback" not in reader.stderr and "BrokenPipe" not in reader.stderr


def test_eval_json_records_what_the_result_depends_on(capsys, store, set5, fsrcnn_x2_weights):
    argv = ["eval", "fsrcnn", "--scale", "2", "--data", str(set5), "--weights", str(fsrcnn_x2_weights), "--json"]
    assert main([*argv, "--store", str(store)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threads"] == torch.get_num_threads() and out["device"] == "cpu"
    assert len(out["weights_sha256"]) == 64 and out["fingerprint"]
    assert out["versions"]["torch"] == torch.__version__ and "memsr_bench" in out["versions"]


# ----------------------------------------------------------------------------- fuzzing the readers


def test_fuzzed_checkpoints_raise_only_the_suites_error(tmp_path, fsrcnn_x2_weights):
    """Random and mutated bytes through the public checkpoint readers: a MemsrInputError or a state dict."""
    rng = random.Random(0)
    original = fsrcnn_x2_weights.read_bytes()
    legacy = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)
    path = tmp_path / "fuzz.pth"
    outcomes = {"error": 0, "read": 0}
    for i in range(150):
        base = original if i % 3 else legacy
        data = bytearray(base)
        kind = i % 5
        if kind == 0:
            data = bytearray(rng.randbytes(rng.randint(0, 2000)))
        elif kind == 1:
            data = data[: rng.randint(0, len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        for reader in (read_state_dict, load_weights_only):
            try:
                reader(path)
                outcomes["read"] += 1
            except MemsrInputError as err:
                assert "\n" not in str(err) and "weights_only=False" not in str(err)
                outcomes["error"] += 1
    assert outcomes["error"] > 100
