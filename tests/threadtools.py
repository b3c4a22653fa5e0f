"""Run jobs on several threads at once, for the concurrency tests."""
from __future__ import annotations

import sys
import threading


def run_at_once(work, n: int, switch_interval: float | None = 1e-6) -> list:
    """``[work(i) for i in range(n)]``, each on its own thread, all released together by a
    barrier, with the interpreter switching threads every ``switch_interval`` seconds
    (None: as configured).  Re-raises the first error any thread hit."""
    start = threading.Barrier(n)
    got: list = [None] * n
    errors: list = []

    def run(i):
        try:
            start.wait()
            got[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(old if switch_interval is None else switch_interval)
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]
    return got
