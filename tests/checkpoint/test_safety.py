"""Loading never runs code: allow-listed `_target_`s, clean errors for bad files, tensor digests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

from xgen.errors import ConfigError
from xgen.models import VAE, load_model
from xgen.models.base import record_class
from xgen.checkpoint.safety import check_config_targets, tensor_digest
from xgen.registry import USER_TARGETS, allow_target

SHAPE = (1, 8, 8)
NETS = dict(encoder={"_target_": "xgen.nets.vae.MLPEncoder", "hidden": [16]},
            decoder={"_target_": "xgen.nets.vae.MLPDecoder", "hidden": [16]})


def _vae() -> VAE:
    torch.manual_seed(0)
    return VAE(image_shape=SHAPE, latent_dim=2, **copy.deepcopy(NETS))


def _ckpt(model: VAE, hparams: dict | None = None) -> dict:
    """A checkpoint of plain containers as xgen writes it (class + digest recorded by the model's hook)."""
    ckpt = {"state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "hyper_parameters": dict(hparams if hparams is not None else model.hparams),
            "pytorch-lightning_version": "2.6.0", "epoch": 0, "global_step": 0}
    record_class(model, ckpt)
    return ckpt


def _evil_hparams(model: VAE, marker: Path) -> dict[str, dict]:
    """Saved network configs that would create ``marker`` (a directory) if anything instantiated them."""
    h = dict(model.hparams)
    nested = copy.deepcopy(NETS["encoder"])
    nested["hidden"] = {"_target_": "os.makedirs", "name": str(marker)}  # nested: Hydra builds it first
    return {
        "nested": {**h, "encoder": nested},
        "args": {**h, "encoder": {"_target_": "xgen.nets.vae.MLPEncoder",
                                  "_args_": [{"_target_": "os.makedirs", "name": str(marker)}]}},
        "os.system": {**h, "encoder": {"_target_": "os.system", "_args_": [f"mkdir {marker}"]}},
        "builtins.exec": {**h, "encoder": {"_target_": "builtins.exec",
                                           "_args_": [f"import os; os.makedirs({str(marker)!r})"]}},
        "partial": {**h, "encoder": {"_target_": "os.makedirs", "_partial_": True, "name": str(marker)}},
        "reach-through": {**h, "encoder": {"_target_": "xgen.nets.vae.torch.save", "obj": 1,
                                           "f": str(marker)}},
        "interpolation": {**h, "encoder": {**NETS["encoder"],
                                           "hidden": "${oc.decode:'{_target_: os.makedirs, name: x}'}"}},
    }


CASES = ["nested", "args", "os.system", "builtins.exec", "partial", "reach-through", "interpolation"]


@pytest.mark.parametrize("case", CASES)
def test_load_model_and_load_from_checkpoint_refuse_foreign_targets(tmp_path, case):
    model = _vae()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(_ckpt(model, _evil_hparams(model, marker)[case]), path)
    with pytest.raises(ConfigError) as e:
        load_model(path)
    assert str(path) in str(e.value) and "encoder" in str(e.value)
    with pytest.raises(ConfigError) as e2:
        VAE.load_from_checkpoint(str(path))
    assert str(path) in str(e2.value)
    assert not marker.exists(), "a target named in the checkpoint was instantiated"


def test_xgen_eval_refuses_checkpoint_file_and_run_dir(tmp_path, capsys):
    """`xgen eval <file>` and `xgen eval <dir>`: one error line, exit 2, nothing ran."""
    from xgen.runtime.cli.eval import main

    model = _vae()
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save(_ckpt(model, _evil_hparams(model, marker)["nested"]), ckpt)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"_target_": "xgen.data.DigitsDataModule"}}))
    for arg in (str(ckpt), str(run)):
        assert main([arg, "--num-samples", "10", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("xgen eval: error:") and str(ckpt) in err[0], err
        assert "os.makedirs" in err[0]
    assert not marker.exists()


@pytest.mark.parametrize("data", [
    {"_target_": "os.makedirs", "name": "MARKER"},
    {"_target_": "xgen.data.DigitsDataModule", "root": {"_target_": "os.makedirs", "name": "MARKER"}},
    {"_target_": "xgen.data.DigitsDataModule", "_args_": [{"_target_": "os.makedirs", "name": "MARKER"}]},
    {"_target_": "xgen.data.base.torch.save", "obj": 1, "f": "MARKER"},
])
def test_eval_run_dir_refuses_config_yaml_data_target(tmp_path, capsys, data):
    from xgen.runtime.cli.eval import main

    marker = tmp_path / "pwned"
    data = yaml.safe_load(yaml.safe_dump(data).replace("MARKER", str(marker)))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(_ckpt(_vae()), run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    assert main([str(run), "--num-samples", "10", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / "config.yaml") in err[0] and "data" in err[0], err
    assert not marker.exists()


def test_good_checkpoint_loads_and_registered_user_target_is_allowed(tmp_path):
    model = _vae()
    path = tmp_path / "ok.ckpt"
    torch.save(_ckpt(model), path)
    loaded = load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert isinstance(VAE.load_from_checkpoint(str(path)), VAE)
    # a user's own net: refused with a hint how to register, accepted once registered
    spec = {"_target_": "torch.nn.Identity"}
    with pytest.raises(ConfigError, match=r"allow_target\('torch.nn.Identity'\)"):
        check_config_targets(spec, "cfg.yaml", "net", "model.encoder")
    allow_target("torch.nn.Identity")
    try:
        check_config_targets(spec, "cfg.yaml", "net", "model.encoder")
    finally:
        USER_TARGETS["net"].discard("torch.nn.Identity")


def test_command_line_net_target_refused_with_hint():
    with pytest.raises(ConfigError, match=r"model\.encoder\._target_.*xgen\.registry\.allow_target"):
        VAE(image_shape=SHAPE, latent_dim=2, encoder={"_target_": "torch.nn.Identity"})


def _tensor_offset(raw: bytes, t: torch.Tensor) -> int:
    needle = t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()[:64]
    i = raw.find(needle)
    assert i >= 0
    return i


def test_flipped_byte_in_a_weight_is_reported_not_loaded(tmp_path):
    model = _vae()
    path = tmp_path / "ok.ckpt"
    torch.save(_ckpt(model), path)
    raw = bytearray(path.read_bytes())
    i = _tensor_offset(bytes(raw), model.encoder.state_dict()[next(iter(model.encoder.state_dict()))]) + 10
    raw[i] ^= 0x01
    bad = tmp_path / "flipped.ckpt"
    bad.write_bytes(bytes(raw))
    # the flipped file still unpickles: only the digest can tell
    sd = torch.load(bad, weights_only=True)["state_dict"]
    assert tensor_digest(sd) != tensor_digest(model.state_dict())
    for load in (lambda: load_model(bad), lambda: VAE.load_from_checkpoint(str(bad))):
        with pytest.raises(ConfigError, match="digest"):
            load()


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "list", "no_state_dict", "bad_hparams"])
def test_corrupt_or_foreign_files_give_one_clean_error(tmp_path, kind, capsys):
    from xgen.runtime.cli.eval import main

    path = tmp_path / "x.ckpt"
    good = tmp_path / "good.ckpt"
    torch.save(_ckpt(_vae()), good)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "no_state_dict":
        torch.save({"hyper_parameters": {}}, path)
    else:
        ck = _ckpt(_vae())
        ck["hyper_parameters"]["latent_dim"] = "many"
        torch.save(ck, path)
    with pytest.raises(ConfigError, match=str(path).replace(".", r"\.")):
        load_model(path)
    with pytest.raises(ConfigError):
        VAE.load_from_checkpoint(str(path))
    assert main([str(path), "--num-samples", "10", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xgen eval: error:"), err


def test_corrupt_config_yaml_is_one_clean_error(tmp_path, capsys):
    from xgen.runtime.cli.eval import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(_ckpt(_vae()), run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text("data: [unclosed\n  - {")
    assert main([str(run), "--num-samples", "10", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml" in err[0], err


def _int8_checkpoint(tmp_path, scale_override=None):
    """A real InfoGAN (the paper's nets) stored the way scripts/train_explain_models.py ships it."""
    from xgen.models import InfoGAN
    from xgen.checkpoint.safety import INT8_KEY, add_digest, quantize_int8

    torch.manual_seed(0)
    m = InfoGAN(image_shape=(1, 28, 28)).eval()
    state, scales = quantize_int8(m.state_dict())
    if scale_override is not None:
        scales = scale_override(scales)
    from xgen.registry import class_path

    rec = {"xgen_class": class_path(m), "hyper_parameters": dict(m.hparams), "state_dict": state,
           INT8_KEY: scales}
    add_digest(rec)
    path = tmp_path / "q.pt"
    torch.save(rec, path)
    return m, state, scales, path


def test_int8_weights_round_trip_within_half_a_step(tmp_path):
    """Shipped InfoGAN weights: int8 per row; every weight within scale/2 of the original, the two big
    matrices quantised (≥ 4x smaller than float32), and the loaded model's samples match the original's."""
    m, state, scales, path = _int8_checkpoint(tmp_path)
    assert len(scales) >= 2 and all(state[k].dtype == torch.int8 for k in scales)
    loaded = load_model(path)
    for k, s in scales.items():
        err = (loaded.state_dict()[k] - m.state_dict()[k]).abs().reshape(s.shape[0], -1)
        assert bool((err <= s[:, None] / 2 + 1e-7).all()), k
        assert err.max() > 0  # it really was quantised
    z = m.sample_latent(16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = m.generate(z), loaded.generate(z)
    assert (a - b).abs().mean() < 0.02 and (a - b).abs().max() < 0.3


def test_int8_checkpoint_with_bad_scales_is_refused(tmp_path):
    from xgen.checkpoint.safety import INT8_KEY

    def negative(scales):
        k = next(iter(scales))
        return {**scales, k: -scales[k]}

    *_, path = _int8_checkpoint(tmp_path, negative)
    with pytest.raises(ConfigError, match="finite positive"):
        load_model(path)
    # scales changed after the digest was recorded: the digest covers them
    _, _, scales, path = _int8_checkpoint(tmp_path)
    rec = torch.load(path, weights_only=True)
    k = next(iter(scales))
    rec[INT8_KEY][k] = rec[INT8_KEY][k] * 2
    torch.save(rec, path)
    with pytest.raises(ConfigError, match="digest"):
        load_model(path)
    # a scale entry for a weight that is not int8
    rec = torch.load(path, weights_only=True)
    rec[INT8_KEY] = {"generator.no_such.weight": torch.ones(3)}
    del rec["xgen_digest"]
    torch.save(rec, path)
    with pytest.raises(ConfigError, match="not an int8 weight"):
        load_model(path)
