"""Counterfactual metrics (xgen.metrics.counterfactual), the baselines (pixel attack, nearest unlike
neighbour), the model-randomisation check and `xgen explain evaluate` (issue 24).

Known answers: identical images have proximity 0 and validity 0; a constant change has sparsity 1 and
closed-form L1/L2; real images of a class score at the real-vs-real FID floor; the attack on a linear
classifier lands within a few percent of the closed-form minimal L2 distance (never below it), inside
the image range; the decision map of an identity "VAE" and a linear classifier is its weight difference,
so its rank correlation under randomisation has a closed form.
"""

from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from torch import nn

from xgen.explain.baselines import nearest_unlike_neighbour, pixel_attack
from xgen.runtime.cli.explain import main as explain_main
from xgen.explain.common import ExplainedClassifier
from xgen.explain.evaluate import evaluate_counterfactuals
from xgen.explain.faithfulness import parameter_layers, randomisation_check, randomise_layers
from xgen.explain.shipped import shipped_checkpoints
from xgen.latent import LatentSpec
from xgen.metrics import counterfactual as cfm
from test_explain import CopyVAE


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest's


def copy_vae(dim: int) -> CopyVAE:
    """Encodes + Decodes + Generative on (1, 1, dim) images: the latent *is* the image."""
    return CopyVAE(LatentSpec(noise=dim, categorical=[], continuous=0))


class Linear(nn.Module):
    def __init__(self, dim: int, classes: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


# ============================================================================ plain metrics
def test_identical_images_have_zero_proximity_sparsity_and_validity():
    x = torch.rand(5, 1, 6, 6)
    p = torch.softmax(torch.randn(5, 3), 1)
    assert cfm.pixel_distance(x, x.clone(), 1).abs().max() == 0
    assert cfm.pixel_distance(x, x.clone(), 2).abs().max() == 0
    assert cfm.changed_fraction(x, x.clone()).abs().max() == 0
    assert cfm.latent_distance(x.flatten(1), x.flatten(1)).abs().max() == 0
    assert cfm.changed(p.argmax(1), p).sum() == 0
    assert torch.equal(cfm.target_probability(p), p.max(1).values.double())


def test_constant_change_has_sparsity_one_and_closed_form_distances():
    x = torch.rand(4, 1, 5, 5) * 0.8
    y = x + 0.1
    assert torch.allclose(cfm.changed_fraction(x, y, threshold=0.05), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(cfm.changed_fraction(x, y, threshold=0.2), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(cfm.pixel_distance(x, y, 1), torch.full((4,), 2.5, dtype=torch.float64))
    assert torch.allclose(cfm.pixel_distance(x, y, 2), torch.full((4,), 0.1 * 5, dtype=torch.float64))
    # a (-1, 1) model: the same change in [0, 1] units is half as large
    assert torch.allclose(cfm.pixel_distance(x, y, 2, (-1.0, 1.0)), torch.full((4,), 0.25, dtype=torch.float64))
    half = x.clone()
    half[:, :, :, :2] += 0.3   # 10 of 25 pixels
    assert torch.allclose(cfm.changed_fraction(x, half), torch.full((4,), 0.4, dtype=torch.float64))


def test_validity_and_target_probability():
    p0 = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]])
    pc = torch.tensor([[0.3, 0.6, 0.1], [0.1, 0.8, 0.1]])
    assert cfm.changed(p0.argmax(1), pc).tolist() == [1.0, 0.0]
    assert cfm.changed(p0.argmax(1), pc, target_class=torch.tensor([2, 1])).tolist() == [0.0, 1.0]
    assert torch.allclose(cfm.target_probability(pc), torch.tensor([0.6, 0.8], dtype=torch.float64))


