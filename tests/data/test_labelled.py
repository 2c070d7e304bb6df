"""The labelled subset semi-supervised models read: reproducible, balanced, inside the training split,
nested across sizes, the same under DDP (each process its share), and invisible to evaluation."""

from __future__ import annotations

import pytest
import torch

from xgen.data import DigitsDataModule
from xgen.data.base import TensorBatches
from xgen.data.labelled import UNLABELLED, labelled_subset
from xgen.errors import ConfigError


def _dm(**kw) -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64, repeat=1, **kw)
    dm.setup()
    return dm


def test_the_subset_is_balanced_reproducible_and_nested():
    dm = _dm(labels_per_class=7, seed=3)
    y = dm.split("train")[1]
    idx = dm.labelled_indices()
    assert torch.bincount(y[idx], minlength=10).tolist() == [7] * 10
    assert torch.equal(idx, _dm(labels_per_class=7, seed=3).labelled_indices())  # same seed: same images
    assert not torch.equal(idx, _dm(labels_per_class=7, seed=4).labelled_indices())
    # a larger subset of the same seed keeps the smaller one's images (10 per class among 60)
    assert set(idx.tolist()) <= set(_dm(labels_per_class=20, seed=3).labelled_indices().tolist())
    frac = _dm(label_fraction=0.1, seed=3)
    counts = torch.bincount(y, minlength=10)
    assert torch.bincount(y[frac.labelled_indices()], minlength=10).tolist() == \
        [int(round(0.1 * int(c))) for c in counts]


def test_labels_never_come_from_validation_or_test_and_evaluation_keeps_every_label():
    plain, semi = _dm(seed=1), _dm(labels_per_class=5, seed=1)
    for split in ("train", "val", "test"):  # the splits themselves are the unsupervised ones
        assert torch.equal(plain.split(split)[0], semi.split(split)[0])
        assert torch.equal(plain.split(split)[1], semi.split(split)[1])
        assert torch.equal(plain.factors(split), semi.factors(split))
    idx = semi.labelled_indices()
    assert int(idx.max()) < semi.split("train")[0].shape[0]
    # training batches: the stream is unlabelled, the appended images carry their true training labels
    x_train, y_train = semi.split("train")
    seen = 0
    for x, y in semi.train_dataloader():
        assert x.shape[0] == 64 + semi.labelled_batch_size
        assert bool((y[:64] == UNLABELLED).all())
        tail = y[64:]
        assert bool((tail >= 0).all())
        # every appended image is one of the labelled training images, with its own label
        flat = x_train[idx].flatten(1).float() / 255
        for img, lab in zip(x[64:], tail):
            match = ((flat - img.flatten()[None]).abs().amax(1) < 1e-6).nonzero().flatten()
            assert match.numel() >= 1 and int(y_train[idx][match[0]]) == int(lab)
            seen += 1
    assert seen > 0
    # validation and test batches are untouched
    xv, yv = next(iter(semi.val_dataloader()))
    assert bool((yv >= 0).all()) and xv.shape[0] == min(semi.eval_batch_size, semi.split("val")[0].shape[0])


def test_plain_data_modules_are_unchanged():
    dm = _dm(seed=2)
    assert not dm.semi_supervised
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[0] == 64 and bool((y >= 0).all())


def test_zero_labels_give_batches_without_labels():
    dm = _dm(labels_per_class=0, seed=2)
    assert dm.labelled_indices().numel() == 0
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[0] == 64 and bool((y == UNLABELLED).all())


def test_under_ddp_each_process_draws_from_its_own_share():
    dm = _dm(labels_per_class=6, seed=5)
    x, _ = dm.split("train")
    idx = dm.labelled_indices()
    labels = dm.split("train")[1]
    drawn = []
    for rank in range(2):
        keep = idx[rank::2]
        batches = TensorBatches(x, dm.train_labels(), 32, shuffle=True, drop_last=True, value_range=(0, 1),
                                seed=5, rank=rank, world_size=2, labelled=(keep, labels[keep]),
                                labelled_batch_size=8)
        tails = torch.cat([b[1][32:] for b in batches])
        assert len(batches) == (x.shape[0] // 2) // 32 and tails.numel() == len(batches) * 8
        drawn.append(set(keep.tolist()))
    assert drawn[0].isdisjoint(drawn[1]) and drawn[0] | drawn[1] == set(idx.tolist())


def test_bad_requests_name_the_key():
    with pytest.raises(ConfigError, match="labels_per_class or data.label_fraction, not both"):
        DigitsDataModule(labels_per_class=5, label_fraction=0.1)
    with pytest.raises(ConfigError, match="label_fraction"):
        DigitsDataModule(label_fraction=1.5)
    with pytest.raises(ConfigError, match="class 3 has only 2 training images"):
        labelled_subset(torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]), per_class=3, num_classes=4)
