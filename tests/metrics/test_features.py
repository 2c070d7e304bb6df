"""Feature extractors: input conversion done by xgen, weight files (shipped, stand-in, missing, corrupt)."""

from __future__ import annotations

import pytest
import torch

from xgen.errors import ConfigError
from xgen.metrics.features import (ClassifierExtractor, InceptionExtractor, WeightsError, build_extractor,
                                   shipped_classifier_path, to_unit, write_classifier_weights,
                                   write_standin_inception_weights)
from xgen.nets.classifier import StrongCNN, ThesisCNN


@pytest.fixture(scope="module")
def standin_inception(tmp_path_factory):
    """Random weights in the exact format of torch-fidelity's FID Inception-v3 (no download needed)."""
    return write_standin_inception_weights(tmp_path_factory.mktemp("w") / "inception-standin.pth", seed=0)


@pytest.fixture(scope="module")
def inception(standin_inception):
    return InceptionExtractor(standin_inception)


@pytest.fixture()
def tiny_classifier_file(tmp_path):
    torch.manual_seed(0)
    return write_classifier_weights(tmp_path / "clf.pt", ThesisCNN(), "thesis", (1, 28, 28), 10,
                                    {"hidden": 75, "dropout": 0.2}, dataset="unit")


def test_to_unit_handles_uint8_and_float_ranges():
    u = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    torch.testing.assert_close(to_unit(u), torch.tensor([0.0, 0.2, 1.0]).view(1, 1, 1, 3))
    f = torch.tensor([-1.0, 0.0, 1.0, 1.5]).view(1, 1, 1, 4)
    torch.testing.assert_close(to_unit(f, (-1, 1)), torch.tensor([0.0, 0.5, 1.0, 1.0]).view(1, 1, 1, 4))
    with pytest.raises(TypeError, match="uint8 or floating"):
        to_unit(torch.zeros(1, 1, 2, 2, dtype=torch.int32))


def test_inception_tiles_grayscale_and_converts_ranges_itself(inception):
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=g)
    prepared = inception.prepare(to_unit(u8))
    assert prepared.dtype == torch.uint8 and prepared.shape == (2, 3, 28, 28)
    assert torch.equal(prepared[:, 0], u8[:, 0]) and torch.equal(prepared[:, 2], u8[:, 0])
    # the same images as float in (0, 1), float in (-1, 1), or RGB with equal channels: the network gets
    # exactly the same uint8 input, hence the same features
    for images, vr in ((u8.double() / 255, (0.0, 1.0)), (u8.float() / 127.5 - 1, (-1.0, 1.0)),
                       (u8.expand(-1, 3, -1, -1), (0.0, 1.0))):
        assert torch.equal(inception.prepare(to_unit(images, vr)), prepared)
    out = inception.extract(u8[:1])
    assert out.features.shape == (1, 2048) and out.logits.shape == (1, 1008)
    torch.testing.assert_close(out.features, inception.net(prepared[:1])[0])


def test_inception_weights_hash_is_part_of_the_cache_key(tmp_path, standin_inception, inception):
    other = InceptionExtractor(write_standin_inception_weights(tmp_path / "other.pth", seed=1))
    assert inception.cache_key.startswith("inception-") and other.cache_key != inception.cache_key


