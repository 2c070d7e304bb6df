"""Speed work (issue 14, docs/speed.md): what a user sees is unchanged, and every speed option trains the
same parameters as the eager step.

* the logged keys (metrics.csv columns, progress-bar keys) of every model family are the ones recorded on
  main before the change (per-step ``self.log`` calls);
* the device-side sums (:class:`xgen.models.base.TrainLog`) give the exact epoch mean and, per written
  row, the mean over the steps since the previous row;
* ``torch.compile`` and ``channels_last`` give the same parameters and losses as eager after a few steps
  of the one step function (:func:`xgen.models.step.adversarial_step`); CUDA-graph capture is refused
  with a one-line reason and training stays eager where it is impossible (here: no CUDA);
* the throttled progress bar redraws on time, not on every batch.
"""

from __future__ import annotations

import csv
import math
import warnings

import lightning as L
import pytest
import torch

from xgen.errors import ConfigError
from xgen.models import GAN, VAE, DCGAN
from xgen.models.step import adversarial_step, player_update
from xgen.nets.gan import ConvDiscriminator, ConvGenerator, MLPDiscriminator, MLPGenerator
from xgen.nets.vae import MLPDecoder, MLPEncoder

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# Recorded on main (b59874c, per-step self.log) with the run of `_logged_keys` below: data=digits, 6
# batches, trainer.log_every_n_steps=2, default callbacks (progress bar on), CSV logger.
KEYS_BEFORE = {
    "vae": {"csv": ["epoch", "step", "test/kl", "test/loss", "test/nelbo", "test/rec", "train/kl_epoch", "train/kl_step",
                    "train/loss_epoch", "train/loss_step", "train/nelbo_epoch", "train/nelbo_step", "train/rec_epoch",
                    "train/rec_step", "val/kl", "val/loss", "val/nelbo", "val/rec"],
            "bar": ["train/nelbo_epoch", "train/nelbo_step", "val/nelbo"]},
    "info_vae": {"csv": ["epoch", "step", "test/kl", "test/loss", "test/mmd", "test/nelbo", "test/rec", "train/kl_epoch",
                         "train/kl_step", "train/loss_epoch", "train/loss_step", "train/mmd_epoch", "train/mmd_step",
                         "train/nelbo_epoch", "train/nelbo_step", "train/rec_epoch", "train/rec_step", "val/kl", "val/loss",
                         "val/mmd", "val/nelbo", "val/rec"],
                 "bar": ["train/nelbo_epoch", "train/nelbo_step", "val/nelbo"]},
    "gan": {"csv": ["epoch", "step", "test/loss_d_real", "train/loss_d_epoch", "train/loss_d_step", "train/loss_g_epoch",
                    "train/loss_g_step", "val/loss_d_real"], "bar": []},
    "infogan": {"csv": ["epoch", "step", "test/cat_acc", "test/loss_d_real", "train/loss_d_epoch", "train/loss_d_step",
                        "train/loss_g_epoch", "train/loss_g_step", "train/loss_info_epoch", "train/loss_info_step",
                        "train/mi_cat_epoch", "train/mi_cat_step", "train/mi_cont_epoch", "train/mi_cont_step", "val/cat_acc",
                        "val/loss_d_real"], "bar": []},
    "kgan": {"csv": ["epoch", "partition/size_0", "partition/size_1", "step", "test/loss_d_real", "train/gp_0_epoch",
                     "train/gp_0_step", "train/gp_1_epoch", "train/gp_1_step", "train/gp_epoch", "train/gp_step",
                     "train/loss_d_0_epoch", "train/loss_d_0_step", "train/loss_d_1_epoch", "train/loss_d_1_step",
                     "train/loss_d_epoch", "train/loss_d_step", "train/loss_g_0_epoch", "train/loss_g_0_step",
                     "train/loss_g_1_epoch", "train/loss_g_1_step", "train/loss_g_epoch", "train/loss_g_step",
                     "val/loss_d_real"], "bar": []},
}


SMALL = {"vae": ["model/net=mlp"], "info_vae": ["model/net=mlp"],
         "infogan": ["model.generator.channels=[16,8]", "model.generator.hidden=64", "model.discriminator.channels=[8,16]",
                     "model.discriminator.hidden=64", "model.q_head.hidden=16"],
         "kgan": ["model.k=2", "model.generator.channels=[16,8,4]", "model.discriminator.channels=[8,16]",
                  "model.partition.kmeans_iters=2", "model.partition.sinkhorn_iters=20"]}


