"""A real single-node Slurm cluster for tests (Debian's slurm-wlm + munge), started and stopped by a fixture.

Everything lives in one directory the test owns: slurm.conf, state, spool, logs and the pid files; the clients
find the cluster through SLURM_CONF. Needs root (the daemons run as root here, with `proctrack/linuxproc` and
`task/none`, which need no cgroups). `unavailable()` says in one line why a test cannot run.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("sbatch", "squeue", "scontrol", "scancel", "slurmctld", "slurmd", "munged")


def unavailable() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "the Slurm test starts slurmctld, slurmd and munged, which needs root"
    missing = [d for d in DAEMONS if not shutil.which(d) and not Path("/usr/sbin", d).exists()]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): "
                "apt-get install slurm-wlm munge (.ci/run does this as root)")
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """One controller and one compute node on this machine; `env` is what a client needs to reach them."""

    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def write_conf(self) -> None:
        for d in ("state", "spool", "log", "munge"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        ctld, slurmd = _free_ports(2)
        mem = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2048)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=dreamprm-test
SlurmctldHost={self.host}
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.socket
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=defer
MpiDefault=none
ReturnToService=2
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
NodeName={self.host} CPUs={self.cpus} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def start(self, timeout: float = 60) -> "Cluster":
        self.write_conf()
        r = self.root
        # munged with its own socket and state, so a system munged (if any) is left alone
        self._spawn([_sbin("munged"), "--foreground", "--force", f"--socket={r}/munge/munge.socket",
                     f"--pid-file={r}/munge/munged.pid", f"--seed-file={r}/munge/munged.seed",
                     f"--log-file={r}/log/munged.log"], "munged")
        self._wait(lambda: (r / "munge" / "munge.socket").exists(), timeout, "munged did not start")
        self._spawn([_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn([_sbin("slurmd"), "-D", "-f", str(self.conf)], "slurmd")
        self._wait(self._node_idle, timeout, "the node did not come up")
        return self

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _node_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-o", "%T", check=False)
        return r.returncode == 0 and r.stdout.strip().rstrip("*") in ("idle", "mixed", "allocated")

    def _wait(self, ok, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ok():
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.3)
        raise RuntimeError(f"{what}; logs in {self.root / 'log'}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted((self.root / "log").glob("*")))

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def jobs(self) -> dict[str, str]:
        """job id (array tasks as <id>_<task>) -> state, for every job the controller still remembers."""
        out = self.run("scontrol", "show", "job", "-o", check=False).stdout
        states = {}
        for line in out.splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "JobId" not in fields:
                continue
            jid = fields["JobId"]
            if fields.get("ArrayTaskId", "").isdigit():
                jid = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            states[jid] = fields.get("JobState", "?")
        return states

    def wait_for(self, ok, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ok(self.jobs()):
                return
            time.sleep(1)
        raise AssertionError(f"timed out waiting for {what}: {self.jobs()}\n{self.logs()}")

    def stop(self) -> None:
        self.run("scancel", "--user=root", check=False) if self.procs else None
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
