"""KGAN: the balanced partition (xgen.models.partition), routing of batch images to their member, k = 1 against xgen.models.GAN,
generation, checkpoints and the errors for bad k."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from xgen.errors import ConfigError, DataError
from xgen.models.kgan import KGAN, ImageIndex, to_uint8
from xgen.models.partition import balanced_assignment, capacities, check_k, kmeans_partition
from xgen.protocols import Adversarial, Generative

G_NET = {"_target_": "xgen.nets.kgan.KGANGenerator", "channels": [8, 8, 4]}
D_NET = {"_target_": "xgen.nets.kgan.KGANDiscriminator", "channels": [4, 8]}


def tiny(k: int = 3, loss: str = "bce", **kw) -> KGAN:
    return KGAN(image_shape=(1, 8, 8), k=k, latent={"noise": 6}, generator=G_NET, discriminator=D_NET, loss=loss, **kw)


def digits(n: int = 60, batch_size: int = 20):
    from xgen.data import DigitsDataModule

    return DigitsDataModule(size=8, batch_size=batch_size, train_subset=n, seed=0)


def trainer(**kw) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    args.update(kw)
    return L.Trainer(**args)


def members_of(assign: torch.Tensor, k: int) -> list[list[int]]:
    return [sorted((assign == j).nonzero().flatten().tolist()) for j in range(k)]


# ----------------------------------------------------------------------------- partition
@pytest.mark.parametrize("n,k", [(100, 3), (61, 4), (7, 7), (5, 1)])
def test_balanced_assignment_is_a_partition_with_equal_parts(n, k):
    score = torch.randn(n, k, generator=torch.Generator().manual_seed(n + k))
    a = balanced_assignment(score)
    parts = members_of(a, k)
    assert sorted(i for p in parts for i in p) == list(range(n))  # disjoint and covering
    assert sorted(len(p) for p in parts) == sorted(capacities(n, k).tolist())
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


def test_balanced_assignment_recovers_a_planted_partition_and_is_near_optimal():
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(0)
    n, k = 90, 3
    truth = torch.randperm(n, generator=g) % k
    score = torch.randn(n, k, generator=g) * 0.3
    score[torch.arange(n), truth] += 2.0
    assert torch.equal(balanced_assignment(score, standardise=False), truth)
    # random scores: the total score against the exact optimum (Hungarian on members repeated to capacity)
    score = torch.randn(n, k, generator=g)
    cols = torch.repeat_interleave(torch.arange(k), capacities(n, k))
    r, c = linear_sum_assignment(-score[:, cols].numpy())
    best = float(score[torch.as_tensor(r), cols[torch.as_tensor(c)]].sum())
    a = balanced_assignment(score, standardise=False, eps=0.01, iters=1000)
    got = float(score[torch.arange(n), a].sum())
    assert got <= best + 1e-9 and got >= 0.97 * best, (got, best)


def test_kmeans_partition_finds_separated_blobs():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(60) % 3
    x = centres[truth] + torch.randn(60, 2, generator=g)
    a = kmeans_partition(x, 3, seed=0)
    for j in range(3):  # each part is exactly one blob (up to relabelling)
        assert len(set(truth[a == j].tolist())) == 1 and int((a == j).sum()) == 20


def test_bad_k_is_a_clear_error():
    for k in (0, -2, 2.5):
        with pytest.raises(ConfigError, match="model.k: .* integer >= 1"):
            tiny(k=k)
    with pytest.raises(ConfigError, match="model.k: 4 generators for 3 training images"):
        check_k(4, 3)
    with pytest.raises(ConfigError, match="4 generators for 3 training images"):
        kmeans_partition(torch.randn(3, 5), 4)
    # and in a fit: more members than training images stops before the first step
    model = tiny(k=4)
    with pytest.raises(ConfigError, match="model.k: 4 generators for 3 training images"):
        trainer(max_steps=1).fit(model, datamodule=digits(n=3, batch_size=2))


def test_image_index_finds_batch_images_by_content():
    dm = digits(n=200)
    x, _ = dm.split("train")
    index = ImageIndex(x)
    from xgen.data import to_value_range

    pick = torch.tensor([5, 0, 199, 42, 42])
    batch = to_value_range(x[pick], (-1.0, 1.0))  # what the loader hands a tanh model
    found = index.lookup(to_uint8(batch, (-1.0, 1.0)))
    assert torch.equal(x[found], x[pick])  # the same pixels (duplicates resolve to one copy)
    foreign = torch.full((1, *x.shape[1:]), 7, dtype=torch.uint8)
    with pytest.raises(DataError, match="not in the data module's training split"):
        index.lookup(foreign)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("loss", ["bce", "wgan_gp", "wgan"])
def test_k1_reproduces_a_plain_gan_step(loss):
    """Same seed, same nets and loss: after two training steps every parameter of KGAN(k=1) equals the
    matching parameter of xgen.models.GAN."""
    from xgen.models import GAN

    def fit(make):
        torch.manual_seed(0)
        model = make()
        torch.manual_seed(1)
        trainer(max_steps=2).fit(model, datamodule=digits(n=60, batch_size=20))
        return model

    gan = fit(lambda: GAN(image_shape=(1, 8, 8), latent={"noise": 6, "categorical": [], "continuous": 0},
                          generator=G_NET, discriminator=D_NET, loss=loss, lr_g=1e-4, lr_d=1e-4,
                          betas_g=(0.5, 0.9), betas_d=(0.5, 0.9)))
    kgan = fit(lambda: tiny(k=1, loss=loss))
    pairs = [(gan.generator, kgan.generators[0]), (gan.discriminator, kgan.discriminators[0])]
    for a, b in pairs:
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    init = tiny(k=1, loss=loss)  # and the step did change them
    assert not torch.equal(init.generators[0].fc.weight, kgan.generators[0].fc.weight)


def test_each_member_learns_only_from_its_own_images():
    """A partition that gives member 0 every image: members 1 and 2 never receive data, so neither
    their discriminator nor their generator moves; member 0 does."""
    dm = digits(n=60, batch_size=20)
    torch.manual_seed(0)
    model = tiny(k=3, partition={"update": "none"})
    model.assignment = torch.zeros(60, dtype=torch.long)
    before = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    trainer(max_steps=3).fit(model, datamodule=dm)
    after = model.state_dict()
    for j, moved in ((0, True), (1, False), (2, False)):
        for net in ("generators", "discriminators"):
            keys = [k for k in before if k.startswith(f"{net}.{j}.") and "num_batches" not in k]
            changed = any(not torch.equal(before[k], after[k]) for k in keys)
            assert changed == moved, (net, j)


@pytest.mark.parametrize("update", ["generator", "critic"])
def test_partition_is_built_updated_logged_and_checkpointed(tmp_path, update):
    from xgen.models import load_model

    dm = digits(n=60, batch_size=20)
    torch.manual_seed(0)
    model = tiny(k=3, partition={"every_n_epochs": 1, "start_epoch": 1, "update": update, "samples_per_member": 50})
    t = trainer(max_epochs=2, default_root_dir=str(tmp_path))
    t.fit(model, datamodule=dm)
    assert [(e["epoch"], e["how"]) for e in model.partition_log] == [(0, "kmeans"), (1, update)]
    assert all(e["sizes"] == [20, 20, 20] for e in model.partition_log)
    assert model.partition_sizes().tolist() == [20, 20, 20]
    # the critic update is what the rule says: balanced_assignment of the critics' scores at that time
    path = tmp_path / "k.ckpt"
    t.save_checkpoint(path)
    loaded = load_model(path)
    assert isinstance(loaded, KGAN) and torch.equal(loaded.assignment, model.assignment)
    assert loaded.partition_log == model.partition_log
    model.eval()
    z = model.sample_latent(12, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(loaded.generate(z), model.generate(z))


class Constant(nn.Module):
    """A generator that draws one fixed image whatever its input."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, z):
        return torch.full((z.shape[0], 1, 8, 8), self.value)


