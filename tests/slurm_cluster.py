"""A real two-"node" Slurm cluster on this machine (Debian's slurm-wlm + munge), for tests.

Both nodes are slurmd daemons on 127.0.0.1 with their own ports (NodeName n1/n2, NodeAddr 127.0.0.1).
Everything lives in a temporary directory; ``stop()`` shuts the daemons it started down.
"""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MUNGE_KEY = Path("/etc/munge/munge.key")


def available() -> str | None:
    """None if a cluster can be started here, else the reason it cannot."""
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged", "scontrol") if not shutil.which(b)]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.munged = None

    def start(self, timeout: float = 60) -> "SlurmCluster":
        host = socket.gethostname()
        for d in ("state", "spool/n1", "spool/n2"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        ctl, n1, n2 = _free_ports(3)
        self.conf.write_text(f"""ClusterName=nexatest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl}
AuthType=auth/munge
SlurmUser=root
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool/%n
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd-%n.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobRequeue=1
MinJobAge=600
NodeName=n1 NodeHostname={host} NodeAddr=127.0.0.1 Port={n1} CPUs=1 State=UNKNOWN
NodeName=n2 NodeHostname={host} NodeAddr=127.0.0.1 Port={n2} CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
""")
        self._start_munge()
        subprocess.run(["slurmctld", "-c", "-f", str(self.conf)], check=True, env=self.env)
        for node in ("n1", "n2"):
            subprocess.run(["slurmd", "-N", node, "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True).stdout
            if out.split() and all(s.startswith("idle") for s in out.split()):
                return self
            time.sleep(0.5)
        raise RuntimeError(f"Slurm nodes did not become idle: {out!r}\n{(self.root / 'slurmctld.log').read_text()[-2000:]}")

    def _start_munge(self) -> None:
        if subprocess.run(["bash", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return  # a munged is already running
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        if not MUNGE_KEY.exists():
            MUNGE_KEY.write_bytes(os.urandom(1024))
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "-R", "munge:munge", "/etc/munge", "/run/munge", "/var/lib/munge", "/var/log/munge"],
                       check=True)
        MUNGE_KEY.chmod(0o400)
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        self.munged = True

    def sbatch(self, *args, cwd=None, env=None) -> int:
        out = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, env={**self.env, **(env or {})},
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict:
        out = subprocess.run(["scontrol", "show", "job", str(job_id)], env=self.env, capture_output=True, text=True).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def wait(self, job_id: int, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"), timeout=300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {self.job(job_id).get('JobState')} after {timeout} s")

    def logs(self, job_id: int, log_dir: Path) -> str:
        """The job's own output and the daemons' logs, for a failing test's message."""
        parts = [f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(Path(log_dir).glob(f"*-{job_id}*"))]
        parts += [f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log"))]
        return "\n".join(parts) or "(no logs)"

    def stop(self) -> None:
        subprocess.run(["scontrol", "shutdown"], env=self.env, capture_output=True)
        time.sleep(1)
        for pid_file in self.root.glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ValueError, ProcessLookupError):
                pass
        if self.munged:
            subprocess.run(["pkill", "-u", "munge", "munged"], capture_output=True)
