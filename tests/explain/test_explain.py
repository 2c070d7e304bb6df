"""xgen.explain: traversals, grids, decision maps, inversion, nearest neighbours and `xgen explain`.

Most tests run on tiny analytic models (a "decoder" that writes the latent into the pixels, a linear
classifier) so each number has a closed form; a few run on the shipped Fashion-MNIST checkpoints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from xgen.errors import ConfigError
from xgen.explain import (ExplainedClassifier, InversionEncoder, InvertedGAN, decision_maps, explainability_grid,
                          grid2d, interpolate, knn, latent_arithmetic, load_encoder, nearest_neighbours, parse_axis,
                          reconstruction_error, save_encoder, slerp, train_inversion, traverse)
from xgen.runtime.cli.explain import main as explain_main
from xgen.explain.shipped import shipped_checkpoints
from xgen.latent import LatentSpec
from xgen.protocols import CapabilityError, Decodes, Encodes, Generative, Posterior


# ============================================================================ tiny analytic models
class CopyDecoder(nn.Module):
    """A Generative+Decodes model whose image is its latent: decode(z) = z as a (1, 1, dim) image."""

    value_range = (0.0, 1.0)

    def __init__(self, latent: LatentSpec):
        super().__init__()
        self.latent = latent
        self.image_shape = (1, 1, latent.dim)
        self.dummy = nn.Parameter(torch.zeros(()))

    def sample_latent(self, n, generator=None):
        return self.latent.sample(n, generator=generator)

    def generate(self, latent_or_n, generator=None):
        z = self.sample_latent(latent_or_n, generator) if isinstance(latent_or_n, int) else latent_or_n
        return self.decode(z)

    def decode(self, z):
        return z.view(len(z), 1, 1, -1) + 0 * self.dummy


class CopyVAE(CopyDecoder):
    """CopyDecoder that also Encodes: the posterior mean of an image is its pixels."""

    def encode(self, x):
        m = x.flatten(1)
        return Posterior(m, torch.zeros_like(m))

    def embed(self, x):
        return self.encode(x).mean


class PixelClassifier(nn.Module):
    """Two classes from one pixel: logit1 − logit0 = scale·(x[pixel] − threshold)."""

    def __init__(self, pixel: int, threshold: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.pixel, self.threshold, self.scale = pixel, threshold, scale

    def forward(self, x):
        v = x.flatten(1)[:, self.pixel]
        return torch.stack([torch.zeros_like(v), self.scale * (v - self.threshold)], 1)


INFOGAN_LATENT = LatentSpec(noise=3, categorical=[4], continuous=2)


@pytest.fixture(autouse=True)
def one_thread():
    """These tiny networks gain nothing from threads, and on a shared 2-core machine two threads
    made the inversion test 8x slower (spin-waiting); restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ============================================================================ axes, traversals, interpolation
def test_parse_axis_columns_and_unknown_codes():
    spec = LatentSpec(noise=62, categorical=[10], continuous=2)
    assert parse_axis(spec, "cat0").column == 62 and parse_axis(spec, "cat0").size == 10
    assert parse_axis(spec, "cont0").column == 72 and parse_axis(spec, "cont1").column == 73
    assert parse_axis(spec, "z61").column == 61 and parse_axis(spec, "5").column == 5
    for bad, expect in (("cont2", "2 cont"), ("cat1", "1 cat"), ("z62", "62 z"), ("foo", "not a latent axis")):
        with pytest.raises(ConfigError, match=expect):
            parse_axis(spec, bad)
    with pytest.raises(ConfigError, match="cont0"):  # a VAE latent has no codes: the message lists what it has
        parse_axis(LatentSpec(noise=4, categorical=[], continuous=0), "cont0")


def test_traverse_sets_exactly_one_axis_and_keeps_the_rest():
    m = CopyDecoder(INFOGAN_LATENT)
    t = traverse(m, "cont1", span=(-2, 2), steps=5, rows=3, seed=1)
    assert t.images.shape == (3, 5, 1, 1, 9)
    col = parse_axis(m.latent, "cont1").column
    got = t.images[:, :, 0, 0, col]
    assert torch.allclose(got, torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]).expand(3, 5))
    others = [c for c in range(9) if c != col]
    assert torch.equal(t.images[:, :, 0, 0, others], t.images[:, :1, 0, 0, others].expand(-1, 5, -1))
    assert not torch.equal(t.images[0, 0], t.images[1, 0])  # rows are different prior draws