class _BarKeys(L.Callback):
    """Every key the progress bar was given during training."""

    def __init__(self):
        self.keys: set[str] = set()

    def _grab(self, trainer, pl_module):
        if trainer.progress_bar_callback is not None:
            self.keys |= set(trainer.progress_bar_callback.get_metrics(trainer, pl_module))

    def on_train_batch_end(self, trainer, pl_module, *args):
        self._grab(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        self._grab(trainer, pl_module)


def _logged_keys(compose, monkeypatch, tmp_path, model: str) -> dict[str, list[str]]:
    from xgen.runtime import train as T

    ov = [f"model={model}", "data=digits", "data.repeat=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=6",
          "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "trainer.log_every_n_steps=2",
          "trainer.accelerator=cpu", "trainer.enable_model_summary=false"]
    ov += SMALL.get(model, [])  # small nets: the keys come from the logging code, not the nets' size
    cfg = compose(ov)
    bar = _BarKeys()
    build = T.build

    def with_recorder(cfg, run_dir):
        dm, m, trainer, ckpt = build(cfg, run_dir)
        trainer.callbacks.append(bar)
        return dm, m, trainer, ckpt

    monkeypatch.setattr(T, "build", with_recorder)
    T.train(cfg)
    with open(tmp_path / "run" / "metrics.csv") as f:
        header = next(csv.reader(f))
    return {"csv": sorted(header), "bar": sorted(bar.keys)}


@pytest.mark.parametrize("model", sorted(KEYS_BEFORE))
def test_logged_keys_are_those_of_per_step_logging(compose, monkeypatch, tmp_path, model):
    assert _logged_keys(compose, monkeypatch, tmp_path, model) == KEYS_BEFORE[model]


# ----------------------------------------------------------------------------- TrainLog values
class _Recorder(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


class _Rows(L.pytorch.loggers.Logger):
    """Keeps what Lightning hands the loggers."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    name, version = "rows", "0"

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_step_rows_are_interval_means_and_the_epoch_value_the_epoch_mean():
    """12 batches, a row every 5: rows at batches 5 and 10 hold the means of batches 1-5 and 6-10; the
    epoch value is the mean of all 12 (every batch has 64 images)."""
    from xgen.data import DigitsDataModule

    torch.manual_seed(0)
    model = VAE(image_shape=(1, 28, 28), latent_dim=4, encoder=MLPEncoder((1, 28, 28), 4, hidden=[32]),
                decoder=MLPDecoder((1, 28, 28), 4, hidden=[32]))
    rec, rows = _Recorder(), _Rows()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=12, limit_val_batches=0, accelerator="cpu", logger=rows,
                        log_every_n_steps=5, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[rec])
    trainer.fit(model, datamodule=DigitsDataModule(size=28, batch_size=64, repeat=1))
    step_rows = [m["train/loss_step"] for _, m in rows.rows if "train/loss_step" in m]
    epoch_rows = [m["train/loss_epoch"] for _, m in rows.rows if "train/loss_epoch" in m]
    assert len(rec.losses) == 12 and len(step_rows) == 2 and len(epoch_rows) == 1
    assert step_rows[0] == pytest.approx(sum(rec.losses[:5]) / 5, rel=1e-6)
    assert step_rows[1] == pytest.approx(sum(rec.losses[5:10]) / 5, rel=1e-6)
    assert epoch_rows[0] == pytest.approx(sum(rec.losses) / 12, rel=1e-6)
    # the progress bar / callbacks see the same numbers
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(sum(rec.losses) / 12, rel=1e-6)


# ----------------------------------------------------------------------------- speed options = eager
def _gan(conv: bool, seed: int = 0) -> GAN:
    torch.manual_seed(seed)
    lat = {"noise": 8, "categorical": [], "continuous": 0}
    if conv:
        return DCGAN(image_shape=(1, 16, 16), latent=lat, generator=ConvGenerator((1, 16, 16), 8, channels=[16, 8]),
                     discriminator=ConvDiscriminator((1, 16, 16), channels=[8, 16]))
    return GAN(image_shape=(1, 8, 8), latent=lat, generator=MLPGenerator((1, 8, 8), 8, hidden=[32, 32]),
               discriminator=MLPDiscriminator((1, 8, 8), hidden=[32, 32]))


def _train_steps(model: GAN, steps: int = 3, batch: int = 16) -> tuple[list[torch.Tensor], dict]:
    """``steps`` steps of the library's step function on fixed batches, with a fixed noise stream."""
    opt_g, opt_d = model.configure_optimizers()
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(steps, batch, *model.image_shape, generator=g) * 2 - 1)
    torch.manual_seed(1)
    for i in range(steps):
        xi = x[i]
        logs = adversarial_step(lambda: model.discriminator_terms(xi), lambda: model.generator_terms(batch, xi),
                                opt_d, opt_g, model._d_params, model._g_params)
    return [p.detach().clone() for p in model.parameters()], logs


def _assert_same(a, b, atol):
    (pa, la), (pb, lb) = a, b
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4)
    assert la.keys() == lb.keys()
    for k in la:
        torch.testing.assert_close(la[k], lb[k], atol=atol, rtol=1e-4)