def test_generator_update_sends_each_image_to_the_generator_that_draws_it():
    """Three kinds of image (dark, grey, bright, with pixel noise) and three generators that each draw one
    kind: the generator transport cost puts every image with its own generator, parts stay balanced."""
    g = torch.Generator().manual_seed(0)
    kind = torch.randperm(30, generator=g) % 3
    levels = torch.tensor([30.0, 128.0, 225.0])
    images = (levels[kind].view(-1, 1, 1, 1) + 12 * torch.randn(30, 1, 8, 8, generator=g)).clamp(0, 255).round()
    images = images.to(torch.uint8)
    model = tiny(k=3, partition={"samples_per_member": 20, "neighbours": 3})
    order = [2, 0, 1]  # member j draws kind order[j]
    model.generators = nn.ModuleList([Constant(float(levels[order[j]]) / 127.5 - 1) for j in range(3)])
    costs = model.generator_costs(images)
    assert costs.shape == (30, 3)
    expected = torch.tensor([order.index(int(c)) for c in kind])
    assert torch.equal(costs.argmin(1), expected)
    assert torch.equal(model.generator_partition(images), expected)


def test_generation_routes_each_latent_to_its_member():
    model = tiny(k=3).eval()
    assert isinstance(model, Generative) and not isinstance(model, Adversarial)
    assert model.latent.dim == 6 + 3 and model.latent.categorical == [3]
    z = model.sample_latent(30, generator=torch.Generator().manual_seed(0))
    members = z[:, 6:].argmax(1)
    assert set(members.tolist()) == {0, 1, 2}
    with torch.no_grad():
        out = model.generate(z)
        for j in range(3):
            m = members == j
            assert torch.allclose(out[m], model.generators[j](z[m, :6]))
    assert out.shape == (30, 1, 8, 8) and float(out.min()) >= -1 and float(out.max()) <= 1
    # by partition size: a member with no data is never drawn
    model.member_sampling = "partition"
    model.assignment = torch.tensor([0] * 10 + [2] * 30)
    drawn = model.members_of(model.sample_latent(400, generator=torch.Generator().manual_seed(0)))
    counts = torch.bincount(drawn, minlength=3)
    assert counts[1] == 0 and 70 < counts[0] < 130  # ~ 400·10/40 = 100


