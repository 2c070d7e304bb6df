"""Sweeps on a real scheduler: a one-node SLURM cluster (Debian's slurm-wlm + munge) runs a 2-job xgen
sweep through ``hydra/launcher=slurm``; one job is pre-empted mid-training and continues from its
checkpoint when the sweep is launched again, ending exactly where the uninterrupted job ends.

The cluster runs in a temporary directory (its own munge key and socket, its own ports, state and
spool); every Slurm command finds it through ``SLURM_CONF``. ``proctrack/linuxproc`` and ``task/none``
need no cgroups, so it also starts in an unprivileged container.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """A little under the machine's memory: slurmd marks a node invalid that has less than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1000


class Cluster:
    """A one-node SLURM cluster under ``root``; ``env`` points every Slurm command at it."""

    def __init__(self, root: Path):
        self.root, self.procs = root, []
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for k in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
            del self.env[k]  # never inherit another allocation's settings

    def write_config(self) -> None:
        r, user = self.root, getpass.getuser()
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.socket = r / "munge" / "munge.socket"
        self.conf.write_text(f"""\
ClusterName=xgentest
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=10
NodeName={self.host} NodeAddr=127.0.0.1 CPUs=2 RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _start(self, *cmd: str) -> None:
        log = open(self.root / "log" / f"{Path(cmd[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                           start_new_session=True))

    def start(self, timeout: float = 60.0) -> None:
        self.write_config()
        m = self.root / "munge"
        self._start("munged", "--foreground", "--force", f"--key-file={m}/munge.key", f"--socket={self.socket}",
                    f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/seed")
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            self._check_alive(deadline, "munged")
        self._start("slurmctld", "-D", "-f", str(self.conf))
        self._start("slurmd", "-D", "-f", str(self.conf))
        while True:
            state = self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            self._check_alive(deadline, f"the node to be idle (sinfo says {state!r})")

    def _check_alive(self, deadline: float, waiting_for: str) -> None:
        dead = [p.args[0] for p in self.procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"== {f.name}\n" + f.read_text()[-2000:] for f in sorted((self.root / "log").iterdir()))
            raise RuntimeError(f"SLURM test cluster did not start ({', '.join(dead) or 'timeout'} "
                               f"while waiting for {waiting_for}):\n{logs}")
        time.sleep(0.5)

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def stop(self) -> None:
        self.run("scancel", "--user", getpass.getuser(), check=False)
        deadline = time.monotonic() + 20
        while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)
        for p in reversed(self.procs):  # slurmd, slurmctld, munged
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install Debian's slurm-wlm and munge (missing: {', '.join(missing)})")
        pytest.skip(f"SLURM test cluster needs Debian's slurm-wlm and munge (missing: {', '.join(missing)}); "
                    "apt-get install slurm-wlm munge")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_cluster_runs_a_batch_job(slurm, tmp_path):
    """The cluster itself: sbatch runs a job on the node, as the submitting user, with its environment."""
    out = tmp_path / "out.txt"
    jid = slurm.run("sbatch", "--parsable", "-o", str(out), "--wrap",
                    'echo "$SLURM_JOB_ID $(id -un) $XGEN_SLURM_PROBE"').stdout.strip().split(";")[0]
    env = {**slurm.env, "XGEN_SLURM_PROBE": "exported"}
    deadline = time.monotonic() + 60
    while not (out.is_file() and out.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert out.read_text().split() == [jid, getpass.getuser()]  # submitted without the probe variable
    jid2 = subprocess.run(["sbatch", "--parsable", "-o", str(out), "--wrap", 'echo "$XGEN_SLURM_PROBE"'],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 60
    while out.read_text().strip() != "exported" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert out.read_text().strip() == "exported", f"job {jid2}: sbatch must export the environment"


def _summary(d: Path) -> dict:
    return json.loads((d / "summary.json").read_text())


def _sweep(slurm: Cluster, sweep: Path) -> tuple[dict, list[str]]:
    """Environment and command of a 2-job VAE sweep (3 epochs of digits each) through hydra/launcher=slurm
    with its CPU-only defaults; sbatch exports the environment (PYTHONPATH) to the jobs."""
    env = {**slurm.env, "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "xgen", "-m", "hydra/launcher=slurm", "data=digits", "data.repeat=1", "model=vae",
           "model/net=mlp", "seed=0,1", "trainer.max_epochs=3", "test=false", "callbacks.sample_grids=null",
           f"hydra.sweep.dir={sweep}", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1"]
    return env, cmd


def _job1_after_first_epoch(slurm: Cluster, sweep: Path, launcher: subprocess.Popen, log: Path) -> str:
    """Wait until job 1 (seed=1) has saved its first epoch; return its SLURM id (``<array>_1``)."""
    deadline = time.monotonic() + 240
    while not list((sweep / "1" / "checkpoints").glob("epoch*.ckpt")):
        assert launcher.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return next(j for j in slurm.run("squeue", "-h", "-o", "%i").stdout.split() if j.endswith("_1"))


@pytest.mark.slow
def test_sweep_job_requeued_by_slurm_continues_from_its_checkpoint(slurm, tmp_path):
    """`scontrol requeue` (pre-emption by the scheduler): SLURM sends SIGTERM, job 1 saves last.ckpt and
    ends 'interrupted' (exit 143); SLURM starts it again and it continues from last.ckpt to the same final
    step as the uninterrupted job 0; the one launch of the sweep ends with exit code 0."""
    t0 = time.monotonic()
    sweep, log = tmp_path / "sweep", tmp_path / "launch.log"
    env, cmd = _sweep(slurm, sweep)
    launcher = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        job1 = _job1_after_first_epoch(slurm, sweep, launcher, log)
        slurm.run("scontrol", "requeue", job1)
        deadline = time.monotonic() + 120
        while not ((sweep / "1" / "summary.json").is_file() and _summary(sweep / "1")["status"] == "interrupted"):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        interrupted = _summary(sweep / "1")
        while "PENDING" not in slurm.run("squeue", "-h", "-o", "%T", "-j", job1).stdout:
            assert time.monotonic() < deadline, slurm.run("squeue").stdout
            time.sleep(0.2)
        slurm.run("scontrol", "update", f"jobid={job1}", "StartTime=now")  # skip SLURM's ~2 min requeue delay
        rc = launcher.wait(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert rc == 0, log.read_text()[-3000:]
    assert interrupted["signal"] == signal.SIGTERM and 0 < interrupted["global_step"] < 63, interrupted
    assert Path(interrupted["checkpoint"]).name == "last.ckpt"
    s0, s1 = _summary(sweep / "0"), _summary(sweep / "1")
    assert s0["status"] == s1["status"] == "completed", (s0, s1)
    assert s0["global_step"] == s1["global_step"] == 63  # 3 epochs x 21 batches of digits
    out = "".join(p.read_text() for p in (sweep / ".submitit").glob("*_1/*_log.*"))
    assert "Exited with exit code 143" in out and f"continuing {sweep / '1'} from its last.ckpt" in out, out[-3000:]
    print(f"SLURM sweep with a requeue at step {interrupted['global_step']}: {time.monotonic() - t0:.1f} s")


@pytest.mark.slow
def test_sweep_preempted_job_resumes_and_completes(slurm, tmp_path):
    """Two jobs through hydra/launcher=slurm (CPU-only defaults); SIGUSR1 (SLURM's pre-emption signal)
    to job 1 mid-training: it saves, ends 'interrupted'; the same sweep launched again skips job 0 and
    continues job 1 from last.ckpt to the same final step as job 0."""
    t0 = time.monotonic()
    sweep = tmp_path / "sweep"
    env, cmd = _sweep(slurm, sweep)
    log1 = open(tmp_path / "launch1.log", "w")
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log1, stderr=subprocess.STDOUT)
    try:
        # pre-empt job 1 once its first epoch is saved: the signal arrives during a later epoch
        job1 = _job1_after_first_epoch(slurm, sweep, first, tmp_path / "launch1.log")
        slurm.run("scancel", "--signal=USR1", job1)
        # the job saves and exits 138; job 0 runs on. Without SLURM accounting (no slurmdbd here) submitit
        # cannot see a job that ended without writing its result, so the first launcher would wait for
        # job 1 for ever: stop it once both jobs have left the queue (the re-launch below continues job 1)
        deadline = time.monotonic() + 300
        while slurm.run("squeue", "-h").stdout.strip() or not (sweep / "0" / "summary.json").is_file():
            assert time.monotonic() < deadline, slurm.run("squeue").stdout
            time.sleep(0.5)
    finally:
        first.terminate()
        first.wait(timeout=30)
    launch1 = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_1_0_log.err"))
    assert "Exited with exit code 138" in launch1, launch1[-3000:]  # 128 + SIGUSR1, reported by srun
    s0, s1 = _summary(sweep / "0"), _summary(sweep / "1")
    assert s0["status"] == "completed" and s0["global_step"] == 63, s0  # 3 epochs x 21 batches of digits
    assert s1["status"] == "interrupted" and s1["signal"] == signal.SIGUSR1, s1
    assert 0 < s1["global_step"] < s0["global_step"], s1
    assert Path(s1["checkpoint"]).name == "last.ckpt" and Path(s1["checkpoint"]).is_file()
    interrupted_at = s1["global_step"]
    job0_files = {p: p.stat().st_mtime_ns for p in (sweep / "0").rglob("*")
                 if p.suffix != ".log" and ".hydra" not in p.parts}

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    s0b, s1b = _summary(sweep / "0"), _summary(sweep / "1")
    assert s0b == s0  # completed job skipped: its summary, metrics and checkpoints untouched
    assert {p: p.stat().st_mtime_ns for p in (sweep / "0").rglob("*")  # (Hydra rewrites .hydra/ itself)
            if p.suffix != ".log" and ".hydra" not in p.parts} == job0_files
    assert s1b["status"] == "completed", s1b
    assert s1b["global_step"] == s0["global_step"] == 63
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert f"continuing {sweep / '1'} from its last.ckpt" in logs, logs[-3000:]
    # metrics.csv: each epoch's validation once (epoch 0 from before the interruption, kept), to the last step
    import csv

    val = [(int(r["epoch"]), int(r["step"])) for r in csv.DictReader(open(sweep / "1" / "metrics.csv"))
           if r.get("val/nelbo")]
    assert val == [(0, 20), (1, 41), (2, 62)], val
    wall = time.monotonic() - t0
    print(f"SLURM sweep with pre-emption at step {interrupted_at}: {wall:.1f} s")