def test_ranks_and_spearman_match_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 40), generator=g).float()      # many ties
    b = torch.randn(3, 40, generator=g)
    assert np.allclose(cfm.rank(a).numpy(), rankdata(a.numpy(), axis=1))
    ref = [spearmanr(a[i].numpy(), b[i].numpy()).statistic for i in range(3)]
    assert np.allclose(cfm.spearman(a, b).numpy(), ref)
    assert torch.allclose(cfm.spearman(b, b.exp()), torch.ones(3, dtype=torch.float64))   # monotone: 1
    assert torch.allclose(cfm.spearman(b, -b), -torch.ones(3, dtype=torch.float64))
    assert torch.isnan(cfm.spearman(torch.zeros(1, 9), torch.randn(1, 9))).all()       # constant: undefined
    assert cfm.relative_change(b, b).abs().max() == 0
    assert torch.allclose(cfm.relative_change(b, 2 * b), torch.ones(3, dtype=torch.float64))


def test_class_matched_fid_real_images_sit_at_the_floor_and_shifted_ones_far_above():
    g = torch.Generator().manual_seed(1)
    means = torch.tensor([[0.0, 0, 0, 0], [3.0, 0, 0, 0], [0.0, 3, 0, 0]])
    labels = torch.arange(3).repeat_interleave(1500)
    real = means[labels] + torch.randn(len(labels), 4, generator=g)
    cls = torch.tensor([0] * 100 + [1] * 150 + [2] * 50)
    # counterfactuals that are real draws of the classes they claim: at the floor
    cf = means[cls] + torch.randn(len(cls), 4, generator=g)
    r = cfm.class_matched_fid(cf, cls, real, labels, reference_per_image=4)
    assert r["reference"] == 4 * 300 and r["floor_n"] == 300 and not r["short_classes"]
    assert r["fid_floor"] < 0.2 and abs(r["fid"] - r["fid_floor"]) < 0.15
    assert r["classes_scored"] == 3 and abs(r["fid_per_class"] - r["fid_per_class_floor"]) < 0.15
    # shifted off every class (+3 along an unused axis): FID ≈ 3² = 9, far above the floor
    off = cf + torch.tensor([0.0, 0, 3, 0])
    far = cfm.class_matched_fid(off, cls, real, labels)
    assert 7.5 < far["fid"] < 10.5 and far["fid_ratio"] > 40
    # real draws called by the wrong class: the pooled FID only sees the mixture shift, per class it is
    # |μ_j − μ_k|² = 9 or 18 per class
    wrong = (cls + 1) % 3
    w = cfm.class_matched_fid(cf, wrong, real, labels)
    assert w["fid_per_class"] > 8 and w["fid_per_class"] > 20 * w["fid_per_class_floor"] and w["fid"] < w["fid_per_class"]
    # a counterfactual equal to a training item is at distance 0 from the training bank
    assert torch.allclose(cfm.nearest_distance(real[[5, 700]], real), torch.zeros(2, dtype=torch.float64))
    assert cfm.summarise(torch.tensor([1.0, math.nan, 3.0])) == {"mean": 2.0, "median": 1.0, "n": 2}


