"""ONNX Runtime's threads: how many (the cores the process may use, a container's CPU quota included)
and whether they spin between operators (`scoring.spin_wait`, off by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config.schema import ScoringConfig
from gateway.scoring.encoder import session_options, usable_cores
from gateway.scoring.runtime import ScoringRuntime

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", AFFINITY),              # no quota
    ("100000 100000\n", 1),                  # one CPU's worth
    ("50000 100000\n", 1),                   # half a CPU still gets a thread
    ("6400000 100000\n", AFFINITY),          # a quota above the cores this process may run on
    ("garbage\n", AFFINITY),                 # unreadable: the affinity alone
])
def test_usable_cores_reads_the_cgroup_quota(tmp_path: Path, cpu_max: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert usable_cores(tmp_path) == expected


@pytest.mark.parametrize(("quota", "period", "expected"), [
    ("-1", "100000", AFFINITY),              # cgroup v1, no quota
    ("100000", "100000", 1),
    ("150000", "100000", 1),                 # 1.5 CPUs: rounded down
    ("6400000", "100000", AFFINITY),
    ("100000", "0", AFFINITY),               # a zero period is no quota
])
def test_usable_cores_reads_a_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, expected: int) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    assert usable_cores(tmp_path) == expected


def test_usable_cores_without_a_cgroup_file(tmp_path: Path) -> None:
    assert usable_cores(tmp_path / "missing") == AFFINITY
    assert usable_cores(tmp_path) == AFFINITY


def test_threads_and_spinning_in_the_session_options() -> None:
    quiet = session_options(0)
    assert quiet.intra_op_num_threads == min(usable_cores(), 4)
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = session_options(3, spin_wait=True)
    assert spinning.intra_op_num_threads == 3
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"


@pytest.mark.parametrize("spin", [False, True])
def test_the_runtime_passes_spin_wait_to_its_encoders(spin: bool) -> None:
    runtime = ScoringRuntime(ScoringConfig(spin_wait=spin))
    assert ScoringConfig().spin_wait is False
    for service in (runtime.service, runtime.detector_service("prompt_injection")):
        assert service.encoder.options.spin_wait is spin
        assert service.encoder.run([[101, 2023, 102]]).shape == (1, service.encoder.hidden)
