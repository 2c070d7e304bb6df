"""Figures read on their own: the training grids (SampleGrids) are labelled figures of a readable size
with a title naming the model, the data and the epoch, beside the raw grids; the report's curves of a
one-epoch sweep have a sensible x axis; activation maximisation writes under its output folder and
names the class a logit unit stands for."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from xgen.callbacks import SampleGrids
from xgen.data.digits import DigitsDataModule
from xgen.latent import LatentSpec
from xgen.models import VAE

MLP = {"_target_": "xgen.nets.vae.MLPEncoder", "hidden": [32]}
MLP_DEC = {"_target_": "xgen.nets.vae.MLPDecoder", "hidden": [32]}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's


# ============================================================================ training grids
def test_training_grids_are_labelled_figures_beside_the_raw_grids(tmp_path):
    torch.manual_seed(0)
    model = VAE(image_shape=(1, 28, 28), latent_dim=2, encoder=MLP, decoder=MLP_DEC)
    grids = SampleGrids(num_samples=16, num_reconstructions=16, nrow=8)
    trainer = L.Trainer(callbacks=[grids], accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    d = tmp_path / "samples"
    for name, what in (("samples", "samples of 16 fixed prior draws"), ("reconstructions", "reconstructions")):
        for when, stamp in (("epoch000", "epoch 0 (0-based), 2 steps"), ("final", "end of training, 2 steps")):
            with Image.open(d / f"{name}_{when}.png") as im:
                assert im.size[0] >= 600, im.size  # the raw 8-column grid is 8 * 30 + 2 = 242 px wide
                title = im.text["Title"]
            assert title.startswith(f"VAE on digits: {what}") and title.endswith(stamp), title
            # the bare make_grid tiling stays available (human-eval cuts tiles out of it): 2 rows of 8 tiles
            rows = 2 if name == "samples" else 4  # reconstructions: each row of originals above its reconstructions
            assert Image.open(d / "raw" / f"{name}_{when}.png").size == (8 * 30 + 2, rows * 30 + 2)
    # xgen human-eval on a run without a checkpoint cuts its tiles out of the raw grids, not the figures
    from xgen.runtime.human_eval.images import run_images

    got = run_images(tmp_path, 16, data="digits")
    assert len(got.fake) == 16 and got.source.startswith("samples ") and "_final.png" in got.source


def test_traversal_grid_labels_name_the_codes_and_their_values():
    grids = SampleGrids(traversal_steps=5, traversal_span=(-1.0, 1.0), traversal_categorical=1, traversal_continuous=1)

    class M:  # what _fixed_traversal reads: the latent and a device
        latent = LatentSpec(noise=3, categorical=[4, 3], continuous=2)
        device = torch.device("cpu")

    trav, cols = grids._fixed_traversal(M())
    assert cols == 5 and trav.shape == (3 * 5, M.latent.dim)
    lab = grids._traversal_labels(3)
    assert lab["row_labels"] == ["cat1=0", "cat1=1", "cat1=2"]
    assert lab["col_labels"] == ["-1.00", "-0.50", "0.00", "0.50", "1.00"]
    assert lab["ylabel"] == "categorical code cat1 (category)" and lab["xlabel"] == "continuous code cont1 (value)"
    codes = M.latent.split(trav)
    assert torch.equal(codes.categorical[:, 1], torch.arange(3).repeat_interleave(5))
    assert torch.allclose(codes.continuous[:5, 1], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))


# ============================================================================ report curves
def test_report_curves_of_one_epoch_have_a_unit_wide_integer_axis(tmp_path):
    from xgen.runtime.report import collect, curves_figure

    for job, nelbo in ((0, 300.0), (1, 280.0)):
        d = tmp_path / str(job)
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"status": "completed", "overrides": [f"seed={job}"],
                                                    "metrics": {}}))
        (d / "config.yaml").write_text("model:\n  _target_: xgen.models.VAE\n")
        with open(d / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "val/nelbo"])
            w.writerow([0, 210, nelbo])
    fig = curves_figure(collect(tmp_path))
    try:
        (ax,) = fig.axes
        assert ax.get_xlim() == (-0.5, 0.5)  # matplotlib's own limits for one x value: (-0.04, 0.04)
        assert list(ax.get_xticks()) == [0.0]
        assert [list(line.get_ydata()) for line in ax.get_lines()] == [[300.0], [280.0]]
        assert all(line.get_marker() == "o" for line in ax.get_lines())  # a single point is drawn visibly
        assert "1 epoch logged" in fig.texts[0].get_text()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


# ============================================================================ activation maximisation
def test_activation_max_writes_under_its_out_folder_and_names_the_class(tmp_path, monkeypatch, capsys):
    from xgen.runtime.cli.activation_max import main

    monkeypatch.chdir(tmp_path)
    argv = ["--net", "classifier:fashion_mnist:thesis", "--layer", "fc2", "--unit", "3", "--steps", "3"]
    assert main(argv) == 0  # the default folder, as every explain tool: xgen_explain/<tool>/
    out = tmp_path / "xgen_explain" / "activation-max"
    assert sorted(p.name for p in out.iterdir()) == ["activation_max.json", "activation_max.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xgen_explain"]  # nothing in the current folder
    rec = json.loads((out / "activation_max.json").read_text())
    assert rec["unit_description"] == "fc2[3] = logit of class 3 'Dress'" and len(rec["activation"]) == 4
    assert main(argv + ["--out", str(tmp_path / "mine"), "--prefix", "u3_"]) == 0
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["u3_activation_max.json", "u3_activation_max.png"]
    capsys.readouterr()
    assert main(argv + ["--layer", "fc1"]) == 0  # a hidden layer names no class
    assert json.loads((out / "activation_max.json").read_text())["unit_description"] == "fc1[3]"
    assert main(argv + ["--out", "fig.png"]) == 2
    assert "--out: 'fig.png' looks like a file; --out is the output folder" in capsys.readouterr().err
    assert not Path("fig.png").exists()