# ============================================================================ baselines
def test_pixel_attack_reaches_the_closed_form_minimum_inside_the_box():
    d = 16
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        w = torch.linspace(-1.0, 1.0, d)
        lin.weight[0] = w
        lin.bias[0] = 0.3
    clf = nn.Sequential(nn.Flatten(), lin)
    x = torch.full((1, 1, 4, 4), 0.5)
    margin = float(w @ x.flatten() + 0.3)                  # logit0 - logit1 at x
    exact = margin / float(w.norm())                        # distance to the hyperplane, inside the box here
    r = pixel_attack(clf, x, steps=40, search=12)
    assert bool(r.success[0]) and int(clf(r.images).argmax(1)) == 1
    assert r.images.min() >= 0 and r.images.max() <= 1
    assert exact * (1 - 1e-4) <= float(r.l2[0]) <= 1.03 * exact
    assert abs(float((r.images - x).flatten().norm()) - float(r.l2[0])) < 1e-5
    # the box binds: pixels at 1 that should rise cannot, so only the other half may move
    x2 = torch.cat([torch.full((8,), 1.0), torch.full((8,), 0.5)]).view(1, 1, 4, 4)
    with torch.no_grad():
        lin.weight[0] = torch.cat([-torch.ones(8), torch.ones(8)])
        lin.bias[0] = 8.0 + 0.8 - 4.0                      # margin 0.8 at x2
    boxed = 0.8 / math.sqrt(8)                              # > the unconstrained 0.8 / 4
    r2 = pixel_attack(clf, x2, steps=40, search=12)
    assert bool(r2.success[0]) and r2.images.max() <= 1 and r2.images.min() >= 0
    assert boxed * (1 - 1e-4) <= float(r2.l2[0]) <= 1.03 * boxed
    # (-1, 1) images: returned in that range, distance still in [0, 1] units
    r3 = pixel_attack(clf, x2 * 2 - 1, value_range=(-1.0, 1.0), steps=40, search=12)
    assert r3.images.min() >= -1 and r3.images.max() <= 1 and abs(float(r3.l2[0]) - float(r2.l2[0])) < 0.02 * boxed
    # a class no image in the box can leave: reported, image unchanged
    with torch.no_grad():
        lin.bias[0] = 100.0
    r4 = pixel_attack(clf, x, steps=5, search=3)
    assert not bool(r4.success[0]) and torch.equal(r4.images, x) and float(r4.l2[0]) == 0.0


def test_nearest_unlike_neighbour_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    q, bank = torch.randn(7, 5, generator=g), torch.randn(60, 5, generator=g)
    qc, bc = torch.randint(0, 3, (7,), generator=g), torch.randint(0, 3, (60,), generator=g)
    r = nearest_unlike_neighbour(q, qc, bank, bc)
    d = torch.cdist(q.double(), bank.double())
    d[qc[:, None] == bc[None, :]] = math.inf
    assert torch.equal(r.index, d.argmin(1)) and torch.allclose(r.distance, d.min(1).values, atol=1e-5)
    assert (r.train_class != qc).all()


# ============================================================================ randomisation check
class Shifted(nn.Module):
    """Linear logits plus one shared learned shift: randomising the shift cannot change any softmax."""

    def __init__(self, dim: int):
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("w", torch.randn(2, dim))
        self.shift = nn.Linear(1, 1)

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.shift(torch.ones(len(x), 1, device=x.device))


def test_parameter_layers_in_forward_order_and_randomise_only_those():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(4, 2)          # defined first, called last
            self.early = nn.Linear(6, 4)

        def forward(self, x):
            return self.late(torch.relu(self.early(x.flatten(1))))

    m = Odd()
    assert parameter_layers(m, (1, 2, 3)) == ["early", "late"]
    r = randomise_layers(m, ["late"], seed=0)
    assert torch.equal(r.early.weight, m.early.weight) and not torch.equal(r.late.weight, m.late.weight)
    assert torch.equal(randomise_layers(m, ["late"], seed=0).late.weight, r.late.weight)   # seeded


def test_randomisation_check_closed_form_on_a_linear_classifier():
    dim = 12
    model, lin = copy_vae(dim), Linear(dim, 2, seed=1)
    x = torch.rand(6, 1, 1, dim) * 0.2 + 0.4
    rc = randomisation_check(model, lin, x, threshold=0.5, seed=0, decision_map_kwargs={"max_step": 20.0})
    assert rc.stages == ["trained", "fc"]
    assert torch.allclose(rc.spearman[0], torch.ones(6, dtype=torch.float64))
    # the map of an identity decoder is λ·d with d = -(w_c - w_other)/‖·‖, c the predicted class
    rand = randomise_layers(lin, ["fc"], seed=0)

    def direction(net):
        c = net(x).argmax(1)
        dw = net.fc.weight[0] - net.fc.weight[1]
        return -torch.where(c[:, None] == 0, dw[None], -dw[None])

    expect = cfm.spearman(direction(lin), direction(rand))
    assert torch.allclose(rc.spearman[1], expect, atol=1e-9)
    # a "classifier layer" that cannot change the softmax leaves every map as it was: not faithful
    rc2 = randomisation_check(model, Shifted(dim), x, threshold=0.5, seed=0)
    assert torch.allclose(rc2.spearman[-1], torch.ones(6, dtype=torch.float64))
    nf = rc2.not_faithful()
    assert nf["signed"]["not_faithful"] == 6 and not nf["signed"]["faithful"]


