"""The README's "From Python" snippet runs exactly as written (extracted from README.md, not copied)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def python_snippet() -> str:
    """The ```python block under the README's "### From Python" heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### From Python", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None, "README.md: no ```python block under '### From Python'"
    return m.group(1)


@pytest.mark.slow  # 100 training steps of the conv β-VAE on Fashion-MNIST: ~13 s idle, 27 s on a loaded machine
def test_readme_python_snippet_runs_verbatim(fashion_available, tmp_path, monkeypatch, capsys):
    code = python_snippet()
    assert "dm.batch(" in code and "images" in code.split("dm.batch(")[0].splitlines()[-1]
    monkeypatch.chdir(tmp_path)  # the snippet writes outputs/python/ relative to the working directory
    ns: dict = {}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README, the point of the test
    images, model, dm = ns["images"], ns["model"], ns["dm"]
    lo, hi = model.value_range
    assert images.dtype == torch.float32 and images.shape == (256, 1, 28, 28)
    assert float(images.min()) >= lo and float(images.max()) <= hi and float(images.max()) > 0.5 * hi
    raw, labels = dm.split("test")
    torch.testing.assert_close(images, raw[:256].float() / 255 * (hi - lo) + lo)
    assert torch.equal(ns["labels"], labels[:256])
    assert ns["z"].shape == (256, 10) and not ns["z"].requires_grad and ns["x"].shape == (64, 1, 28, 28)
    assert (tmp_path / "outputs" / "python" / "beta_vae.ckpt").is_file()
    assert "{'label': " in capsys.readouterr().out  # MIG named by the data module's factor
