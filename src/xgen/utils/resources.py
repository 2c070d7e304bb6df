"""Sharing a machine between the concurrent jobs of a sweep: CPU threads and GPU assignment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class JobResources:
    threads: int            # torch intra-op threads for this job
    gpu: int | None         # index of the GPU this job trains on (None: leave trainer.devices alone)


def concurrent_jobs(jobs_per_gpu: int, gpu_count: int | None = None) -> int:
    """How many jobs hydra/launcher=gpu_shared runs at once: jobs_per_gpu x max(1, visible GPUs)."""
    if int(jobs_per_gpu) < 1:
        raise ValueError(f"jobs_per_gpu must be >= 1, got {jobs_per_gpu}")
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    return int(jobs_per_gpu) * max(1, int(gpu_count))


def plan(job_num: int, n_parallel: int | None, cpu_count: int | None = None,
         gpu_count: int = 0) -> JobResources:
    """Threads = the cores divided among the jobs running at once; GPU = job number mod GPU count
    (round robin, so jobs_per_gpu consecutive waves land evenly on every GPU)."""
    cpus = cpu_count or os.cpu_count() or 1
    parallel = cpus if n_parallel is not None and int(n_parallel) < 0 else int(n_parallel or 1)
    threads = max(1, cpus // max(1, parallel))
    gpu = int(job_num) % gpu_count if gpu_count > 1 else None
    return JobResources(threads=threads, gpu=gpu)