def test_compiled_step_gives_the_eager_parameters():
    """The networks compiled by speed.compile (nn.Module.compile; the aot_eager backend here: dynamo's
    graph capture and AOTAutograd's joint forward/backward without the C++ build) train exactly as eager."""
    from xgen.runtime import speed

    eager = _train_steps(_gan(conv=False))
    model = _gan(conv=False)
    for net in speed.networks(model):
        net.compile(backend="aot_eager")
    compiled = _train_steps(model)
    _assert_same(eager, compiled, atol=1e-6)
    assert set(model.state_dict()) == set(_gan(conv=False).state_dict())  # checkpoints keep their keys


@pytest.mark.slow
def test_inductor_compiled_step_gives_the_eager_parameters():
    """speed.compile=true as a user gets it (inductor, C++ kernels built on this CPU: ~30 s)."""
    from xgen.runtime import speed

    eager = _train_steps(_gan(conv=False))
    model = speed.apply(_gan(conv=False), speed.options({"compile": True}))
    _assert_same(eager, _train_steps(model), atol=1e-5)


def test_channels_last_gives_the_eager_parameters():
    from xgen.runtime import speed

    eager = _train_steps(_gan(conv=True))
    model = speed.apply(_gan(conv=True), speed.options({"channels_last": True}))
    assert model.discriminator.body[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    _assert_same(eager, _train_steps(model), atol=1e-5)


def test_vae_step_is_player_update_of_its_loss():
    """The VAE's optimiser step in the benchmark is player_update on terms()['loss']: after 3 steps the
    parameters equal those of Lightning's automatic optimisation on the same batches."""
    from xgen.data import DigitsDataModule

    def model():
        torch.manual_seed(0)
        return VAE(image_shape=(1, 28, 28), latent_dim=4, encoder=MLPEncoder((1, 28, 28), 4, hidden=[32]),
                   decoder=MLPDecoder((1, 28, 28), 4, hidden=[32]))

    dm = DigitsDataModule(size=28, batch_size=64, repeat=1, seed=0)
    a = model()
    torch.manual_seed(3)
    L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, accelerator="cpu", logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(a, datamodule=dm)
    b = model()
    b.trainer = None
    opt = b.configure_optimizers()
    dm2 = DigitsDataModule(size=28, batch_size=64, repeat=1, seed=0)
    dm2.setup("fit")
    loader = dm2.train_dataloader()
    loader.epoch_fn = lambda: 0
    torch.manual_seed(3)
    for i, (x, _) in zip(range(3), loader):
        player_update(b.terms(x)["loss"], opt, list(b.parameters()))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert max(float((p - q).abs().max()) for p, q in zip(a.parameters(), model().parameters())) > 1e-4  # it trained


def test_cuda_graph_without_cuda_trains_eagerly_with_one_notice():
    from xgen.runtime import speed
    from xgen.data import DigitsDataModule

    def fit(graph: bool):
        model = _gan(conv=False)
        speed.apply(model, speed.options({"cuda_graph": graph}))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            torch.manual_seed(2)
            L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(
                model, datamodule=DigitsDataModule(size=8, batch_size=32, repeat=1, seed=0))
        notices = [str(x.message) for x in w if "speed.cuda_graph" in str(x.message)]
        return [p.detach().clone() for p in model.parameters()], notices

    eager, none = fit(False)
    graph, notices = fit(True)
    assert none == [] and len(notices) == 1
    assert notices[0].startswith("speed.cuda_graph: training eagerly: ") and "\n" not in notices[0]
    if not torch.cuda.is_available():
        assert "no CUDA device" in notices[0]
    for p, q in zip(eager, graph):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_capture_is_refused_for_callbacks_that_need_eager_tensors():
    from xgen.models.capture import capture_problem

    class GradProbe(L.Callback):
        def on_after_backward(self, trainer, pl_module):
            pass

    class Trainer:
        world_size, callbacks = 1, [L.Callback(), GradProbe()]

    assert capture_problem(Trainer(), _gan(conv=False)) == "callback GradProbe needs eager tensors in on_after_backward"
    Trainer.callbacks = [L.Callback()]
    Trainer.world_size = 2
    assert capture_problem(Trainer(), _gan(conv=False)).startswith("several processes")
    Trainer.world_size = 1
    vae = VAE(image_shape=(1, 8, 8), latent_dim=2, encoder=MLPEncoder((1, 8, 8), 2, hidden=[8]),
              decoder=MLPDecoder((1, 8, 8), 2, hidden=[8]))
    assert "no capturable step" in capture_problem(Trainer(), vae)


def test_speed_options_are_checked():
    from xgen.runtime import speed

    assert speed.options(None) == {"channels_last": False, "compile": False, "cuda_graph": False}
    with pytest.raises(ConfigError, match=r"speed: unknown option\(s\) \['fast'\]"):
        speed.options({"fast": True})
    with pytest.raises(ConfigError, match="speed.compile: expected true or false"):
        speed.options({"compile": "yes"})


# ----------------------------------------------------------------------------- progress bar
def test_progress_bar_redraws_on_time_and_at_the_last_batch(monkeypatch):
    from xgen.callbacks import progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = progress.ThrottledProgressBar(refresh_per_second=4)
    due = []
    for b in range(1, 101):  # 100 batches, 10 ms apart: 1 s in all
        now[0] = b * 0.01
        due.append(bar.due(b, 100))
    drawn = [b for b, d in zip(range(1, 101), due) if d]
    # the first batch, then every 0.25 s (25 batches), and the last batch
    assert drawn == [1, 26, 51, 76, 100]
    with pytest.raises(ConfigError, match="refresh_per_second"):
        progress.ThrottledProgressBar(refresh_per_second=0)


def test_throughput_counts_the_timed_batches(tmp_path):
    import json

    from xgen.callbacks.throughput import Throughput
    from xgen.data import DigitsDataModule

    vae = VAE(image_shape=(1, 8, 8), latent_dim=2, encoder=MLPEncoder((1, 8, 8), 2, hidden=[8]),
              decoder=MLPDecoder((1, 8, 8), 2, hidden=[8]))
    clock = Throughput(warmup=2, steps=3, path=str(tmp_path / "t.json"))
    L.Trainer(max_epochs=1, limit_train_batches=8, limit_val_batches=0, accelerator="cpu", logger=False,
              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[clock]).fit(vae, datamodule=DigitsDataModule(size=8, batch_size=16, repeat=1))
    out = json.loads((tmp_path / "t.json").read_text())
    assert out["batches"] == 3 and out["images"] == 48
    assert math.isclose(out["images_per_s"], 48 / out["seconds"], rel_tol=1e-9)


def test_finite_check_finds_every_nan_and_inf():
    """FiniteGuard's min/max check: one non-finite value anywhere (either sign of inf, NaN) is found; a
    finite model, and a finite loss, pass."""
    from xgen.callbacks.finite_guard import all_finite

    m = torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Linear(40, 3))
    assert all_finite(m) and all_finite(m, torch.tensor(3.0))
    assert not all_finite(m, torch.tensor(float("nan")))
    for v in (float("nan"), float("inf"), -float("inf")):
        for layer, pos in ((0, (0, 0)), (0, (39, 49)), (1, (2, 17))):
            with torch.no_grad():
                old = float(m[layer].weight[pos])
                m[layer].weight[pos] = v
            assert not all_finite(m), (v, layer, pos)
            with torch.no_grad():
                m[layer].weight[pos] = old
    assert all_finite(m)


