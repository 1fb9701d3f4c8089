"""A throwaway single-node SLURM cluster on 127.0.0.1, for tests.

Everything lives in one temporary folder: ``slurm.conf``, ``cgroup.conf``, ``gres.conf``, a fresh
munge key and socket, the state and spool folders and the daemons' logs. The daemons (``munged``,
``slurmctld``, ``slurmd``) are started in the foreground as children of the test process, so
:meth:`SlurmCluster.stop` ends exactly those processes and nothing else; nothing under ``/etc`` is
read or written. Client commands (``sbatch``, ``squeue``, ``sinfo``, ``sacct``) reach this cluster
through ``SLURM_CONF`` (and an ``srun`` shim that restores it inside jobs): use
:attr:`SlurmCluster.env` for every subprocess.

The daemons run as root (``SlurmUser=root``), which needs root. The node advertises one GPU
(``gres/gpu``, no device file) and more CPUs and memory than the machine has
(``SlurmdParameters=config_overrides``), so that the workflow profile's real requests (one GPU,
several CPUs per GPU, gigabytes of memory) are accepted and scheduled here; the jobs themselves are
tiny. There is no accounting database: ``sacct`` is therefore not useful, job states come from
``squeue``/``scontrol`` (``MinJobAge`` is long, so finished jobs stay visible) and every finished
job is also written to a job completion log (``jobcomp/filetxt``), which :meth:`completed_jobs`
reads.

Seen working with Debian 12's slurm-wlm 22.05 and munge 0.5.15.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE = "hollynode"
PARTITIONS = ("cpu", "gpu")  # the first is the default; both hold the one node
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "srun")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here; the message says why (tests skip with it)."""


def missing_requirements() -> str | None:
    """Why a cluster cannot be started on this machine, or None when it can be tried."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "SLURM needs a POSIX system"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd for the test needs root (run as root, e.g. in CI)"
    missing = [name for name in DAEMONS if not _which(name)]
    if missing:
        return (
            f"SLURM/munge programs not found: {', '.join(missing)} "
            "(on Debian: apt-get install slurm-wlm munge; tools/system-deps.sh does this)"
        )
    return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _key_values(line: str) -> dict[str, str]:
    """``A=1 B=x y C=2`` -> ``{"A": "1", "B": "x y", "C": "2"}`` (values may contain spaces)."""
    fields: dict[str, str] = {}
    key = None
    for item in line.split(" "):
        name, sep, value = item.partition("=")
        if sep and name and name.replace("/", "").replace(":", "").isalnum():
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + item
    return {k: v.strip() for k, v in fields.items()}


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies without stop() (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """One controller and one compute node, both on 127.0.0.1.

    Parameters
    ----------
    root
        Empty folder that holds configuration, state and logs.
    cpus, memory_mb, gpus
        What the node advertises to the scheduler (not what the machine has).
    """

    root: Path
    cpus: int = 16
    memory_mb: int = 64000
    gpus: int = 1
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for client commands: points them at this cluster's slurm.conf."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}:{env.get('PATH', '')}:/usr/sbin:/sbin"
        # Keep the caller's partition/account choices out of the test cluster.
        for key in list(env):
            if key.startswith(("SBATCH_", "SALLOC_", "SLURM_")) and key != "SLURM_CONF":
                del env[key]
        return env

    def write_config(self) -> None:
        etc, munge = self.root / "etc", self.root / "munge"
        for d in (etc, munge, self.root / "state", self.root / "spool", self.root / "log"):
            d.mkdir(parents=True, exist_ok=True)
        munge.chmod(0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        r = self.root
        host = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = _free_port(), _free_port()
        self.conf.write_text(
            f"""\