def test_grid2d_discrete_down_continuous_across():
    m = CopyDecoder(INFOGAN_LATENT)
    g = grid2d(m)  # defaults: cat0 down (4 values), cont0 across (10 values over [-1, 1])
    assert g.images.shape == (4, 10, 1, 1, 9)
    onehot = g.images[:, :, 0, 0, 3:7]
    assert torch.equal(onehot.argmax(-1), torch.arange(4)[:, None].expand(4, 10))
    assert torch.allclose(g.images[0, :, 0, 0, 7], torch.linspace(-1, 1, 10))
    with pytest.raises(ConfigError, match="categorical code 0 takes values 0..3"):
        grid2d(m, "cat0", "cont0", row_values=[0, 5])


def test_slerp_closed_form_and_interpolate_endpoints():
    a, b = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    t = torch.tensor([0.0, 0.5, 1.0])
    s = slerp(a, b, t)
    assert torch.allclose(s[1], torch.tensor([math.sqrt(2), math.sqrt(2)]), atol=1e-6)  # on the circle of radius 2
    assert torch.allclose(s.norm(dim=1), torch.full((3,), 2.0), atol=1e-6)
    assert torch.allclose(slerp(a, 3 * b, t).norm(dim=1), torch.tensor([2.0, 4.0, 6.0]), atol=1e-5)
    m = CopyDecoder(LatentSpec(noise=4, categorical=[], continuous=0))
    za, zb = torch.randn(4), torch.randn(4)
    for method in ("linear", "slerp"):
        it = interpolate(m, za, zb, steps=7, method=method)
        assert torch.allclose(it.images[0, 0].flatten(), za, atol=1e-5)
        assert torch.allclose(it.images[0, -1].flatten(), zb, atol=1e-5)
    lin = interpolate(m, za, zb, steps=3, method="linear")
    assert torch.allclose(lin.images[0, 1].flatten(), (za + zb) / 2, atol=1e-6)


def test_latent_arithmetic_means_and_noise():
    m = CopyDecoder(LatentSpec(noise=4, categorical=[], continuous=0))
    g = {k: torch.randn(3, 4) for k in "abc"}
    r = latent_arithmetic(m, g, n=9, noise_std=0.0)
    expect = g["a"].mean(0) - g["b"].mean(0) + g["c"].mean(0)
    assert torch.allclose(r.result, expect, atol=1e-6) and r.images.shape == (9, 1, 1, 4)
    assert torch.allclose(r.images[:, 0, 0], expect.expand(9, 4), atol=1e-6)
    r2 = latent_arithmetic(m, g, n=2000, noise_std=0.1)
    assert abs(float((r2.images[:, 0, 0] - expect).std()) - 0.1) < 0.01


# ============================================================================ Explainability Grids
def test_explainability_grid_turning_points_and_counts(tmp_path):
    m = CopyDecoder(INFOGAN_LATENT)
    cont0 = parse_axis(m.latent, "cont0").column
    clf = ExplainedClassifier(PixelClassifier(cont0, threshold=0.3), class_names=["low", "high"])
    g = explainability_grid(m, clf)
    # cont0 = linspace(-1, 1, 10): columns 0..5 are < 0.3, 6..9 above -> one turning point per row at (r, 5)
    assert g.turning_points == [(r, 5) for r in range(4)]
    c = g.counts()
    assert c["rows_one_class"] == 0 and c["turning_points"] == 4 and c["distinct_classes"] == 2
    v = torch.linspace(-1, 1, 10)[7].item()
    assert math.isclose(float(g.confidence[0, 7]), 1 / (1 + math.exp(-(v - 0.3))), rel_tol=1e-5)
    rows = g.save_csv(tmp_path / "g.csv").read_text().splitlines()
    assert len(rows) == 41 and rows[0].startswith("row,col,row_code,row_value,col_code,col_value,class")
    js = json.loads(g.save_json(tmp_path / "g.json").read_text())
    assert js["counts"]["turning_points"] == 4 and sum(c["turning_point_right"] for c in js["cells"]) == 4
    assert g.figure(tmp_path / "g.png").stat().st_size > 5000


