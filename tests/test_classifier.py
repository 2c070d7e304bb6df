"""The Classifier LightningModule, its configs, the shipped weights and their bit-for-bit retraining."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xgen.errors import ConfigError
from xgen.models import Classifier
from xgen.nets.classifier import StrongCNN, ThesisCNN

REPO = Path(__file__).resolve().parents[1]


def test_thesis_cnn_matches_fig_4_8():
    net = ThesisCNN()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {"conv1.weight": (8, 1, 3, 3), "conv1.bias": (8,), "conv2.weight": (16, 8, 3, 3),
                      "conv2.bias": (16,), "fc1.weight": (75, 784), "fc1.bias": (75,),
                      "fc2.weight": (10, 75), "fc2.bias": (10,)}
    assert net.dropout.p == 0.2


def test_classifier_builds_nets_from_configs_and_exposes_features():
    clf = Classifier(net={"_target_": "xgen.nets.classifier.StrongCNN", "hidden": 32})
    assert isinstance(clf.net, StrongCNN)
    x = torch.rand(4, 1, 28, 28)
    assert clf(x).shape == (4, 10) and clf.features(x).shape == (4, 32)
    cls, conf = clf.predict(x)
    assert cls.shape == (4,) and bool(((conf > 0) & (conf <= 1)).all()) and clf.training
    assert isinstance(Classifier().net, ThesisCNN)
    with pytest.raises(ConfigError, match="model.net: Linear has no features"):
        Classifier(net=torch.nn.Linear(784, 10))
    with pytest.raises(ConfigError, match="model.num_classes"):
        Classifier(num_classes=1)
    with pytest.raises(ConfigError, match="divisible by 4"):
        ThesisCNN(image_shape=(1, 30, 30))


@pytest.mark.slow
def test_classifier_learns_digits():
    import lightning as L

    from xgen.data import DigitsDataModule

    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64, eval_batch_size=500)
    clf = Classifier(lr=3e-3)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(clf, dm)
    acc = trainer.test(clf, dm, verbose=False)[0]["test/acc"]
    assert acc > 0.8


def test_shipped_fashion_mnist_classifiers_pass_the_thesis_bar():
    """Re-measure the shipped weights on the 10,000 Fashion-MNIST test images: > 90% (thesis §4.3)."""
    from xgen.data import FashionMNISTDataModule
    from xgen.metrics.features import build_extractor

    x, y = FashionMNISTDataModule().split("test")
    for arch in ("thesis", "strong"):
        ext = build_extractor("classifier", dataset="fashion_mnist", arch=arch)
        acc = float((ext.extract(x).logits.argmax(1) == y).float().mean())
        assert acc > 0.9, arch
        assert acc == pytest.approx(ext.record["test_acc"], abs=1e-4)  # the number recorded in the file


def test_xgen_model_classifier_runs_with_the_default_callbacks(tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "xgen", "model=classifier", "data=digits", "debug=fast",
                    "callbacks.progress_bar=null", f"hydra.run.dir={run}"], check=True, capture_output=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 <= summary["metrics"]["test/acc"] <= 1
    from xgen.models import load_model

    assert isinstance(load_model(str(run / "checkpoints" / "last.ckpt")), Classifier)
    from xgen.evaluate import main

    assert main([str(run)]) == 0  # xgen eval on a classifier run: its accuracy, no sample quality
    ev = json.loads((run / "eval.json").read_text())
    assert ev["model"] == "Classifier" and "test/fid" not in ev
    assert ev["test/acc"] == pytest.approx(summary["metrics"]["test/acc"], abs=1e-6)


@pytest.mark.slow
def test_retraining_is_bit_for_bit(tmp_path):
    """Two trainings with the shipped recipe (digits, fig. 4.8 net) give identical weight files' tensors."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import train_classifiers as tc
    finally:
        sys.path.pop(0)
    a = tc.train_one("digits", "thesis", tmp_path / "a", threads=1)
    b = tc.train_one("digits", "thesis", tmp_path / "b", threads=1)
    assert tc.same_weights(a, b)
    shipped = REPO / "src" / "xgen" / "weights" / a.name
    assert tc.same_weights(a, shipped), "the shipped digits weights are not what the script produces"