# Throwaway single-node test cluster; written by tests/slurm_cluster.py.
ClusterName=hollytest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.log
# Keep finished jobs visible to squeue/scontrol for an hour (there is no accounting database).
MinJobAge=3600
MessageTimeout=30
GresTypes=gpu
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus} \
RealMemory={self.memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN
"""
            + "".join(
                f"PartitionName={name} Nodes={NODE} Default={'YES' if i == 0 else 'NO'} "
                "MaxTime=INFINITE State=UP\n"
                for i, name in enumerate(PARTITIONS)
            )
        )
        # A GPU without a device file: the scheduler counts it, nothing is bound.
        (etc / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={NODE} Name=gpu Count={self.gpus} File=/dev/null\n"
        )
        # The SLURM executor's job step drops every SLURM_* variable, SLURM_CONF included, before
        # it calls srun inside the job; real clusters keep their config in /etc/slurm, which this
        # cluster leaves alone. A shim first on the jobs' PATH puts SLURM_CONF back for srun.
        shim = self.root / "bin" / "srun"
        shim.parent.mkdir(exist_ok=True)
        shim.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {_which("srun")} "$@"\n')
        shim.chmod(0o755)
        # Only read by cgroup plugins, none of which is configured; kept explicit.
        (etc / "cgroup.conf").write_text("CgroupAutomount=no\n")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")  # noqa: SIM115 (closed in stop)
        self.procs[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def start(self, timeout: float = 60.0) -> None:
        """Write the configuration, start the daemons and wait until the node is idle.

        Raises
        ------
        SlurmUnavailable
            If a requirement is missing or the node does not come up within ``timeout`` s.
        """
        reason = missing_requirements()
        if reason:
            raise SlurmUnavailable(reason)
        self.write_config()
        munge = self.root / "munge"
        try:
            self._spawn(
                "munged",
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={munge}/munge.socket",
                    f"--key-file={munge}/munge.key",
                    f"--pid-file={munge}/munged.pid",
                    f"--log-file={self.root}/log/munged.log",
                    f"--seed-file={munge}/munged.seed",
                ],
            )
            self._wait(lambda: (munge / "munge.socket").exists(), 10, "munged socket")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait(self._controller_answers, timeout / 2, "slurmctld")
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
            self._wait(self._node_idle, timeout / 2, f"node {NODE} idle")
        except BaseException:
            self.stop()
            raise

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with code {proc.returncode} while waiting for {what}:\n"
                        + self.logs_tail()
                    )
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"timed out after {timeout:.0f} s waiting for {what}:\n" + self.logs_tail()
        )

    def run(
        self, *argv: str, timeout: float = 30, check: bool = False
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def _controller_answers(self) -> bool:
        try:
            return self.run("scontrol", "ping", timeout=10).stdout.find("UP") >= 0
        except subprocess.TimeoutExpired:
            return False

    def _node_idle(self) -> bool:
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t", timeout=10).stdout.split()
        except subprocess.TimeoutExpired:
            return False
        return out[:2] == [NODE, "idle"]

    def jobs(self) -> list[dict[str, str]]:
        """All jobs the controller knows (pending, running and finished within MinJobAge).

        One dict per job with ``scontrol show job`` fields, e.g. ``JobName``, ``JobState``,
        ``Comment``, ``TresPerJob``, ``NumCPUs``, ``MinMemoryNode``, ``TimeLimit``, ``StdOut``.
        """
        out = self.run("scontrol", "-o", "show", "job", timeout=15).stdout
        return [_key_values(line) for line in out.splitlines() if line.startswith("JobId=")]

    def completed_jobs(self) -> list[dict[str, str]]:
        """Finished jobs from the job completion log: one dict of ``Key=Value`` fields each."""
        path = self.root / "log" / "jobcomp.log"
        if not path.exists():
            return []
        return [_key_values(line) for line in path.read_text().splitlines() if line.strip()]

    def logs_tail(self, lines: int = 15) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel remaining jobs and end the daemons this object started (reverse order)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--user=root", timeout=10)
                time.sleep(1)
            except (subprocess.TimeoutExpired, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()


def start_cluster(timeout: float = 60.0) -> SlurmCluster:
    """Start a cluster in a fresh temporary folder (the caller must call ``stop()``)."""
    root = Path(tempfile.mkdtemp(prefix="holly-slurm-"))
    cluster = SlurmCluster(root)
    cluster.start(timeout=timeout)
    return cluster