def test_classifier_input_shape_must_match_generator():
    m = CopyDecoder(INFOGAN_LATENT)  # makes 1x1x9 images
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ConfigError, match="cannot take .*1x1x9"):
        explainability_grid(m, wrong)
    declared = ExplainedClassifier(nn.Sequential(nn.Flatten(), nn.Linear(9, 10)), image_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="reads 1x28x28 images but .* makes 1x1x9"):
        explainability_grid(m, declared)


# ============================================================================ Decision Maps
def test_decision_map_closed_form_step_and_direction():
    # latent = pixels; class 1 iff pixel 0 > 0; image pixel0 = -1.05 -> class 0 with p0 = sigmoid(1.05)
    m, clf = CopyVAE(LatentSpec(noise=2, categorical=[], continuous=0)), PixelClassifier(0)
    x = torch.tensor([[[[-1.05, 0.4]]]])
    for gradient in ("autograd", "finite"):
        dm = decision_maps(m, clf, x, gradient=gradient)
        r = dm.results[0]
        assert r.original_class == 0 and math.isclose(r.original_prob, 1 / (1 + math.exp(-1.05)), rel_tol=1e-5)
        assert r.flipped and r.new_class == 1 and math.isclose(r.step, 1.1, abs_tol=1e-6)  # -1.05 + 1.1 > 0
        assert r.original_prob_at_new < r.original_prob
        assert torch.allclose(dm.maps[0, 0], torch.tensor([1.1, 0.0]), atol=1e-5)  # only the deciding pixel moved
    up = decision_maps(m, clf, x, direction="raise").results[0]  # fig. 4.16 literally: never flips here
    assert not up.flipped and up.step is None and "no class change for λ < 10" in up.note
    raw = decision_maps(m, clf, x, normalize=False).results[0]  # thesis: raw α, |α| = p0(1-p0) ≈ 0.20
    g = (1 / (1 + math.exp(-1.05))) * (1 - 1 / (1 + math.exp(-1.05)))
    assert raw.flipped and math.isclose(raw.step, math.ceil(1.05 / g / 0.1) * 0.1, abs_tol=1e-4)


def test_decision_maps_need_an_encoder():
    gan_like = CopyDecoder(INFOGAN_LATENT)
    with pytest.raises(CapabilityError, match="Decision Maps needs a model that is Encodes.*inversion encoder"):
        decision_maps(gan_like, PixelClassifier(0), torch.zeros(1, 1, 1, 9))


# ============================================================================ nearest neighbours
def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    q, b = torch.randn(37, 20, generator=g), torch.randn(500, 20, generator=g)
    d, i = knn(q, b, k=3, chunk=16)
    ref = torch.cdist(q.double(), b.double()).topk(3, largest=False)
    assert torch.equal(i, ref.indices) and torch.allclose(d.double(), ref.values, atol=1e-5)


def test_nearest_neighbours_flags_copies():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (300, 1, 4, 4), generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, (100, 1, 4, 4), generator=g, dtype=torch.uint8)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    copies = train[:20].float() / 255.0
    nn_c = nearest_neighbours(copies, (0.0, 1.0), train, test, clf, k=2)
    assert nn_c.stats["frac_closer_pixel"] == 1.0 and nn_c.stats["frac_closer_feature"] == 1.0
    assert torch.equal(nn_c.pixel_index[:, 0], torch.arange(20)) and float(nn_c.pixel_dist[:, 0].max()) < 1e-6
    far = torch.full((20, 1, 4, 4), 5.0)  # far outside the data: never closer than a test image
    assert nearest_neighbours(far, (0.0, 1.0), train, test, clf).stats["frac_closer_pixel"] == 0.0


# ============================================================================ inversion
class LinearGAN(CopyDecoder):
    """G(z) = tanh(A z) as a 1x4x4 image in (-1, 1)."""

    value_range = (-1.0, 1.0)

    def __init__(self, latent):
        super().__init__(latent)
        self.image_shape = (1, 4, 4)
        self.A = nn.Linear(latent.dim, 16, bias=False)
        torch.nn.init.normal_(self.A.weight, std=0.5, generator=torch.Generator().manual_seed(0))

    def decode(self, z):
        return torch.tanh(self.A(z)).view(len(z), 1, 4, 4)


