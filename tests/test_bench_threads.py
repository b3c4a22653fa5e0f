"""benchmarks/run.py --threads N: the environment and the CPUs it sets up (tested without
running a benchmark: benchmarks/threads.py imports nothing heavy)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import threads  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 16])
def test_every_library_gets_n(n):
    env = threads.thread_env(n, {})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "ADJIT_NUM_THREADS"):
        assert env[var] == str(n)
    assert ("multi_thread_eigen=false" in env["XLA_FLAGS"]) == (n == 1)


def test_existing_xla_flags_are_kept():
    env = threads.thread_env(1, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert env["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x ")
    assert "multi_thread_eigen=false" in env["XLA_FLAGS"]
    mine = "--xla_cpu_multi_thread_eigen=true"
    assert threads.thread_env(1, {"XLA_FLAGS": mine})["XLA_FLAGS"] == mine   # user's choice


def test_bad_count():
    with pytest.raises(ValueError, match="at least 1"):
        threads.thread_env(0, {})


def test_pinned_cpus():
    assert threads.cpus_for(2, {5, 1, 3}) == {1, 3}
    assert threads.cpus_for(3, {5, 1, 3}) == {1, 3, 5}
    assert threads.cpus_for(4, {5, 1, 3}) is None          # oversubscribed: not pinned


def test_apply_sets_env_and_pins(monkeypatch):
    for var in threads.BLAS_VARS + ("XLA_FLAGS",):
        monkeypatch.delenv(var, raising=False)
    pinned = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pinned.append(cpus),
                        raising=False)
    env, line = threads.apply(2)
    assert os.environ["ADJIT_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "2"
    assert pinned == [{0, 1}] and "pinned to CPUs [0, 1]" in line
    pinned.clear()
    env, line = threads.apply(8)
    assert pinned == [] and "oversubscribed" in line


def test_adjit_follows_the_setting(monkeypatch):
    from adjit.backends.lowering.target.description import describe
    monkeypatch.setenv("ADJIT_NUM_THREADS", "3")
    assert describe().cores == 3
