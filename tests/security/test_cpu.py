"""The hash threads default to the container's CPU share (cgroup v2 cpu.max)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.security.cpu import cpu_share, quota_cores, visible_cores


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        ("100000 100000", 1.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("max 100000", None),
        ("garbage", None),
        ("0 100000", None),
    ],
)
def test_quota_cores_reads_cpu_max(cpu_max: str, cores: float | None) -> None:
    assert quota_cores(cpu_max) == cores


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("50000 100000", 1), ("100000 100000", 1), ("150000 100000", 2)],
)
def test_cpu_share_is_the_cgroup_quota_rounded_up(
    tmp_path: Path, cpu_max: str, expected: int
) -> None:
    # Compose's `cpus: "1.5"` is cpu.max "150000 100000": 2 threads, not the
    # host's cores (a 64-core host would start 64 scrypt threads, 32 MiB each).
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")

    assert cpu_share(tmp_path) == min(expected, visible_cores())


def test_cpu_share_without_a_limit_is_the_visible_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")

    assert cpu_share(tmp_path) == visible_cores()
    assert cpu_share(tmp_path / "missing") == visible_cores()


def test_password_hash_threads_default_to_the_cpu_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PASSWORD_HASH_THREADS", raising=False)

    assert Settings().password_hash_threads == cpu_share()