def test_inversion_encoder_learns_a_gan_inverse(tmp_path):
    torch.manual_seed(0)
    gan = LinearGAN(INFOGAN_LATENT)
    enc = train_inversion(gan, steps=150, batch_size=32, seed=0, channels=(16,), hidden=64, lr=3e-3)
    inv = InvertedGAN(gan, enc)
    assert isinstance(inv, Encodes) and isinstance(inv, Decodes) and isinstance(inv, Generative)
    codes = gan.latent.sample_codes(256, generator=torch.Generator().manual_seed(5))
    x = gan.decode(gan.latent.assemble(codes)).detach()
    err = reconstruction_error(inv, x)
    assert err["mse"] < 0.25 * err["mean_image_mse"], err
    refined = reconstruction_error(InvertedGAN(gan, enc, refine_steps=20), x)
    assert refined["mse"] < err["mse"]
    p = save_encoder(tmp_path / "enc.pt", enc, note="t")
    back = load_encoder(p)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), back.state_dict().values()))
    other = InversionEncoder((1, 4, 4), LatentSpec(noise=5, categorical=[4], continuous=2), (8,), 16)
    with pytest.raises(ConfigError, match="encoder: it inverts"):
        InvertedGAN(gan, other)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable inversion encoder"):
        load_encoder(tmp_path / "bad.pt")


# ============================================================================ shipped checkpoints + CLI
SHIPPED = shipped_checkpoints()
needs_shipped = pytest.mark.skipif(not {"infogan", "infovae"} <= set(SHIPPED),
                                   reason="shipped explain checkpoints not built yet")


@needs_shipped
def test_default_direction_lowers_the_class_probability_on_the_shipped_infovae():
    from xgen.data.mnist import FashionMNISTDataModule
    from xgen.explain import shipped_classifier
    from xgen.explain.decision_maps import latent_direction
    from xgen.models import load_model

    vae = load_model(SHIPPED["infovae"])
    clf = shipped_classifier()
    x, _ = FashionMNISTDataModule().load_split("test")
    x = x[:16].float() / 255.0
    with torch.no_grad():
        z = vae.encode(x).mean
        p0 = clf.probs(vae.decode(z), (0, 1))
    c = p0.argmax(1)
    alpha = latent_direction(vae, clf, z, c, (0, 1))
    d = alpha / alpha.norm(dim=1, keepdim=True)
    with torch.no_grad():
        # first order: a small step (0.01) against the gradient lowers p_c, along it raises p_c
        lower = clf.probs(vae.decode(z - 0.01 * d), (0, 1)).gather(1, c[:, None]).squeeze(1)
        higher = clf.probs(vae.decode(z + 0.01 * d), (0, 1)).gather(1, c[:, None]).squeeze(1)
    pc = p0.gather(1, c[:, None]).squeeze(1)
    moving = alpha.norm(dim=1) > 1e-3  # saturated (p_c = 1.0000) images cannot move measurably in float32
    assert moving.sum() >= 8
    assert bool((lower[moving] < pc[moving]).all()) and bool((higher[moving] > pc[moving]).all())
    dm = decision_maps(vae, clf, x)
    assert all(r.original_prob_at_new < r.original_prob for r in dm.results if r.flipped)
    assert dm.flip_fraction >= 0.8


def _err(capsys, argv):
    rc = explain_main(argv)
    return rc, capsys.readouterr().err


