"""Peak memory, CPU time and lifetime of a process tree's members, by role, sampled in a thread.

Peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), so a spike
between two samples is not missed; only growth in a process's last interval is. Where
``/proc`` has no ``VmHWM`` the sampled RSS is used instead. CPU time is as of the last sample.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def high_water_mark(process: psutil.Process) -> int | None:
    """Peak resident bytes of ``process`` so far (current RSS where VmHWM is unavailable).

    None once it has exited.
    """
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("State:") and line.split()[1:2] == ["Z"]:
            return None  # a zombie: it has exited and holds no memory
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
        return None
    return int(process.memory_info().rss)


@dataclass
class RoleStats:
    """What was seen of the processes of one role."""

    peak_rss: int = 0
    pids: set[int] = field(default_factory=set)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None

    @property
    def cpu_s(self) -> float:
        """User + system CPU seconds of the role's processes, as last sampled."""
        return sum(self.cpu_by_pid.values())

    @property
    def lifetime(self) -> float | None:
        if self.first_seen is None or self.last_seen is None:
            return None
        return self.last_seen - self.first_seen


class TreeMonitor:
    """Samples the descendants of ``root_pid`` every ``interval`` seconds until stopped.

    A descendant gets the first role whose name is the basename of its program or script
    (``argv[0]`` or ``argv[1]``), so ``meltano run tap-x target-y`` itself is not mistaken for
    ``tap-x``. The root process is the role ``root``.
    """

    def __init__(self, root_pid: int, roles: tuple[str, ...], interval: float = 0.05) -> None:
        self.root_pid = root_pid
        self.roles = roles
        self.interval = interval
        self.stats: dict[str, RoleStats] = {role: RoleStats() for role in (*roles, "root")}
        self._known: dict[int, tuple[psutil.Process, str | None]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-procmon", daemon=True)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _role_of(self, process: psutil.Process) -> str | None:
        try:
            names = [Path(arg).name for arg in process.cmdline()[:2]]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        return next((role for role in self.roles if role in names), None)

    def _sample(self) -> None:
        now = time.monotonic()
        try:
            root = psutil.Process(self.root_pid)
            members = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        for process in members:
            known = self._known.get(process.pid)
            if known is None or known[1] is None:
                # Unknown until it has exec'd: a forked child first shows its parent's argv.
                role = "root" if process.pid == self.root_pid else self._role_of(process)
                self._known[process.pid] = known = (process, role)
            role = known[1]
            if role is None:
                continue
            try:
                peak = high_water_mark(known[0])
                times = known[0].cpu_times() if peak is not None else None
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            if peak is None or times is None:
                continue
            stats = self.stats[role]
            stats.cpu_by_pid[process.pid] = times.user + times.system
            stats.peak_rss = max(stats.peak_rss, peak)
            stats.pids.add(process.pid)
            if stats.first_seen is None:
                stats.first_seen = now
            stats.last_seen = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