def test_inception_missing_or_corrupt_weights_name_the_file(tmp_path, monkeypatch):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=r"nope\.pth: Inception-v3 weight file not found"):
        InceptionExtractor(missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a torch file" * 100)
    with pytest.raises(WeightsError, match=r"corrupt\.pth: not a valid torch-fidelity Inception-v3 weight file"):
        InceptionExtractor(corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match=r"wrong\.pth: not a valid"):
        InceptionExtractor(wrong)
    monkeypatch.setenv("XGEN_INCEPTION_WEIGHTS", str(missing))
    with pytest.raises(WeightsError, match=r"nope\.pth"):
        build_extractor("inception")


def test_classifier_extractor_features_are_the_penultimate_layer(tiny_classifier_file):
    ext = ClassifierExtractor(tiny_classifier_file)
    x = torch.rand(5, 1, 28, 28)
    out = ext.extract(x, (0.0, 1.0))
    assert out.features.shape == (5, 75) and out.logits.shape == (5, 10)
    net = ext.net
    torch.testing.assert_close(out.features, torch.relu(net.fc1(net.pool(torch.relu(net.conv2(
        net.pool(torch.relu(net.conv1(x)))))).flatten(1))))
    torch.testing.assert_close(out.logits, net.fc2(out.features))  # dropout off: eval mode
    assert ext.name == "classifier_thesis_unit" and ext.num_features == 75
    ext.train()
    assert not ext.training  # an extractor never leaves eval mode


def test_classifier_extractor_rejects_a_wrong_image_size(tiny_classifier_file):
    ext = ClassifierExtractor(tiny_classifier_file)
    with pytest.raises(ValueError, match=r"trained on 1x28x28 images, got 1x32x32.*extractor=inception"):
        ext.extract(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels"):
        ext.extract(torch.rand(2, 2, 28, 28))


def test_classifier_missing_corrupt_or_foreign_weight_files(tmp_path):
    with pytest.raises(WeightsError, match=r"absent\.pt: classifier weight file not found.*train_classifiers"):
        ClassifierExtractor(tmp_path / "absent.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 50)
    with pytest.raises(WeightsError, match=r"bad\.pt: cannot read the classifier weight file"):
        ClassifierExtractor(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(WeightsError, match=r"foreign\.pt: not an xgen classifier weight file"):
        ClassifierExtractor(foreign)
    misfit = write_classifier_weights(tmp_path / "misfit.pt", StrongCNN(), "thesis", (1, 28, 28), 10)
    with pytest.raises(WeightsError, match=r"misfit\.pt: the state_dict does not fit a thesis network"):
        ClassifierExtractor(misfit)


def test_unknown_extractor_name():
    with pytest.raises(ConfigError, match="unknown feature extractor 'vgg'"):
        build_extractor("vgg")


@pytest.mark.parametrize("dataset,arch", [("fashion_mnist", "thesis"), ("fashion_mnist", "strong"),
                                          ("digits", "thesis"), ("digits", "strong")])
def test_shipped_classifier_weights_load_and_are_small(dataset, arch):
    path = shipped_classifier_path(dataset, arch)
    assert path.is_file(), f"{path} is not shipped; run scripts/train_classifiers.py"
    assert path.stat().st_size < 450_000
    ext = build_extractor("classifier", dataset=dataset, arch=arch)
    assert ext.record["test_acc"] > (0.9 if dataset == "fashion_mnist" else 0.95)
    assert ext.record["command"].startswith("xgen ")
    assert ext.extract(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).features.shape == (3, ext.num_features)


@pytest.mark.slow
def test_inception_fid_equals_torchmetrics_with_the_same_weights(standin_inception, inception):
    """xgen's inception path (conversion + torch-fidelity network + FID) against torchmetrics' FID."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from xgen.metrics.fid import SingularCovarianceWarning, fid

    g = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=g)
    fake = (torch.rand(3, 1, 28, 28, generator=g) * 2 - 1)  # a tanh generator's range (3 images: FID needs 2)
    with pytest.warns(SingularCovarianceWarning):  # 3 samples for 2048 dimensions
        ours = fid(inception.extract(real).features, inception.extract(fake, (-1.0, 1.0)).features)
    tm = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(standin_inception),
                                  antialias=False)
    tm.update(real.expand(-1, 3, -1, -1), real=True)
    tm.update(((fake + 1) / 2 * 255).round().to(torch.uint8).expand(-1, 3, -1, -1), real=False)
    assert ours == pytest.approx(float(tm.compute()), rel=1e-3, abs=1e-9)