@needs_shipped
def test_cli_bad_inputs_are_one_line_errors(capsys, tmp_path):
    rc, err = _err(capsys, ["traverse", "--code", "cont7", "--out", str(tmp_path)])
    assert rc == 2 and err.startswith("xgen explain: error: code: 'cont7' does not exist") and err.count("\n") == 1
    rc, err = _err(capsys, ["decision-map", "--images", "9998-10000", "--out", str(tmp_path)])
    assert rc == 2 and "index 10000 is outside the dataset split (10000 images: 0..9999)" in err
    rc, err = _err(capsys, ["decision-map", "--model", "infogan", "--out", str(tmp_path)])
    assert rc == 2 and "Decision Maps needs a model that is Encodes" in err and "xgen explain invert" in err
    rc, err = _err(capsys, ["grid", "--classifier", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    assert rc == 2 and "no such file" in err
    rc, err = _err(capsys, ["nonsense"])
    assert rc == 2 and err.startswith("xgen explain: error: argument TOOL: invalid choice")


@needs_shipped
def test_cli_grid_on_shipped_infogan(capsys, tmp_path):
    assert explain_main(["grid", "--out", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 10 and out["cols"] == 10
    cells = (tmp_path / "explainability_grid.csv").read_text().splitlines()
    assert len(cells) == 101
    flags = sum(line.endswith("True") for line in cells[1:])
    assert flags == out["turning_points"]
    assert (tmp_path / "explainability_grid.png").stat().st_size > 20000


@pytest.mark.skipif("infogan-encoder" not in SHIPPED or "infogan" not in SHIPPED, reason="no shipped encoder")
def test_shipped_inversion_encoder_reconstructs_test_images(capsys, tmp_path):
    from xgen.data.mnist import FashionMNISTDataModule
    from xgen.models import load_model

    gan = load_model(SHIPPED["infogan"])
    inv = InvertedGAN(gan, load_encoder(SHIPPED["infogan-encoder"]))
    x, _ = FashionMNISTDataModule().load_split("test")
    err = reconstruction_error(inv, x[:200].float() / 127.5 - 1.0)
    assert err["mse"] < 0.5 * err["mean_image_mse"], err  # shipped: 0.030 vs 0.087 on 1000 test images
    assert explain_main(["decision-map", "--model", "infogan", "--encoder", "shipped", "--images", "0-3",
                         "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n"):])
    assert summary["images"] == 4 and summary["settings"]["model"] == "InvertedGAN"


# ============================================================================ figures say what they show
def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_decision_map_figure_has_a_row_and_a_colour_bar_per_image_and_pages(tmp_path):
    m, clf = CopyVAE(LatentSpec(noise=2, categorical=[], continuous=0)), PixelClassifier(0)
    x = torch.linspace(-1.5, -0.1, 10).view(10, 1, 1, 1).repeat(1, 1, 1, 2)
    dm = decision_maps(m, clf, x, max_step=2.0)
    fig = dm.figure()  # every image asked for: 10 rows of original, reconstruction, counterfactual, map
    try:
        panels = [ax for ax in fig.axes if ax.get_images()]
        bars = [ax for ax in fig.axes if ax.get_ylabel() == "Δ pixel value (0–1 scale)"]
        assert len(panels) == 10 * 4 and len(bars) == 10 and len(fig.axes) == 50
        assert [ax.get_xlabel().split(" (")[0] for ax in panels[::4]] == [f"test #{i}" for i in range(10)]
        assert "all 10 images" in fig._suptitle.get_text()
    finally:
        _close(fig)
    pages = dm.figures(tmp_path / "dm.png", per_page=6)
    assert [p.name for p in pages] == ["dm_page1of2.png", "dm_page2of2.png"]
    assert "images 7-10 of 10" in __import__("PIL.Image", fromlist=["Image"]).open(pages[1]).text["Title"]
    assert [p.name for p in dm.figures(tmp_path / "one.png", per_page=10)] == ["one.png"]


def test_interpolation_rows_say_a_to_b_not_a_path_index():
    m = CopyDecoder(LatentSpec(noise=3, categorical=[], continuous=0))
    t = interpolate(m, torch.zeros(3), torch.ones(3), steps=4)
    assert t.row_axis == "" and t.row_values == ["a → b"] and t.col_axis.startswith("t (linear interpolation: 0 = latent a")
    fig = t.figure()
    try:
        (ax,) = fig.axes
        assert ax.get_ylabel() == "" and [lab.get_text() for lab in ax.get_yticklabels()] == ["a → b"]
        assert [lab.get_text() for lab in ax.get_xticklabels()] == ["0", "0.33", "0.67", "1"]
    finally:
        _close(fig)


def test_concept_latents_are_the_most_confident_draws_of_the_named_class():
    from xgen.explain.traversals import concept_latents

    m = CopyDecoder(LatentSpec(noise=3, categorical=[], continuous=0))
    clf = ExplainedClassifier(PixelClassifier(0, scale=4.0), class_names=["low", "high"])
    groups, info = concept_latents(m, clf, {"a": "high", "b": "0"}, per_concept=3, bank=50, seed=2)
    bank = m.latent.sample(50, generator=torch.Generator().manual_seed(2))
    # class high iff pixel 0 > 0; its probability rises with pixel 0: the 3 largest / 3 smallest draws
    assert torch.equal(groups["a"], bank[bank[:, 0].argsort(descending=True)[:3]])
    assert torch.equal(groups["b"], bank[bank[:, 0].argsort()[:3]])
    assert info["a"]["class"] == "high" and info["b"]["class"] == "low"
    assert info["a"]["draws_of_class"] + info["b"]["draws_of_class"] == 50
    a = latent_arithmetic(m, groups, {"a": 1.0, "b": -1.0}, n=5, noise_std=0.0, group_titles={"a": "high", "b": "low"})
    read = a.classify(clf)
    assert read["groups"] == {"a": ["high"] * 3, "b": ["low"] * 3} and read["results"] == ["high"] * 5
    assert a.expression() == "high − low"
    assert torch.allclose(a.mean_images["a"].flatten(), groups["a"].mean(0))
    fig = a.figure()
    try:  # one row per concept (3 samples + decode(mean)) and the 5 results
        assert len([ax for ax in fig.axes if ax.get_images()]) == 4 + 4 + 5
        assert fig.axes[0].get_ylabel() == "+1 × a\nhigh"
    finally:
        _close(fig)
    with pytest.raises(ConfigError, match=r"--concept: 'boot' is not a class of the classifier; its classes are 0=low, 1=high"):
        concept_latents(m, clf, {"a": "boot"}, bank=10)
    with pytest.raises(ConfigError, match=r"only \d+ of 4 prior draws are classified as high, 5 needed"):
        concept_latents(m, clf, {"a": "high"}, per_concept=5, bank=4)


@needs_shipped
def test_cli_arithmetic_on_named_classes(capsys, tmp_path):
    argv = ["arithmetic", "--concept", "a=Pullover", "--concept", "b=t-shirt/top", "--concept", "c=3",
            "--bank", "256", "--out", str(tmp_path)]
    assert explain_main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["expression"] == "Pullover − T-shirt/top + Dress"
    assert out["classifier_reads"]["groups"] == {"a": ["Pullover"] * 3, "b": ["T-shirt/top"] * 3, "c": ["Dress"] * 3}
    assert all(p > 0.5 for g in out["groups"].values() for p in g["probabilities"])
    assert len(out["classifier_reads"]["results"]) == 9 and (tmp_path / "arithmetic.png").is_file()


@needs_shipped
def test_cli_titles_name_both_axes_and_decision_map_pages(capsys, tmp_path):
    from PIL import Image

    assert explain_main(["traverse", "--by", "cat0", "--code", "cont1", "--steps", "3", "--out", str(tmp_path)]) == 0
    title = Image.open(tmp_path / "grid_cat0_cont1.png").text["Title"]
    assert title.startswith("InfoGAN (shipped infogan, fashion_mnist): cat0 (categorical code 0) down by cont1 (continuous code 1) "
                            "across over [-2, 2]"), title
    capsys.readouterr()
    assert explain_main(["decision-map", "--images", "0-2", "--figure-rows", "2", "--max-step", "3",
                         "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n"):])
    assert summary["images"] == 3 and [Path(p).name for p in summary["figures"]] == \
        ["decision_maps_page1of2.png", "decision_maps_page2of2.png"]
    assert "figure: all 3 images, 2 page(s) of up to 2 rows" in out
    # every decision map comes with its counterfactual numbers (issue 24)
    sc = summary["scores (mean over images; xgen explain evaluate for baselines)"]
    assert sc["l2"] > sc["l2_to_reconstruction"] >= 0 and 0 < sc["sparsity"] <= 1 and 0 <= sc["valid"] <= 1
