"""Decision maps "as class k" and the Explainability Grid's class rows, on a conditional model whose
answers are known in closed form.

``Bars`` draws class k as a bright vertical band at columns 2k..2k+1 (plus a brightness set by the
noise unit), and its encoder reads the band back; the classifier reads the brightest band. So swapping
the class code to k must (1) be read as k by the classifier every time, (2) change exactly the two
bands (map = +1 on band k, -1 on the band read) and (3) leave the brightness alone. A copy whose
decoder ignores the class (always band 0) must score 0 hits.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xgen.errors import ConfigError
from xgen.explain.class_swap import class_swap
from xgen.explain.grids import explainability_grid
from xgen.latent import LatentSpec
from xgen.protocols import CapabilityError, Conditional, Posterior

K = 4


class Bars(nn.Module):
    """A conditional encoder/decoder pair with a known answer (value range [0, 1], 1×8×8 images)."""

    class_code, num_classes = 0, K
    value_range, image_shape = (0.0, 1.0), (1, 8, 8)

    def __init__(self, ignore_class: bool = False):
        super().__init__()
        self.latent = LatentSpec(noise=1, categorical=[K], continuous=0)
        self.ignore_class = ignore_class
        self.w = nn.Parameter(torch.zeros(1))  # a parameter, so the tools find the device

    def decode(self, z):
        onehot = z[:, 1:1 + K]
        if self.ignore_class:
            onehot = torch.zeros_like(onehot)
            onehot[:, 0] = 1.0
        bright = 0.1 + 0.1 * torch.sigmoid(z[:, :1])                      # (B, 1) in (0.1, 0.2)
        bands = onehot.repeat_interleave(2, dim=1)                         # (B, 8): columns 2k, 2k+1
        img = bright[:, :, None] + 0.7 * bands[:, None, :]                 # (B, 1, 8) -> every row alike
        return img.expand(-1, 8, -1)[:, None]

    def encode(self, x):
        cols = x[:, 0].mean(1)                                              # (B, 8)
        band = cols.view(-1, K, 2).mean(2)                                  # (B, K)
        bright = cols.min(1).values
        noise = torch.logit(((bright - 0.1) / 0.1).clamp(1e-4, 1 - 1e-4))[:, None]
        z = torch.cat([noise, nn.functional.one_hot(band.argmax(1), K).float()], 1)
        return Posterior(z, torch.full_like(z, -20.0))

    def embed(self, x):
        return self.encode(x).mean

    def sample_latent(self, n, generator=None):
        return self.latent.sample(n, generator=generator)

    def generate(self, latent_or_n, generator=None):
        z = self.sample_latent(latent_or_n, generator) if isinstance(latent_or_n, int) else latent_or_n
        return self.decode(z)

    def latent_for_class(self, labels, generator=None):
        codes = self.latent.sample_codes(len(labels), generator=generator)
        codes.categorical[:, 0] = torch.as_tensor(labels)
        return self.latent.assemble(codes)


class BandReader(nn.Module):
    """Logits: 20 × the mean brightness of each band (the brightest band wins)."""

    def forward(self, x):
        return 20.0 * x[:, 0].mean(1).view(-1, K, 2).mean(2)


def _images(model, labels):
    return model.decode(model.latent_for_class(torch.tensor(labels), torch.Generator().manual_seed(0)))


def test_swapping_the_class_code_gives_the_class_and_only_its_bands_change():
    model, labels = Bars(), [0, 1, 2, 3, 1, 2]
    assert isinstance(model, Conditional)
    x = _images(model, labels)
    cs = class_swap(model, BandReader(), x, labels=labels, indices=list(range(10, 16)))
    s = cs.summary()
    assert s["swaps"] == len(labels) * (K - 1)  # every target except the class read
    assert s["hit_rate"] == 1.0 and all(v == 1.0 for v in s["hit_rate_per_target"].values())
    assert s["encoder_reads_label"] == 1.0 and s["reconstruction_keeps_class"] == 1.0
    for i, lab in enumerate(labels):
        for k in range(K):
            want = torch.zeros(8)
            want[2 * k:2 * k + 2] += 0.7
            want[2 * lab:2 * lab + 2] -= 0.7
            assert torch.allclose(cs.maps[i, k], want.expand(8, 8), atol=1e-5), (i, k)
    # two bands of 2 columns (4 of the 8 columns) change in a real swap: sparsity 0.5, mean |map| 0.7 * 0.5
    assert s["sparsity"] == pytest.approx(0.5) and s["mean_abs_map"] == pytest.approx(0.35, abs=1e-4)
    rec = cs.records()
    assert len(rec) == len(labels) * K and rec[0]["index"] == 10
    assert sum(r["hit"] for r in rec if r["target"] != r["encoded_class"]) == s["swaps"]


def test_a_decoder_that_ignores_the_class_scores_no_hits():
    model = Bars(ignore_class=True)
    x = _images(Bars(), [1, 2, 3])           # real images of classes 1..3
    cs = class_swap(model, BandReader(), x, targets=[1, 2, 3], labels=[1, 2, 3])
    s = cs.summary()
    assert s["hit_rate"] == 0.0 and s["reconstruction_keeps_class"] == 0.0
    assert s["encoder_reads_label"] == 1.0    # the encoder read the label; the decoder dropped it
    assert float(cs.maps.abs().max()) == 0.0  # the class code changes nothing


def test_class_swap_refuses_what_it_cannot_do():
    x = _images(Bars(), [0, 1])
    with pytest.raises(ConfigError, match="classes 0..3"):
        class_swap(Bars(), BandReader(), x, targets=[4])

    class Unconditional(nn.Module):  # encodes and decodes, but no class code
        def __init__(self):
            super().__init__()
            self.bars = Bars()
            self.encode, self.decode, self.embed = self.bars.encode, self.bars.decode, self.bars.embed
            self.value_range = self.bars.value_range

    with pytest.raises(CapabilityError, match=r"is Conditional .* \(model=acgan, cgan or ss_infogan\)"):
        class_swap(Unconditional(), BandReader(), x)


def test_the_grid_names_class_rows_and_counts_the_class_asked_for(tmp_path):
    names = ["zero", "one", "two", "three"]
    from xgen.explain.common import as_classifier

    g = explainability_grid(Bars(), as_classifier(BandReader(), class_names=names), col_axis="z0", steps=5)
    assert g.asked == [0, 1, 2, 3] and g.row_names[1] == "class 1: one"
    n = g.counts()
    assert n["cells_asked_class"] == 1.0 and n["rows_asked_class"] == 4 and n["rows_missing_asked_class"] == []
    bad = explainability_grid(Bars(ignore_class=True), as_classifier(BandReader(), class_names=names),
                              col_axis="z0", steps=5).counts()
    assert bad["cells_asked_class"] == 0.25 and bad["rows_missing_asked_class"] == ["class 1: one", "class 2: two",
                                                                                  "class 3: three"]
    assert g.records()[7]["asked_class"] == 1 and g.records()[7]["is_asked_class"]
    assert g.figure(tmp_path / "grid.png").stat().st_size > 0


def test_an_inverted_conditional_gan_keeps_the_contract():
    from xgen.explain.inversion import InversionEncoder, InvertedGAN
    from xgen.models import ACGAN, InfoGAN

    small = dict(generator={"_target_": "xgen.nets.gan.ConvGenerator", "channels": [16, 8]},
                 discriminator={"_target_": "xgen.nets.gan.ConvDiscriminator", "channels": [8, 16]})
    gan = ACGAN(**small).eval()
    inv = InvertedGAN(gan, InversionEncoder(gan.image_shape, gan.latent, channels=(8, 16), hidden=32).eval())
    assert isinstance(inv, Conditional) and inv.class_code == 0 and inv.num_classes == 10
    z = inv.latent_for_class([4, 2], torch.Generator().manual_seed(0))
    assert gan.latent.split(z).categorical[:, 0].tolist() == [4, 2]
    x = gan.generate_class([0, 1, 2])
    cs = class_swap(inv, nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)), x, targets=[5, 6])
    assert cs.swapped.shape == (3, 2, 1, 28, 28) and cs.maps.shape == (3, 2, 28, 28)
    plain = InfoGAN(generator=small["generator"], discriminator=small["discriminator"]).eval()
    inv_plain = InvertedGAN(plain, InversionEncoder(plain.image_shape, plain.latent, channels=(8, 16), hidden=32))
    assert not isinstance(inv_plain, Conditional)
