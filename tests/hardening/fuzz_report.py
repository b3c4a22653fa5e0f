"""The long fuzz run of fuzz_check.py: counts per failure class and a shrunk reproducer of
each (``python tests/hardening/fuzz_check.py N SEED`` with
``PYTHONPATH=src:tests:tests/hardening``)."""
from __future__ import annotations

import time

import numpy as np

from fuzz_check import Failure, _check_any, check_case, check_labels_out_of_range, \
    reproducer, shrink


def signature(case, failure: Failure, budget: int = 40) -> str:
    """A failure's class for counting: its check, backends and the ops left after a short
    shrink (so one root cause seen through many graphs counts as one class)."""
    small = shrink(case, failure, budget)
    ops = sorted({_opname(n) for n in small.out.walk() if n.op != "leaf"})
    return f"{failure.family} :: {' '.join(ops)}", small


def _opname(n):
    if n.op == "pow":
        b, p = n.args
        if b.op == "num":
            return "pow(neg number, x)" if b.attrs["value"] < 0 else "pow(number, x)"
        kind = p.op if p.op != "num" else (
            "int" if float(p.attrs["value"]).is_integer() else "frac")
        return f"pow[{kind}{'>16' if kind == 'int' and abs(p.attrs['value']) > 16 else ''}]"
    if n.op == "num":
        v = n.attrs["value"]
        return "-inf" if v == -np.inf else "number"
    return n.op


def main(n_cases: int, seed: int, budget: int = 40):
    from fuzz_gen import generate
    counts, firsts, cases_failed, tags = {}, {}, 0, {}
    t0 = time.time()
    for i in range(n_cases):
        case = generate(seed * 1_000_003 + i)
        for t in case.tags:
            tags[t] = tags.get(t, 0) + 1
        fails = check_case(case) + (check_labels_out_of_range(case) if i % 5 == 0 else [])
        fams = {}
        for f in fails:
            fams.setdefault(f.family, []).append(f)
        for fam, fs in fams.items():
            backends = ",".join(sorted({f.backend for f in fs}))
            sig, small = signature(case, fs[0], budget)
            key = f"{sig} [{backends}]"
            counts[key] = counts.get(key, 0) + 1
            if key not in firsts:
                firsts[key] = (small, fs[0])
        cases_failed += bool(fails)
        if (i + 1) % 200 == 0:
            print(f"{i + 1} cases, {cases_failed} failing, {time.time() - t0:.0f} s", flush=True)
    print(f"\n{n_cases} cases (seed {seed}), {n_cases - cases_failed} pass, "
          f"{cases_failed} fail, {time.time() - t0:.0f} s")
    print("features generated (cases):", dict(sorted(tags.items())))
    for key, c in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{c:6d}  {key}")
    for key, (small, f) in firsts.items():
        again = [x.where for x in _check_any(small, f) if x.key == f.key][:1]
        print(f"\n=== {key}\n{again or f.where}\n{reproducer(small)}")
