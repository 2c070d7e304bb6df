"""CPU speed options (docs/speed.md): images/s of the library step on resident data for the InfoGAN paper
nets and the MLP VAE, eager fp32 / channels_last / bf16 autocast / torch.compile. One JSON line each.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/speed_options.py
"""
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import hydra.utils  # noqa: F401  (first: importing it later from xgen code hit a circular import)
import torch; torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_speed as B
from pathlib import Path
from xgen.runtime import speed
from xgen.data import FashionMNISTDataModule, to_value_range
tmp = Path(tempfile.mkdtemp())
dm = FashionMNISTDataModule(download=False); dm.setup("fit"); images = dm.split("train")[0]
def run(ov, opt, steps, warm):
    model = B.build_model(B.compose([*ov, "data=fashion_mnist"], tmp)).train()
    speed.apply(model, speed.options({k: True for k in opt if k in ("compile", "channels_last")}))
    step = B.make_step(model); rng = tuple(model.value_range)
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if "bf16" in opt else contextlib.nullcontext
    order = torch.randperm(images.shape[0])
    for i in range(warm + steps):
        if i == warm: t0 = time.perf_counter()
        x = to_value_range(images[order[i*128:(i+1)*128]], rng)
        if "channels_last" in opt: x = x.contiguous(memory_format=torch.channels_last)
        with ctx(): step(x)
    return steps * 128 / (time.perf_counter() - t0)
for name, ov, steps, warm in (("infogan", ["model=infogan"], 8, 3), ("vae", ["model=vae", "model/net=mlp"], 150, 10)):
    for opt in ((), ("channels_last",), ("bf16",), ("compile",)):
        if name == "vae" and opt == ("channels_last",): continue
        t = time.time(); v = run(ov, opt, steps, warm)
        print(json.dumps({"model": name, "option": "+".join(opt) or "eager fp32", "images_per_s": round(v, 1), "wall_s": round(time.time() - t, 1)}), flush=True)