def test_vae_manual_step_equals_lightning_automatic_optimisation():
    """VAEs train by one player_update a step (manual optimisation); Lightning's automatic optimisation
    (manual_step=False) gives the same parameters after 3 steps, and a trainer asking for gradient
    clipping or accumulation falls back to it (Lightning supports those only there) and clips."""
    from xgen.data import DigitsDataModule

    def fit(manual: bool, **trainer_kw):
        torch.manual_seed(0)
        m = VAE(image_shape=(1, 28, 28), latent_dim=4, encoder=MLPEncoder((1, 28, 28), 4, hidden=[32]),
                decoder=MLPDecoder((1, 28, 28), 4, hidden=[32]))
        m.manual_step = manual
        seen = {}

        class Probe(L.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                seen["automatic"] = pl_module.automatic_optimization

        torch.manual_seed(3)
        L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, accelerator="cpu", logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=[Probe()], **trainer_kw).fit(m, datamodule=DigitsDataModule(size=28, batch_size=64,
                                                                                           repeat=1, seed=0))
        return m, seen["automatic"]

    (a, auto_a), (b, auto_b) = fit(True), fit(False)
    assert auto_a is False and auto_b is True
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    (c, auto_c), (d, auto_d) = fit(True, gradient_clip_val=1e-3), fit(True, accumulate_grad_batches=2)
    assert auto_c is True and auto_d is True
    moved = lambda m: max(float((p - q).abs().max()) for p, q in zip(m.parameters(), fit(True)[0].parameters()))  # noqa: E731
    assert moved(c) > 1e-5 and moved(d) > 1e-5  # clipping / accumulation changed the trajectory
