"""W2, W4 and the 4096-wide MLP step, and one big GEMM, on adjit's ptx backend against PyTorch.

    python benchmarks/ptx_bench.py [--budget 2.0] [--workloads W2,W4,G4096,GEMM]

``G4096`` is issue 17's 4096 -> 4096 ReLU -> 4096 ReLU -> 10 softmax cross-entropy step at
batch 4096 in float32 (TFLOP/s printed; torch also with TF32 allowed); ``GEMM`` is one
4096 x 4096 x 4096 float32 product, adjit's device time against ``torch.mm`` (cuBLAS) in
FP32 and TF32 (the issue's target: >= 0.8x cuBLAS FP32).

Needs a CUDA GPU, ``cuda-python`` (``pip install 'adjit[cuda]'``) and, for the peer, a CUDA
build of PyTorch.  One step = loss and every parameter gradient.  Rows per workload:

* ``adjit ptx``            -- ``f(**arrays)``: numpy in, numpy out (uploads, launches, downloads)
* ``adjit ptx (device)``   -- the same launch sequence on resident buffers (``replay``)
* ``adjit ptx tf32`` / ``bf16`` -- ``precision=``: float32 products on tensor cores (checked
  to 8 unit roundoffs of the precision, scaled by each output's largest entry)
* ``adjit ptx resident step`` -- a bound SGD step (``updates=``): parameters on the device,
  the batch uploaded, the loss downloaded (the issue-17 training-step row)
* ``torch eager (device)`` -- ``loss.backward()`` on tensors already on the GPU
* ``torch eager (numpy)``  -- the same with host -> device copies in and gradients copied out

Every entry is first checked against adjit's numpy interpreter (the workload's rtol).  Times
are medians over interleaved blocks (benchmarks/timing.py); GPU work is synchronized.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import adjit as aj  # noqa: E402
from models import build, feeds  # noqa: E402
from timing import measure  # noqa: E402
from workloads import Workload, select, make_data  # noqa: E402

G4096 = Workload("G4096", "G4096", "4096 -> 4096 ReLU -> 4096 ReLU -> 10, softmax cross-entropy",
                 "float32", 4096, (4096, 4096, 4096, 10), ("relu", "relu", "linear"), "xent",
                 seed=1701)


def _torch_entries(wl, data):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {}, "torch is not installed"
    if not torch.cuda.is_available():
        return {}, "torch has no CUDA device"
    dev = torch.device("cuda")
    names = wl.param_names()
    acts = {"sigmoid": torch.sigmoid, "relu": torch.relu, "linear": lambda z: z}

    def step(x, t, params):
        h = x
        for i, (_, _, act) in enumerate(wl.layers()):
            h = acts[act](torch.addmm(params[2 * i + 1], h, params[2 * i]))
        if wl.loss == "mse":
            loss = 0.5 * ((h - t) ** 2).sum() / h.shape[0]
        else:
            loss = F.cross_entropy(h, t.argmax(dim=1))
        grads = torch.autograd.grad(loss, params)
        return [loss, *grads]

    x = torch.tensor(data["inputs"]["x"], device=dev)
    t = torch.tensor(data["inputs"]["t"], device=dev)
    params = [torch.tensor(data["params"][n], device=dev, requires_grad=True) for n in names]

    def resident():
        out = step(x, t, params)
        torch.cuda.synchronize()
        return out

    def from_numpy():
        xs = torch.from_numpy(data["inputs"]["x"]).to(dev)
        ts = torch.from_numpy(data["inputs"]["t"]).to(dev)
        ps = [torch.from_numpy(data["params"][n]).to(dev).requires_grad_() for n in names]
        return [o.detach().cpu().numpy() for o in step(xs, ts, ps)]

    def resident_tf32():
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return resident()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False

    to_np = lambda out: [o.detach().cpu().numpy() if hasattr(o, "detach") else o for o in out]
    torch.backends.cuda.matmul.allow_tf32 = False
    entries = {"torch eager (device)": (resident, to_np),
               "torch eager (numpy)": (from_numpy, lambda out: out)}
    if wl.key == "G4096":
        entries["torch TF32 (device)"] = (resident_tf32, None)
    return entries, ""


def _resident_step(wl, data, outs, emulate: bool, graphs: bool = True):
    """A bound SGD step on the device (``resident=True``): (batch in, loss out) per call;
    ``graphs``: its launches replayed as a CUDA graph."""
    leaves = {n.name: n for n in aj.Graph(outs).inputs}
    names = wl.param_names()
    updates = {leaves[n]: leaves[n] - 1e-3 * g for n, g in zip(names, outs[1:])}
    step = aj.compile(outs[0], backend="ptx", updates=updates, emulate=emulate,
                      resident=True, graphs=graphs)
    g = step.bind(**{n: np.array(data["params"][n], copy=True) for n in names})
    batch = {k: v for k, v in feeds(data).items() if k not in names}
    g(**batch)                                               # state uploaded, graph captured
    return lambda: g(**batch)


class Entry:
    def __init__(self, name, fn, to_numpy, rtol=None):
        self.name, self.fn, self.to_numpy, self.rtol = name, fn, to_numpy, rtol


# scaled error allowed for a precision= entry: 8 unit roundoffs of its operands (the
# bound of tests/ptx/test_ptx_mma.py's GPU block)
PRECISION_RTOL = {"tf32": 8 * 2.0 ** -11, "bf16": 8 * 2.0 ** -8}


def run(wl, budget: float, emulate: bool = False) -> None:
    data = make_data(wl)
    kw = feeds(data)
    outs = build(wl)
    want = aj.compile(outs, backend="interp")(**kw)
    f = aj.compile(outs, backend="ptx", emulate=emulate)
    entries = [Entry("adjit ptx", lambda: f(**kw), lambda o: list(o))]
    f(**kw)                                                  # buffers for this batch size
    entries.append(Entry("adjit ptx (device)", lambda: f._impl.replay(wl.batch), None))
    entries.append(Entry("adjit ptx resident step", _resident_step(wl, data, outs, emulate), None))
    entries.append(Entry("adjit ptx resident, no graph",
                         _resident_step(wl, data, outs, emulate, graphs=False), None))
    if wl.dtype == "float32":
        for prec in ("tf32", "bf16"):      # checked against the workload's rtol below
            fp = aj.compile(outs, backend="ptx", emulate=emulate, precision=prec)
            fp(**kw)
            entries.append(Entry(f"adjit ptx {prec}", lambda fp=fp: fp(**kw), list,
                                 PRECISION_RTOL[prec]))
            entries.append(Entry(f"adjit ptx {prec} (device)",
                                 lambda fp=fp: fp._impl.replay(wl.batch), None))
    peers, why = _torch_entries(wl, data)
    entries += [Entry(n, fn, conv) for n, (fn, conv) in peers.items()]
    print(f"\n{wl.key}: {wl.title}, batch {wl.batch}, {wl.dtype}; GPU {f.device.name} "
          f"({f.device.arch}){'; ' + why if why else ''}")
    for e in entries:
        if e.to_numpy is None:
            continue
        got = e.to_numpy(e.fn())
        worst = max(float(np.max(np.abs(np.asarray(g, np.float64) - w)))
                    / max(float(np.max(np.abs(w))), 1e-30) for g, w in zip(got, want))
        status = "ok" if worst <= (e.rtol or wl.rtol) else "WRONG"
        print(f"  check {e.name:<22} max scaled error {worst:.2g} ({status})")
    _report(measure(entries, budget), "adjit ptx (device)", wl.flops())


def _report(samples, base_name, flops=None):
    base = statistics.median(samples[base_name])
    for name, s in samples.items():
        med = statistics.median(s)
        rate = f"   {flops / med / 1e12:6.1f} TFLOP/s" if flops else ""
        print(f"  {name:<24} median {med * 1e6:10.1f} µs   min {min(s) * 1e6:10.1f} µs   "
              f"x{med / base:5.2f} of {base_name}{rate}")


def run_gemm(n: int, budget: float, emulate: bool = False) -> None:
    """One n x n x n float32 product: adjit's launch (device time) against torch.mm."""
    rng = np.random.default_rng(17)
    A = rng.standard_normal((n, n)).astype("float32")
    W = rng.standard_normal((n, n)).astype("float32")
    a, w = aj.input("a", (n, n), "float32"), aj.param("w", (n, n), "float32")
    f = aj.compile(a @ w, backend="ptx", emulate=emulate)
    got = f(a=A, w=W)
    want = A.astype(np.float64) @ W.astype(np.float64)
    err = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
    print(f"\nGEMM {n}x{n}x{n} float32; GPU {f.device.name} ({f.device.arch}); "
          f"max scaled error {err:.2g}; kernels: "
          + ", ".join(line.split()[0] for line in f.launch_plan.splitlines()))
    entries = [Entry("adjit ptx (device)", lambda: f._impl.replay(0), None)]
    for prec in ("tf32", "bf16"):
        fp = aj.compile(a @ w, backend="ptx", emulate=emulate, precision=prec)
        fp(a=A, w=W)
        entries.append(Entry(f"adjit ptx {prec} (device)", lambda fp=fp: fp._impl.replay(0), None))
    try:
        import torch
        if torch.cuda.is_available():
            ta, tw = torch.tensor(A, device="cuda"), torch.tensor(W, device="cuda")

            def mm(tf32):
                def go():
                    torch.backends.cuda.matmul.allow_tf32 = tf32
                    out = torch.mm(ta, tw)
                    torch.cuda.synchronize()
                    return out
                return go
            entries += [Entry("torch.mm FP32 (cuBLAS)", mm(False), None),
                        Entry("torch.mm TF32 (cuBLAS)", mm(True), None)]
    except ImportError:
        print("  (torch is not installed: no cuBLAS peer)")
    _report(measure(entries, budget), "adjit ptx (device)", 2.0 * n ** 3)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timing per workload")
    ap.add_argument("--workloads", default="W2,W4,G4096,GEMM")
    ap.add_argument("--gemm", type=int, default=4096, help="the GEMM row's size")
    ap.add_argument("--emulate", action="store_true",
                    help="smoke-test this script without a GPU (CPU grid emulation; not a timing)")
    args = ap.parse_args(argv)
    if not args.emulate:
        try:
            from adjit.backends.ptx.device import CudaDevice
            CudaDevice()
        except aj.AdjitError as e:
            raise SystemExit(f"ptx_bench needs a CUDA GPU: {e}")
    names = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    for name in names:
        if name == "GEMM":
            run_gemm(args.gemm, args.budget, args.emulate)
        elif name == "G4096":
            run(G4096, args.budget, args.emulate)
        else:
            for wl in select([name]):
                run(wl, args.budget, args.emulate)


if __name__ == "__main__":
    main()