def test_the_fid_sampler_reads_a_kgan_unchanged():
    """xgen.metrics.quality.generate_images (the FID callback's and `xgen eval`'s sampler) draws a KGAN's
    members through Generative alone: seeded, every member used, images in the value range."""
    from xgen.metrics.quality import generate_images

    model = tiny(k=3)
    a = generate_images(model, 30, batch_size=8, seed=5)
    b = generate_images(model, 30, batch_size=8, seed=5)
    assert a.shape == (30, 1, 8, 8) and torch.equal(a, b) and model.training  # mode restored
    g = torch.Generator().manual_seed(5)
    members = torch.cat([model.members_of(model.sample_latent(min(8, 30 - i), generator=g)) for i in range(0, 30, 8)])
    assert set(members.tolist()) == {0, 1, 2}


def test_kgan_load_from_checkpoint_goes_through_safe_loading(tmp_path):
    """KGAN.load_from_checkpoint is xgen's safe loader: a saved k-GAN comes back equal; a crafted file
    whose hyperparameters name code to run, or whose weights are not finite, is refused before anything
    is imported or built."""
    from xgen.checkpoint.safety import add_digest

    torch.manual_seed(0)
    m = KGAN(image_shape=[1, 8, 8], k=2, latent={"noise": 4})
    ck = {"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams), "xgen_class": "xgen.models.kgan.KGAN"}
    add_digest(ck)
    good = tmp_path / "kgan.ckpt"
    torch.save(ck, good)
    back = KGAN.load_from_checkpoint(good)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values())
               if isinstance(a, torch.Tensor))
    evil = dict(ck, hyper_parameters={**ck["hyper_parameters"], "generator": {"_target_": "os.system",
                                                                                "command": "touch /tmp/pwned"}})
    add_digest(evil)
    torch.save(evil, tmp_path / "evil.ckpt")
    with pytest.raises(ConfigError, match="os.system"):
        KGAN.load_from_checkpoint(tmp_path / "evil.ckpt")
    sd = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in ck["state_dict"].items()}
    k0 = next(k for k, v in sd.items() if isinstance(v, torch.Tensor) and v.is_floating_point())
    sd[k0].view(-1)[0] = float("nan")
    nan = dict(ck, state_dict=sd)
    add_digest(nan)
    torch.save(nan, tmp_path / "nan.ckpt")
    with pytest.raises(ConfigError, match="NaN or inf"):
        KGAN.load_from_checkpoint(tmp_path / "nan.ckpt")
