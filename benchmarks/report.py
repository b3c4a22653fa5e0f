"""Tables per workload and the summary of targets."""

from __future__ import annotations


def _fmt_us(s):
    us = s * 1e6
    return f"{us:,.1f}" if us < 100 else f"{us:,.0f}"


NOISY = 1.5   # median / min above this: the row was hit by contention


def noisy(row) -> bool:
    return row["median_s"] > NOISY * row["min_s"]


def _fmt(v, spec, dash="—"):
    return dash if v is None else format(v, spec)


def adjit_row(rows, fwd_only=False):
    """The adjit entry the ratios refer to: llvm when present, else the interpreter."""
    for name in (("adjit", "adjit interp") if not fwd_only else
                 ("adjit (loss only)", "adjit interp (loss only)")):
        for r in rows:
            if r["name"] == name:
                return r
    return None


def table(res) -> str:
    rows = res["rows"]
    ref = adjit_row(rows)
    ref_name = ref["name"] if ref else "adjit"
    head = (f"### {res['key']} — {res['title']} ({res['dtype']}"
            + (f", batch {res['batch']}" if res["batch"] else "") + ")\n")
    if res["flops"]:
        head += f"matmul FLOPs per call: {res['flops'] / 1e6:,.2f} M\n"
    if res.get("peak"):
        head += (f"machine peak (numpy float32 GEMM 2048³, same threads): "
                 f"{res['peak']:.1f} GFLOP/s\n")
    lines = [head, f"| implementation | median µs | min µs | {ref_name}/peer | GFLOP/s | compile s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        flops = res["fwd_flops"] if r["fwd_only"] else res["flops"]
        gf = flops / r["median_s"] / 1e9 if flops else None
        ratio = r.get("ratio") if not r["fwd_only"] else None
        comp = _fmt(r.get("compile_s"), ".2f")
        if r.get("compile_warm_s") is not None:
            comp += f" (cached {r['compile_warm_s']:.2f})"
        name = r["name"] + (f" [{r['note']}]" if r.get("note") else "")
        mark = " *" if noisy(r) else ""
        lines.append(f"| {name} | {_fmt_us(r['median_s'])}{mark} | {_fmt_us(r['min_s'])} | "
                     f"{_fmt(ratio, '.2f')} | {_fmt(gf, '.1f')} | {comp} |")
    for name, why in res["skipped"]:
        lines.append(f"| {name} | skipped: {why[:110]} | | | | |")
    for name, why in res["failed"]:
        lines.append(f"| {name} | FAILED CHECK: {why} | | | | |")
    if any(noisy(r) for r in rows):
        lines.append(f"\n\\* median > {NOISY}× min: contention from other processes; "
                     "trust this row's ratios less")
    fwd = adjit_row(rows, fwd_only=True)
    if ref and fwd:
        lines.append(f"\n{ref_name} value-and-grad / loss-only: "
                     f"{ref['median_s'] / fwd['median_s']:.2f}")
    npf = next((r for r in rows if r["name"] == "numpy (loss only)"), None)
    npv = next((r for r in rows if r["name"] == "numpy"), None)
    if npf and npv:
        lines.append(f"numpy value-and-grad / loss-only: {npv['median_s'] / npf['median_s']:.2f}")
    return "\n".join(lines) + "\n"


def _peers(rows):
    return [r for r in rows if not r["is_adjit"] and not r["fwd_only"]]


def _verdict(ok, rows=()):
    if ok is None:
        return "n/a"
    v = "met" if ok else "MISSED"
    if any(noisy(r) for r in rows if r):
        v += " (noisy, rerun)"
    return v


W4_PEAK_SHARE = 0.85


def targets(results, machine: dict | None = None) -> str:
    """One line per target: the measured figure and met/MISSED.  ``machine``: the measured
    peaks (``fma_f32``, ``cores``, ...; run.py's MACHINE) -- W4 is then judged against
    85 % of the FMA peak of the cores used, else against the old fixed 170 GFLOP/s."""
    by_key = {r["key"]: r for r in results}
    lines = ["| target | measured | verdict |", "|---|---|---|"]

    def add(text, value, ok, *rows):
        lines.append(f"| {text} | {value} | {_verdict(ok, rows)} |")

    def entry(key):
        res = by_key.get(key)
        if res is None:
            return None, None
        return res, adjit_row(res["rows"])

    res, a = entry("W1")
    if res:
        py = next((r for r in res["rows"] if r["name"] == "plain Python"), None)
        if a and py:
            x = py.get("ratio") or a["median_s"] / py["median_s"]
            add(f"W1 {a['name']} ≤ 1.5× plain Python", f"{x:.2f}×", x <= 1.5, a, py)
        else:
            add("W1 adjit ≤ 1.5× plain Python", "no adjit or plain Python entry (--peers python,llvm)", None)
    for key, limit in (("W3", 0.45), ("W5", 0.45), ("W6", 0.45), ("W7", 0.5), ("W8", 0.5),
                       ("W9", 0.5), ("W10", 0.9), ("W11", 0.5), ("W12", 0.5)):
        res, a = entry(key)
        if not res:
            continue
        peers = _peers(res["rows"])
        if key == "W11":      # the issue's peers: jax jacrev / jacfwd, torch.func
            peers = [r for r in peers if r["name"].startswith(("jax", "torch"))]
        if a and peers:
            best = min(peers, key=lambda r: r["median_s"])
            x = best.get("ratio") or a["median_s"] / best["median_s"]
            add(f"{key} {a['name']} ≤ {limit}× best peer", f"{x:.2f}× {best['name']}",
                x <= limit, a, best)
        else:
            add(f"{key} adjit ≤ {limit}× best peer", "no adjit entry", None)
    for key in ("W2/f32", "W2/f64", "W4"):
        res, a = entry(key)
        if not res:
            continue
        npv = next((r for r in res["rows"] if r["name"] == "numpy"), None)
        if a and npv:
            x = npv.get("ratio") or a["median_s"] / npv["median_s"]
            add(f"{key} {a['name']} ≤ 0.9× numpy", f"{x:.2f}×", x <= 0.9, a, npv)
        else:
            add(f"{key} adjit ≤ 0.9× numpy", "no adjit entry", None)
        if key == "W4":
            peak = (machine or {}).get("fma_f32")
            if a and peak:
                gf = res["flops"] / a["median_s"] / 1e9
                add(f"W4 {a['name']} ≥ {W4_PEAK_SHARE:.0%} of the FMA peak ({peak:.0f} GFLOP/s "
                    f"f32 on {machine.get('cores')} core{'s' * (machine.get('cores') != 1)})",
                    f"{gf:.1f} GFLOP/s = {gf / peak:.0%} of peak", gf >= W4_PEAK_SHARE * peak, a)
            elif a:
                gf = res["flops"] / a["median_s"] / 1e9
                add(f"W4 {a['name']} ≥ 170 GFLOP/s", f"{gf:.1f} GFLOP/s", gf >= 170, a)
            else:
                add("W4 adjit ≥ 170 GFLOP/s", "no adjit entry", None)
    for key in ("W2/f32", "W2/f64", "W3", "W4", "W5"):
        res, a = entry(key)
        if not res:
            continue
        f = adjit_row(res["rows"], fwd_only=True)
        if a and f:
            x = a["median_s"] / f["median_s"]
            add(f"{key} {a['name']} value-and-grad / loss-only ≤ 2.5", f"{x:.2f}", x <= 2.5, a, f)
        else:
            add(f"{key} adjit value-and-grad / loss-only ≤ 2.5", "no adjit entry", None)
    return "\n".join(lines) + "\n"