# ============================================================================ the evaluation
def test_evaluate_counterfactuals_on_an_identity_model():
    dim = 8
    model, lin = copy_vae(dim), Linear(dim, 3, seed=2)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(12, 1, 1, dim, generator=g)
    train = torch.rand(300, 1, 1, dim, generator=g)
    test = torch.rand(400, 1, 1, dim, generator=g)
    test_labels = lin(test).argmax(1)
    clf = ExplainedClassifier(lin)
    ev = evaluate_counterfactuals(model, clf, x, train, test, test_labels, lambda u: u.flatten(1), lin, noise_draws=1,
                                  attack_steps=30, attack_search=10, decision_map_kwargs={"max_step": 20.0})
    o, gen, att, nun = (ev.row(m) for m in ("original", "generative", "pixel attack", "nearest unlike neighbour"))
    assert o["validity"] == 0 and o["l2_mean"] == 0 and o["sparsity_mean"] == 0
    r = ev.row("reconstruction")                               # the identity model reconstructs exactly
    assert r["validity"] == 0 and r["l2_mean"] == 0 and r["fid"] == pytest.approx(o["fid"])
    # the second classifier (here the same network) reads the images clipped to the range
    assert ev.row("pixel attack")["second_classifier_agrees"] == 1.0
    cf = ev.counterfactuals["generative"]
    same = (lin(cf.clamp(0, 1)).argmax(1) == lin(cf).argmax(1)).double()
    assert torch.equal(ev.per_image["generative"]["second_classifier_agrees"], same)
    assert att["validity"] == 1 and nun["validity"] == 1
    assert nun["nn_feature_distance_median"] == 0.0          # a training image is its own nearest neighbour
    # identity decoder: the generative counterfactual walks the same line the attack finds, in 0.1 steps
    valid = ev.per_image["generative"]["valid"].bool()
    assert valid.all()
    gl2, al2 = ev.per_image["generative"]["l2"], ev.per_image["pixel attack"]["l2"]
    assert (gl2 >= al2 * 0.999).all()
    lat = ev.per_image["generative"]["latent_distance"]
    assert torch.allclose(lat, gl2, atol=1e-5)                # the latent is the image: λ = pixel L2
    assert ev.row("generative")["elbo_mean"] is None          # CopyVAE has no likelihood


def _err(capsys, argv):
    assert explain_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xgen explain evaluate: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_evaluate_bad_inputs_are_one_line_errors(capsys, tmp_path):
    if "infovae" not in shipped_checkpoints():
        pytest.skip("shipped InfoVAE not installed")
    assert "outside the dataset split" in _err(capsys, ["evaluate", "--images", "99999", "--out", str(tmp_path)])
    assert "Encodes" in _err(capsys, ["evaluate", "--model", "infogan", "--images", "0-3", "--out", str(tmp_path)])
    assert "must be >= 0" in _err(capsys, ["evaluate", "--noise-draws", "-1", "--out", str(tmp_path)])
    assert "no such file" in _err(capsys, ["evaluate", "--classifier", str(tmp_path / "none.pt"), "--out", str(tmp_path)])


