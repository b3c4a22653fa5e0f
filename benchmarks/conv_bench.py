"""Single convolution layers, forward + backward: adjit (llvm) against PyTorch eager.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/conv_bench.py
    python benchmarks/conv_bench.py --cases lenet1,res --rounds 15
    python benchmarks/conv_bench.py --single      # one CPU, CPU time (a busy machine)

Each case computes ``loss = Σ conv2d(x, W) · u`` (``u`` a fixed random cotangent) with its
gradients in ``x`` and ``W``: the forward product, ``x̄ = conv_transpose(ū, W)`` and
``W̄ = conv_weight(x, ū)``, i.e. three products of ``2·N·C_out·ΠO·C_in·ΠK`` flops each
(the GFLOP/s column counts those three).  The cases are the convolutions of W9 (LeNet-5,
batch 64, 1×28×28) and W10 (a residual stage, 32×64×32×32, 3×3 convs 64→64).

Timing: rounds alternate the implementations (each round: a block of calls of each,
the time per call of the block); printed are the median over rounds and the spread
(min-max), in ms, with ``lscpu``'s model name and the thread counts.  PyTorch is optional
(skipped when not installed).  ``--single`` pins the process to one CPU (adjit's pool then
starts no worker; PyTorch gets one thread) and reads the process's CPU time instead of
the wall clock: the work of each implementation, unmoved by other processes' load (which
the two-thread wall times on a shared machine are not).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import numpy as np

import adjit as aj

# name: (N, C, H, W), (C_out, C, kH, kW), padding
CASES = {
    "lenet1": ((64, 1, 28, 28), (6, 1, 5, 5), 2),
    "lenet2": ((64, 6, 14, 14), (16, 6, 5, 5), 0),
    "res": ((32, 64, 32, 32), (64, 64, 3, 3), 1),
}


def cpu_line() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name"))
    except (OSError, StopIteration):
        model = "unknown"
    return f"{model}, {os.cpu_count()} CPUs"


def flops(xs, ws, pad) -> float:
    N, C, H, W = xs
    Co, _, kh, kw = ws
    oh, ow = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
    return 3 * 2.0 * N * Co * oh * ow * C * kh * kw


def data(xs, ws, pad, seed=0):
    rng = np.random.default_rng(seed)
    N, _, H, W = xs
    oh, ow = H + 2 * pad - ws[2] + 1, W + 2 * pad - ws[3] + 1
    return (rng.standard_normal(xs).astype("float32"),
            (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype("float32"),
            rng.standard_normal((N, ws[0], oh, ow)).astype("float32"))


def adjit_fn(xs, ws, pad, x, W, u, profile=False):
    xn = aj.input("x", (None,) + xs[1:], "float32")
    Wn = aj.param("W", ws, "float32")
    un = aj.input("u", (None,) + u.shape[1:], "float32")
    loss = aj.sum(aj.conv2d(xn, Wn, padding=pad) * un)
    f = aj.compile([loss] + list(aj.grad(loss, [xn, Wn])), backend="llvm", profile=profile)
    return f, (lambda: f(x=x, W=W, u=u))


def torch_fn(pad, x, W, u):
    try:
        import torch
    except ImportError:
        return None
    tx, tW, tu = (torch.from_numpy(a) for a in (x, W, u))

    def run():
        xa = tx.clone().requires_grad_(True)
        Wa = tW.clone().requires_grad_(True)
        loss = (torch.nn.functional.conv2d(xa, Wa, padding=pad) * tu).sum()
        gx, gW = torch.autograd.grad(loss, [xa, Wa])
        return loss.item(), gx.numpy(), gW.numpy()
    return run, torch


CLOCK = time.perf_counter


def block(fn, min_s=0.05) -> float:
    n, t0 = 0, CLOCK()
    while n < 2 or CLOCK() - t0 < min_s:
        fn()
        n += 1
    return (CLOCK() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--profile", action="store_true", help="print adjit's per-step table")
    ap.add_argument("--single", action="store_true",
                    help="one CPU, one thread each, CPU time instead of wall time")
    a = ap.parse_args(argv)
    global CLOCK
    tline, what = "", "wall time"
    if a.single:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        CLOCK, what = time.process_time, "CPU time on one CPU"
        try:
            import torch
            torch.set_num_threads(1)
        except ImportError:
            pass
    print(f"# CPU {cpu_line()}, float32, forward + backward (loss, x̄, W̄), {what}")
    for name in a.cases.split(","):
        xs, ws, pad = CASES[name]
        x, W, u = data(xs, ws, pad)
        f, run = adjit_fn(xs, ws, pad, x, W, u, profile=a.profile)
        impls = {"adjit": run}
        t = torch_fn(pad, x, W, u)
        if t is not None:
            impls["torch"], torch = t[0], t[1]
            tline = f", torch {torch.__version__} with {torch.get_num_threads()} threads"
            got, want = run(), t[0]()
            for g, w in zip(got, want):
                err = np.max(np.abs(np.asarray(g) - w)) / max(np.max(np.abs(w)), 1e-30)
                assert err < 1e-3, f"{name}: adjit and torch differ (scaled error {err:.2g})"
        for fn in impls.values():
            block(fn)
        times = {k: [] for k in impls}
        for _ in range(a.rounds):
            for k, fn in impls.items():
                times[k].append(block(fn))
        gf = flops(xs, ws, pad)
        print(f"## {name}: x {xs}, W {ws}, padding {pad}, {gf / 3e9:.3f} GFLOP per product")
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"  {k:6s} {med * 1e3:8.2f} ms  [{min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f}]"
                  f"  {gf / med / 1e9:6.1f} GFLOP/s")
        if "torch" in times:
            ratio = statistics.median(times["adjit"]) / statistics.median(times["torch"])
            print(f"  adjit / torch = {ratio:.2f}")
        if a.profile:
            f.reset_profile()
            for _ in range(10):
                run()
            print(f.profile(top=12))
    print(f"#{tline}")


if __name__ == "__main__":
    main()
