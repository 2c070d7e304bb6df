"""`xgen report` on a sweep with a seed axis: mean ± std per cell over the completed seeds (the defaults
table of docs/defaults.md), eval.json metrics joined in, and one contact sheet of final sample grids per
dataset that draws each job's own grid and refuses files it should not read."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xgen.runtime.cli.report import main

FID = {("vae", "digits"): [40.0, 44.0, 48.0], ("gan", "digits"): [90.0, 70.0, None],
       ("vae", "fashion_mnist"): [30.0, 31.0, 35.0], ("gan", "fashion_mnist"): [60.0, 62.0, 67.0]}
COLOUR = {"vae": (255, 0, 0), "gan": (0, 0, 255)}


def sweep(root: Path) -> Path:
    """12 jobs: model x data x seed; gan/digits/seed 2 failed. eval.json carries test/fid (and a
    test/nelbo training also logged: training's stays); each job's grid is one flat colour per model."""
    sw = root / "multirun"
    i = 0
    for (model, data), fids in FID.items():
        for seed, fid in enumerate(fids):
            d = sw / str(i)
            (d / "samples" / "raw").mkdir(parents=True)
            done = fid is not None
            (d / "summary.json").write_text(json.dumps({
                "status": "completed" if done else "failed", "error": None if done else "NaN at step 3",
                "overrides": [f"model={model}", f"data={data}", f"seed={seed}"],
                "metrics": {"test/nelbo": 100.0 + seed} if done else {},
                "wall_time_s": 10.0 * (seed + 1), "cpu_time_s": 9.0 * (seed + 1)}))
            if done:
                (d / "eval.json").write_text(json.dumps({"name": f"{i}: X", "checkpoint": "c", "test/fid": fid,
                                                         "test/nelbo": -1.0, "test/fid_per_class": [1, 2],
                                                         "num_samples": 500}))
                Image.new("RGB", (40, 40), COLOUR[model]).save(d / "samples" / "raw" / "samples_final.png")
            i += 1
    return sw


def test_seed_table_is_mean_and_std_over_completed_seeds(tmp_path, capsys):
    sw = sweep(tmp_path)
    assert main([str(sw), "--metrics", "test/fid", "test/nelbo"]) == 0
    rows = {(r["model"], r["data"]): r for r in csv.DictReader(open(sw / "report_seeds.csv"))}
    assert set(rows) == set(FID)
    for key, fids in FID.items():
        done = [f for f in fids if f is not None]
        r = rows[key]
        assert float(r["test/fid mean"]) == pytest.approx(np.mean(done))
        assert float(r["test/fid std"]) == pytest.approx(np.std(done, ddof=1))
        assert int(r["test/fid n"]) == len(done) and int(r["completed"]) == len(done) and int(r["jobs"]) == 3
        # training's test/nelbo (100 + seed) wins over eval.json's -1
        assert float(r["test/nelbo mean"]) == pytest.approx(np.mean([100.0 + s for s in range(len(done))]))
        assert float(r["cpu_time_s mean"]) == pytest.approx(np.mean([9.0 * (s + 1) for s in range(len(done))]))
    md = (sw / "report_seeds.md").read_text()
    assert "| vae | digits | 0, 1, 2 | 44 ± 4 |" in md
    assert r"| gan | digits | 0, 1 \(1 not completed\) | 80 ± 14 |" in md  # md cells escape ( )
    out = capsys.readouterr().out
    assert "Over seeds" in out and "report_seeds.md" in out
    # the per-job table has the CPU time, and no metric-against-seed plot is drawn
    jobs = list(csv.DictReader(open(sw / "report.csv")))
    assert [float(j["cpu_time_s"]) for j in jobs[:3]] == [9.0, 18.0, 27.0]
    assert not list(sw.glob("plot_*_vs_seed.png"))


def test_contact_sheet_per_dataset_draws_each_jobs_grid(tmp_path, capsys):
    sw = sweep(tmp_path)
    assert main([str(sw)]) == 0
    for data in ("digits", "fashion_mnist"):
        im = np.asarray(Image.open(sw / f"contact_{data}.png").convert("RGB")).astype(int)
        red = ((im[..., 0] > 200) & (im[..., 1] < 60) & (im[..., 2] < 60)).sum()
        blue = ((im[..., 2] > 200) & (im[..., 0] < 60) & (im[..., 1] < 60)).sum()
        # three vae panels; the gan panels of digits: two (its seed 2 failed and has no grid)
        gan_panels = 2 if data == "digits" else 3
        assert red > 0 and blue > 0
        assert blue / red == pytest.approx(gan_panels / 3, rel=0.1)
    assert "contact_digits.png" in capsys.readouterr().out


def test_contact_sheet_reads_no_link_out_and_no_disguised_file(tmp_path, capsys):
    sw = sweep(tmp_path)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), (0, 255, 0)).save(secret)
    g0 = sw / "0" / "samples" / "raw" / "samples_final.png"
    g0.unlink()
    os.symlink(secret, g0)  # a grid that is a link to a file outside the sweep
    g1 = sw / "1" / "samples" / "raw" / "samples_final.png"
    Image.new("RGB", (40, 40), (0, 255, 0)).save(g1, format="JPEG")  # not a PNG, whatever its name
    g2 = sw / "2" / "samples" / "raw" / "samples_final.png"
    g2.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main([str(sw)]) == 0
    err = capsys.readouterr().err
    assert f"{g0}: a link to {secret}" in err and f"{g1}: not a PNG (JPEG)" in err
    assert f"{g2}: not a readable image" in err
    im = np.asarray(Image.open(sw / "contact_digits.png").convert("RGB")).astype(int)
    green = ((im[..., 1] > 200) & (im[..., 0] < 60) & (im[..., 2] < 60)).sum()
    assert green == 0  # neither the linked file nor the JPEG was drawn
