"""The CPU share this process may use: the container's, not the host's cores.

cgroup v2's `cpu.max` ("QUOTA PERIOD", or "max PERIOD" for no limit) caps a
container below its visible cores; the scheduler affinity (what
`os.process_cpu_count()` reads on Python 3.13+) caps it to a cpuset. The share
is the smaller of the two, rounded up to whole cores, at least 1. No framework
imports: config and the image's tooling read it before anything else.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_dir(root: Path) -> Path:
    """This process's own cgroup v2 folder (the root inside a container)."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hierarchy, _, path = line.partition("::")
            if hierarchy == "0" and path:
                folder = root / path.lstrip("/")
                if (folder / "cpu.max").exists():
                    return folder
    except OSError:
        pass
    return root


def quota_cores(cpu_max: str) -> float | None:
    """Cores a `cpu.max` line allows, None when it sets no limit."""
    words = cpu_max.split()
    if len(words) != 2 or words[0] == "max":
        return None
    try:
        quota, period = int(words[0]), int(words[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def visible_cores() -> int:
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        count: int | None = process_cpu_count()
        return count or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cpu_share(root: Path = CGROUP_ROOT) -> int:
    """Whole cores this process may use: min(cgroup quota, affinity), >= 1."""
    cores = visible_cores()
    folder = _cgroup_dir(root)
    # A nested cgroup is limited by each ancestor's cpu.max too.
    while True:
        try:
            limit = quota_cores((folder / "cpu.max").read_text())
        except OSError:
            limit = None
        if limit is not None:
            cores = min(cores, max(1, math.ceil(limit)))
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return max(1, cores)
