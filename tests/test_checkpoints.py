"""zoo.checkpoints: checked, strict checkpoint loading and its one-line error messages.

Most cases use freshly built zoo models and files written to tmp_path (no ../shared needed); the
cases marked ``shared`` use the public checkpoints in ../shared/weights.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
import torch
from conftest import require_shared
from torch import nn

from memsr_bench.errors import CheckpointError, MemsrInputError
from zoo import checkpoints as ckpts
from zoo import imdn, rfdn, rlfn  # noqa: F401  (registers)
from zoo.checkpoints import load_checkpoint, read_state_dict, sha256_of
from zoo.registry import Checkpoint, ModelSpec, get_spec


def _build(name: str, scale: int) -> tuple[nn.Module, ModelSpec]:
    spec = get_spec(name)
    return spec.build(scale=scale), spec


def _error(model, spec, scale, path) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, spec, scale, path)
    err = info.value
    assert "\n" not in str(err), "error messages are one line"
    assert isinstance(err, MemsrInputError)
    return err


def _fresh_state(name: str, scale: int, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return get_spec(name).build(scale=scale).state_dict()


def _same(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = model.state_dict()
    return set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in own)


# ---------------------------------------------------------------------------------------------
# sha256


def test_sha256_of_streams_and_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 123)  # spans several read chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_sha256_of_is_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"a" * 1000)
    first = sha256_of(path)
    stat = path.stat()
    # same size and mtime: the cached digest is returned without reading the file again
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_of(path) == first
    # a new mtime invalidates the cache entry
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert sha256_of(path) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_sha256_of_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read file"):
        sha256_of(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------------
# user files: containers, prefixes, keys and shapes


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd},
        lambda sd: {"params": sd, "meta": {"iter": 5}},
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"module." + k: v for k, v in sd.items()},
        lambda sd: {"state_dict": {"module._orig_mod." + k: v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "params", "model", "module-prefix", "nested-prefixes"],
)
def test_own_file_in_common_containers_loads(tmp_path, wrap):
    state = _fresh_state("imdn-rtc", 2, seed=1)
    path = tmp_path / "my_weights.pth"
    torch.save(wrap(state), path)
    model, spec = _build("imdn-rtc", 2)
    load_checkpoint(model, spec, 2, path)
    assert _same(model, state)


def test_params_ema_is_preferred_over_params(tmp_path):
    ema, raw = _fresh_state("imdn-rtc", 2, seed=1), _fresh_state("imdn-rtc", 2, seed=2)
    path = tmp_path / "basicsr_net_g.pth"
    torch.save({"params": raw, "params_ema": ema}, path)
    model, spec = _build("imdn-rtc", 2)
    load_checkpoint(model, spec, 2, path)
    assert _same(model, ema)


def test_read_state_dict_returns_clean_tensors(tmp_path):
    state = _fresh_state("imdn-rtc", 2)
    path = tmp_path / "x.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    assert list(read_state_dict(path)) == list(state)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = _fresh_state("imdn", 2)
    del state["LR_conv.bias"], state["IMDB3.c2.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    model, spec = _build("imdn", 2)
    msg = str(_error(model, spec, 2, path))
    assert "keys do not match imdn x2" in msg
    assert "2 missing (IMDB3.c2.weight, LR_conv.bias)" in msg
    assert "1 unexpected (extra.weight)" in msg


def test_many_missing_keys_are_abbreviated(tmp_path):
    path = tmp_path / "other_arch.pth"
    torch.save(_fresh_state("e-rfdn", 4), path)
    model, spec = _build("imdn", 4)
    msg = str(_error(model, spec, 4, path))
    assert "84 missing (" in msg and "more)" in msg
    assert "unexpected (B1." in msg


def test_wrong_scale_in_the_tail_is_named(tmp_path):
    path = tmp_path / "my_imdn.pth"
    torch.save(_fresh_state("imdn", 3), path)
    model, spec = _build("imdn", 2)
    msg = str(_error(model, spec, 2, path))
    assert "'upsampler.0.weight' is [27, 64, 3, 3] in the checkpoint but [12, 64, 3, 3]" in msg
    assert "probably for x3, not x2 (wrong scale)" in msg


def test_shape_mismatch_in_the_body_names_the_tensor(tmp_path):
    state = _fresh_state("rlfn-s", 4)
    state["block_2.c2_r.weight"] = torch.zeros(48, 48, 1, 1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    model, spec = _build("rlfn-s", 4)
    msg = str(_error(model, spec, 4, path))
    assert "tensor 'block_2.c2_r.weight' is [48, 48, 1, 1] in the checkpoint but [48, 48, 3, 3]" in msg
    assert "wrong scale" not in msg


def test_other_config_of_the_same_family_is_a_shape_mismatch(tmp_path):
    path = tmp_path / "rlfn52.pth"
    torch.save(_fresh_state("rlfn", 4), path)
    model, spec = _build("rlfn-s", 4)
    msg = str(_error(model, spec, 4, path))
    assert "shape mismatch for rlfn-s x4: tensor 'conv_1.weight' is [52, 3, 3, 3]" in msg


def test_truncated_file(tmp_path):
    full = tmp_path / "full.pth"
    torch.save(_fresh_state("imdn-rtc", 2), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    model, spec = _build("imdn-rtc", 2)
    msg = str(_error(model, spec, 2, cut))
    assert "truncated or corrupt checkpoint" in msg and "weights_only=False" not in msg


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty file, not a PyTorch checkpoint"), (b"hello, not a checkpoint", "neither a zip archive nor a pickle")],
    ids=["empty", "text"],
)
def test_not_a_pytorch_file(tmp_path, content, expected):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    model, spec = _build("imdn-rtc", 2)
    assert expected in str(_error(model, spec, 2, path))


class _Pickled:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save({"model": _Pickled()}, path)
    model, spec = _build("imdn-rtc", 2)
    msg = str(_error(model, spec, 2, path))
    assert "holds pickled Python objects (test_checkpoints._Pickled) that safe loading refuses" in msg
    assert "weights_only=False" not in msg


def test_no_state_dict_inside(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    model, spec = _build("imdn-rtc", 2)
    msg = str(_error(model, spec, 2, path))
    assert "no state dict of tensors found" in msg and "'epoch'" in msg


def test_missing_path(tmp_path):
    model, spec = _build("imdn", 2)
    err = _error(model, spec, 2, tmp_path / "absent.pth")
    assert "no such file or directory" in str(err)
    assert err.where == str(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------------
# known public file names (no ../shared needed: the name alone decides)


@pytest.mark.shared
def test_known_file_of_another_scale_is_recognised_by_content(tmp_path):
    path = tmp_path / "mine.pth"  # a renamed public file: its name says nothing
    path.write_bytes(require_shared("weights", "IMDN_x3.pth").read_bytes())
    model, spec = _build("imdn", 2)
    msg = str(_error(model, spec, 2, path))
    assert "this file is IMDN_x3.pth, the public checkpoint of imdn x3" in msg
    assert "not of imdn x2; use --scale 3, or IMDN_x2.pth for x2" in msg


@pytest.mark.shared
def test_known_file_of_another_model_is_recognised_by_content(tmp_path):
    path = tmp_path / "imdn_weights.pth"
    path.write_bytes(require_shared("weights", "RFDN_AIM.pth").read_bytes())
    model, spec = _build("imdn", 4)
    msg = str(_error(model, spec, 4, path))
    assert "the public checkpoint of e-rfdn x4" in msg and "not of imdn x4" in msg
    assert "use model 'e-rfdn'" in msg and "IMDN_x4.pth for imdn x4" in msg


@pytest.mark.shared
def test_ntire_rlfn_file_given_to_the_paper_rlfn_s():
    model, spec = _build("rlfn-s", 4)
    msg = str(_error(model, spec, 4, require_shared("weights", "team04_rlfn.pth")))
    assert "checkpoint of rlfn-ntire x4" in msg and "rlfn-s x4 has no released checkpoint" in msg


@pytest.mark.shared
def test_renamed_public_file_loads_as_itself(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(require_shared("weights", "IMDN_x4.pth").read_bytes())
    model, spec = _build("imdn", 4)
    loaded = load_checkpoint(model, spec, 4, path)
    assert loaded.known is not None and loaded.known.filename == "IMDN_x4.pth"
    assert loaded.sha256 == spec.checkpoint_for(4).sha256


def test_own_file_named_like_a_public_file_of_another_model_loads(tmp_path):
    """A user's mynet_x4.pth, or any name that a registered file of another model has, is the user's own."""
    state = _fresh_state("fsrcnn", 4)
    path = tmp_path / "IMDN_x4.pth"
    torch.save(state, path)
    model, spec = _build("fsrcnn", 4)
    loaded = load_checkpoint(model, spec, 4, path)
    assert loaded.known is None and loaded.sha256 == sha256_of(path) and _same(model, state)


def test_known_file_with_wrong_bytes_fails_the_checksum(tmp_path):
    path = tmp_path / "IMDN_x2.pth"
    torch.save(_fresh_state("imdn", 2), path)  # this model's public name, other bytes
    model, spec = _build("imdn", 2)
    msg = str(_error(model, spec, 2, path))
    expected = get_spec("imdn").checkpoint_for(2).sha256
    assert f"named as the public imdn x2 checkpoint but its sha256 {sha256_of(path)[:12]}" in msg
    assert f"is not {expected[:12]}" in msg and "re-download / file corrupted" in msg


# ---------------------------------------------------------------------------------------------
# weights directories


def _toy_spec(tmp_path) -> tuple[nn.Module, ModelSpec]:
    spec = ModelSpec(
        name="toy",
        build=lambda scale=2: nn.Sequential(nn.Conv2d(3, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale)),
        scales=(2, 4),
        input_range=1.0,
        checkpoints=(Checkpoint(filename="toy_x2.pth", sha256="0" * 64, scales=(2,), source="nowhere @0 : x"),),
    )
    return spec.build(scale=4), spec


def test_directory_without_a_checkpoint_for_that_scale(tmp_path):
    model, spec = _toy_spec(tmp_path)
    msg = str(_error(model, spec, 4, tmp_path))
    assert "model toy has no known checkpoint for x4 (known: toy_x2.pth (x2))" in msg
    assert "pass a checkpoint file" in msg


def test_directory_for_a_model_without_released_weights(tmp_path):
    model, spec = _build("rfdn", 2)
    assert "model rfdn has no known public checkpoint (none was released)" in str(_error(model, spec, 2, tmp_path))


def test_directory_missing_the_file(tmp_path):
    model, spec = _build("imdn", 3)
    msg = str(_error(model, spec, 3, tmp_path))
    assert "IMDN_x3.pth (the imdn x3 checkpoint, from Zheng222/IMDN" in msg and "is missing" in msg


def test_directory_with_a_corrupted_known_file(tmp_path):
    model, spec = _toy_spec(tmp_path)
    spec2 = ModelSpec(**{**spec.__dict__, "scales": (2,)})
    (tmp_path / "toy_x2.pth").write_bytes(b"x")
    err = _error(spec2.build(scale=2), spec2, 2, tmp_path)
    assert "checksum mismatch (expected 0000" in str(err) and err.where == str(tmp_path / "toy_x2.pth")


def test_directory_loads_the_known_file(tmp_path):
    build = lambda scale=2: nn.Conv2d(3, 3, 1)  # noqa: E731
    state = build().state_dict()
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "tiny.pth")
    spec = ModelSpec(
        name="tiny",
        build=build,
        scales=(2,),
        input_range=1.0,
        checkpoints=(
            Checkpoint(filename="tiny.pth", sha256=sha256_of(tmp_path / "tiny.pth"), scales=(2,), source="s @0 : p"),
        ),
    )
    model = build()
    load_checkpoint(model, spec, 2, tmp_path)
    assert _same(model, state)


# ---------------------------------------------------------------------------------------------
# the public files (../shared/weights)


@pytest.mark.shared
def test_public_directory_load_and_sha_cache(monkeypatch):
    weights = require_shared("weights")
    model, spec = _build("imdn", 2)
    load_checkpoint(model, spec, 2, weights)
    # a second load reuses the cached digest: hashing is not repeated
    monkeypatch.setattr(ckpts.hashlib, "sha256", lambda *a: pytest.fail("sha256 recomputed"))
    load_checkpoint(model, spec, 2, weights / "IMDN_x2.pth")


@pytest.mark.shared
def test_public_file_with_a_flipped_byte(tmp_path):
    src = require_shared("weights", "RFDN_AIM.pth")
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    path = tmp_path / "RFDN_AIM.pth"
    path.write_bytes(bytes(data))
    model, spec = _build("e-rfdn", 4)
    msg = str(_error(model, spec, 4, path))
    assert "named as the public e-rfdn x4 checkpoint" in msg and "is not 11af8ec8" in msg
    assert "re-download / file corrupted" in msg


@pytest.mark.shared
def test_public_file_truncated_under_an_unknown_name(tmp_path):
    src = require_shared("weights", "team04_rlfn.pth")
    path = tmp_path / "rlfn_copy.pth"
    path.write_bytes(src.read_bytes()[:100_000])
    model, spec = _build("rlfn-ntire", 4)
    assert "truncated or corrupt checkpoint" in str(_error(model, spec, 4, path))


@pytest.mark.shared
def test_key_map_is_applied_to_the_known_file_and_to_a_renamed_copy(tmp_path):
    src = require_shared("weights", "team04_rlfn.pth")
    raw = torch.load(src, map_location="cpu", weights_only=True)
    for path in (src, tmp_path / "renamed.pth"):
        if path != src:
            shutil.copy(src, path)
        model, spec = _build("rlfn-ntire", 4)
        load_checkpoint(model, spec, 4, path)
        assert torch.equal(model.conv_1.weight, raw["fea_conv.weight"])
        assert torch.equal(model.block_4.esa.conv4.bias, raw["B4.esa.conv4.bias"])


@pytest.mark.shared
def test_public_file_of_the_wrong_scale_by_its_real_name():
    model, spec = _build("imdn", 4)
    msg = str(_error(model, spec, 4, require_shared("weights", "IMDN_x2.pth")))
    assert "public checkpoint of imdn x2" in msg and "not of imdn x4; use --scale 2, or IMDN_x4.pth for x4" in msg


@pytest.mark.shared
def test_zoo_create_loads_through_the_checker():
    import zoo

    model = zoo.create("imdn-ntire2022", scale=4, checkpoint=require_shared("weights"))
    assert not model.training and model.scale == 4 and model.zoo_spec.name == "imdn-ntire2022"
    with pytest.raises(CheckpointError, match="checkpoint of imdn-ntire2022 x4"):
        zoo.create("imdn", scale=4, checkpoint=require_shared("weights", "imdn_baseline.pth"))
