"""Per-process figures read from /proc: memory (RSS, peak RSS) and CPU time.

A process here means a pid plus all of its descendants (uvicorn with --workers forks
children; a Celery thread pool does not, but it costs nothing to look).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """pid and every live descendant (via /proc/<pid>/task/<tid>/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                try:
                    todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
                except OSError:
                    pass
        except OSError:
            pass
    return found


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Current resident memory of pid and its descendants, MB."""
    return sum(_status_kb(p, "VmRSS") for p in descendants(pid)) / 1024


def hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) summed over pid and its descendants, MB."""
    return sum(_status_kb(p, "VmHWM") for p in descendants(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its live descendants, seconds."""
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def pids_named(name: str) -> list[int]:
    """Pids whose command name (comm) starts with `name` (e.g. redis-server, postgres)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip().startswith(name):
                    out.append(int(entry))
            except OSError:
                pass
    return out


def cpu_seconds_named(name: str) -> float:
    return sum(cpu_seconds(p) for p in pids_named(name))


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / TICK, total / TICK


def cpu_read(pids: dict[str, int], named: tuple[str, ...]) -> dict:
    """CPU seconds so far of each process in `pids`, of this one (`bench_client`), of every
    process whose name starts with one of `named` (per pid), and of the machine."""
    values: dict = {name: cpu_seconds(pid) for name, pid in pids.items()}
    values["bench_client"] = time.process_time()
    for name in named:
        # Per pid, so a backend that exits during the run cannot make the delta negative.
        values[name] = {pid: cpu_seconds(pid) for pid in pids_named(name)}
    busy, total = machine_cpu_seconds()
    values["machine_busy"], values["machine_total"] = busy, total
    values["wall"] = time.monotonic()
    return values


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds spent between two `cpu_read`s, per name (and `wall`, the seconds between)."""
    used = {}
    for k, v in after.items():
        if isinstance(v, dict):
            start = before.get(k, {})
            used[k] = round(sum(cpu - start.get(pid, 0.0) for pid, cpu in v.items()), 3)
        else:
            used[k] = round(v - before.get(k, 0.0), 3)
    return used


@dataclass
class Sampler:
    """Samples RSS of named pids every `interval` seconds while running (in the bench loop),
    and every `cpu_interval` seconds the CPU each used: the timeline that shows which process
    is the bottleneck when (a web or worker process near 100% of one core is bound by its
    GIL; the machine near 100% is bound by its cores)."""

    pids: dict[str, int]
    interval: float = 0.1
    cpu_interval: float = 0.5
    named: tuple[str, ...] = ("postgres",)
    peaks: dict[str, float] = field(default_factory=dict)
    starts: dict[str, float] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _task: asyncio.Task | None = None

    def start(self) -> None:
        for name, pid in self.pids.items():
            self.starts[name] = self.peaks[name] = rss_mb(pid)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last = first = cpu_read(self.pids, self.named)
        while True:
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0.0), rss_mb(pid))
            await asyncio.sleep(self.interval)
            if time.monotonic() - last["wall"] >= self.cpu_interval:
                current = cpu_read(self.pids, self.named)
                used = cpu_used(last, current)
                row = {k: round(100 * v / used["wall"]) for k, v in used.items() if k not in ("machine_busy", "machine_total", "wall")}
                row["machine"] = round(100 * used["machine_busy"] / used["machine_total"]) if used["machine_total"] else 0
                self.timeline.append((round(current["wall"] - first["wall"], 2), row))
                last = current

    # "Busy": a process at this share of one core is near its ceiling (threads that contend
    # for one GIL top out below 100%: seen at 75-90% for a saturated web process here); the
    # machine at this share of all its cores has none left.
    BUSY_PROCESS, BUSY_MACHINE = 75, 90

    def cpu_timeline(self) -> dict:
        """Percent of one core per process (`machine`: percent of all cores) per sample, and
        the seconds each spent busy: which one was the bottleneck, and for how long."""
        names = sorted({k for _, row in self.timeline for k in row})
        spans = [t - (self.timeline[i - 1][0] if i else 0.0) for i, (t, _) in enumerate(self.timeline)]

        def busy(k: str) -> float:
            limit = self.BUSY_MACHINE if k == "machine" else self.BUSY_PROCESS
            return round(sum(span for span, (_, row) in zip(spans, self.timeline) if row.get(k, 0) >= limit), 1)

        return {
            "interval_s": self.cpu_interval,
            "t": [t for t, _ in self.timeline],
            "percent": {k: [row.get(k, 0) for _, row in self.timeline] for k in names},
            "busy_limits_percent": {"process": self.BUSY_PROCESS, "machine": self.BUSY_MACHINE},
            "busy_seconds": {k: busy(k) for k in names},
        }

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for name, pid in self.pids.items():
            self.peaks[name] = max(self.peaks.get(name, 0.0), rss_mb(pid))


@dataclass
class CpuMeter:
    """CPU seconds spent by each named process (and the machine) between start() and stop()."""

    pids: dict[str, int]
    named: tuple[str, ...] = ("redis-server", "postgres")
    _start: dict[str, float] = field(default_factory=dict)
    result: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = cpu_read(self.pids, self.named)

    def stop(self) -> dict[str, float]:
        self.result = cpu_used(self._start, cpu_read(self.pids, self.named))
        ours = sum(v for k, v in self.result.items() if k not in ("machine_busy", "machine_total", "wall"))
        # CPU the machine spent on anything else (other users' test runs, the kernel): noise.
        self.result["other_processes"] = round(self.result["machine_busy"] - ours, 3)
        return self.result
