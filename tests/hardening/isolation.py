"""Run Python code in a child process, so a crash (segfault, abort, OOM kill) fails one
test instead of killing the test run.  The child prints one JSON object per line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _env(env: dict | None) -> dict:
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, full.get("PYTHONPATH")]))
    full.update(env or {})
    return full


def run_child(args: list[str], *, env: dict | None = None, timeout: float = 180,
              cwd: str | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` with this directory importable; never raises on a crash."""
    return subprocess.run([sys.executable, *args], env=_env(env), capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or HERE)


def start_child(args: list[str], *, env: dict | None = None) -> subprocess.Popen:
    """Like :func:`run_child`, without waiting (several children run at once)."""
    return subprocess.Popen([sys.executable, *args], env=_env(env), cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_child(child: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    out, err = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def describe_exit(proc: subprocess.CompletedProcess) -> str:
    """'exit code 1' or 'killed by SIGSEGV', plus the tail of stderr."""
    rc = proc.returncode
    how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
    return f"child process {how}\n--- stderr (tail) ---\n{proc.stderr[-3000:]}"


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    """The JSON lines the child printed (other lines are ignored)."""
    out = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def run_python(code: str, **kwargs) -> list[dict]:
    """Run ``code`` in a child; fail (not crash) if it dies; return its JSON records."""
    import pytest
    proc = run_child(["-c", code], **kwargs)
    if proc.returncode != 0:
        pytest.fail(describe_exit(proc), pytrace=False)
    return records(proc)