@pytest.mark.slow
def test_real_test_images_score_at_the_real_floor_in_the_shipped_fid_features():
    from xgen.runtime.cli.explain_args import load_split
    from xgen.metrics.features import ClassifierExtractor

    x, y = load_split("fashion_mnist", "test")
    f = ClassifierExtractor(dataset="fashion_mnist", arch="strong").extract(x[:4000]).features
    y = y[:4000]
    # 300 real test images as "counterfactuals" of their own classes: at the real-vs-real floor
    # (measured: FID 7.6 vs floor 6.3; per class 30.9 vs 29.1)
    r = cfm.class_matched_fid(f[:300], y[:300], f[300:], y[300:])
    assert 0.75 < r["fid"] / r["fid_floor"] < 1.35 and 0.8 < r["fid_per_class"] / r["fid_per_class_floor"] < 1.25
    # the same images claimed to be the next class: per class far above its floor
    w = cfm.class_matched_fid(f[:300], (y[:300] + 1) % 10, f[300:], y[300:])
    assert w["fid_per_class"] > 10 * w["fid_per_class_floor"]


@pytest.mark.slow
def test_cli_evaluate_on_the_shipped_infovae(capsys, tmp_path, monkeypatch):
    if "infovae" not in shipped_checkpoints():
        pytest.skip("shipped InfoVAE not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    rc = explain_main(["evaluate", "--images", "0-5", "--noise-draws", "1", "--attack-search", "6",
                       "--train-images", "2000", "--test-images", "2000", "--randomisation", "2", "--out", str(tmp_path),
                       "--wandb", "xgen-test"])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out[out.index("{\n"):])
    rows = {r["method"]: r for r in res["table"]}
    assert rows["pixel attack"]["validity"] == 1.0
    assert rows["pixel attack"]["l2_mean"] < rows["generative"]["l2_mean"]
    assert rows["generative"]["elbo_mean"] < 0 and rows["original"]["validity"] == 0
    for f in ("table_csv", "per_image_csv", "json", "figure", "randomisation_figure", "randomisation_csv"):
        assert (tmp_path / res[f].split("/")[-1]).is_file()
    assert len(res["randomisation"]) == 5 and res["randomisation"][0]["spearman_mean"] == pytest.approx(1.0)
    # --wandb: one offline run holding the table, the figures and the summary numbers
    from xgen.utils.wandb_files import read_run

    (run_file,) = Path(res["wandb"]).parent.glob("run-*.wandb")
    run = read_run(run_file)
    keys = {k for h in run["history"] for k in h}
    assert run["job_type"] == "explain-evaluate" and {"counterfactuals/ncols", "figure/path"} <= keys, keys


def test_evaluate_counterfactuals_on_a_beta_vae_scores_its_elbo():
    from xgen.metrics.likelihood import elbo
    from xgen.models.vae import BetaVAE

    torch.manual_seed(0)
    vae = BetaVAE(image_shape=(1, 8, 8), latent_dim=2, encoder={"_target_": "xgen.nets.vae.MLPEncoder", "hidden": [16]},
                  decoder={"_target_": "xgen.nets.vae.MLPDecoder", "hidden": [16]}).eval()
    cnn = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 8, 8, generator=g)
    train, test = torch.rand(50, 1, 8, 8, generator=g), torch.rand(60, 1, 8, 8, generator=g)
    clf = ExplainedClassifier(cnn)
    ev = evaluate_counterfactuals(vae, clf, x, train, test, cnn(test).argmax(1), lambda u: u.flatten(1)[:, :4],
                                  noise_draws=1, attack_steps=10, attack_search=4, seed=3)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        ref = elbo(vae, x).double()
    assert torch.allclose(ev.per_image["original"]["elbo"], ref)
    assert ev.row("original")["elbo_mean"] == pytest.approx(float(ref.mean()))
    rec = ev.per_image["reconstruction"]
    assert torch.allclose(rec["l2"], cfm.pixel_distance(x, ev.reconstructions, 2))
