"""A label-reading model under DDP (2 CPU processes, gloo) with the default callbacks: each process draws
its labelled images from its own share of the subset (tests/data/test_labelled.py), and the supervised
terms are logged as in one process. AC-GAN and cGAN share the step's label path (GAN.uses_labels)."""

import pytest

from test_gan_ddp import _run  # the same CLI run helper (pytest puts this folder on sys.path)


@pytest.mark.slow
def test_a_semi_supervised_infogan_trains_under_ddp_with_the_default_callbacks(tmp_path):
    overrides = ["model=ss_infogan", "data.labels_per_class=5", "data.labelled_batch_size=8"]
    single, _ = _run(tmp_path, "single", "trainer=cpu", *overrides)
    ddp, _ = _run(tmp_path, "ddp", "trainer=ddp_cpu", *overrides)
    assert single["status"] == ddp["status"] == "completed"
    assert set(ddp["metrics"]) == set(single["metrics"])
    for key in ("train/loss_sup", "train/acc_sup", "val/cat_acc_direct", "test/cat_acc_direct"):
        assert key in ddp["metrics"], sorted(ddp["metrics"])
