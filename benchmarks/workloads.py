"""The reference workloads (see WORKLOADS.md): specs, data and FLOP counts.

W7 and W8 (attention, RNN) keep their sizes, data, FLOP counts and numpy reference in
``seq_workloads.py``, W9 and W10 (LeNet-5, residual stage) in ``conv_workloads.py``; their
``kind`` is "w7" ... "w10" (the MLP workloads' is "mlp").

Conventions shared by every implementation:
  * weights are stored (in, out) and a layer computes z = h @ W + b;
  * parameters are named W1, b1, W2, b2, ... (W1 has the scalar names w, b);
  * every implementation returns ``[loss, grad_1, ..., grad_n]`` in parameter
    order -- for the HVP workload (W6) it returns ``[loss, Hv_1, ..., Hv_n]``.

Data: a fixed seed per workload, standard normal inputs, weights ~ N(0, 1) /
sqrt(fan_in), biases ~ 0.1 * N(0, 1) (non-zero so no gradient path is trivially
zero), one-hot targets for cross-entropy, standard normal targets for the
squared-error losses, HVP directions ~ N(0, 1).  Data are drawn in float64 and
then cast, so the float64 reference sees exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import conv_workloads
import jac_workloads
import seq_workloads

W1_LAMBDA = 0.01  # weight-decay coefficient of W1


@dataclass(frozen=True)
class Workload:
    key: str                      # e.g. "W2/f32"
    group: str                    # e.g. "W2" (the table a result belongs to)
    title: str
    dtype: str                    # "float32" | "float64"
    batch: int                    # 0 for the scalar workload W1
    sizes: tuple = ()             # layer widths, e.g. (784, 128, 10)
    acts: tuple = ()              # activation after each layer
    loss: str = "mse"             # "mse" | "xent" | "scalar"
    hvp: bool = False             # W6: Hessian-vector product
    per_example: bool = False     # W12: per-example gradients (pex_bench.py)
    seed: int = 0
    kind: str = "mlp"             # "mlp" | "w7" | "w8" (seq_workloads.py) | "w9" | "w10"
                                  # (conv_workloads.py)
    notes: str = field(default="", compare=False)

    @property
    def seq(self) -> bool:
        return self.kind != "mlp"

    @property
    def module(self):
        """The module holding a W7-W10 workload's sizes, data, FLOPs and numpy reference."""
        if self.kind == "w11":
            return jac_workloads
        return conv_workloads if self.kind in ("w9", "w10") else seq_workloads

    @property
    def scalar(self) -> bool:
        return self.loss == "scalar"

    @property
    def rtol(self) -> float:
        if self.kind == "w10":
            # 4 M ReLUs behind batch norm: rounding flips the few within ~1e-7 of their
            # kink. Perturbing the float64 data by float32-sized noise (6e-8 relative)
            # moves the exact gradients by up to 4.2e-4 of their largest entry; numpy,
            # JAX and adjit in float32 measure 1.1e-4 to 4.2e-4, torch.compile 6e-4 to 3e-3
            return 5e-3
        return 1e-4 if self.dtype == "float32" else 1e-9

    def param_names(self) -> list[str]:
        if self.scalar:
            return ["w", "b"]
        if self.seq:
            return list(self.module.param_shapes(self.kind))
        names = []
        for i in range(1, len(self.sizes)):
            names += [f"W{i}", f"b{i}"]
        return names

    def layers(self):
        """(fan_in, fan_out, activation) per layer."""
        return [(self.sizes[i], self.sizes[i + 1], self.acts[i])
                for i in range(len(self.sizes) - 1)]

    def flops(self) -> float | None:
        """Matmul FLOPs of one call, 2*M*N*K per matmul.

        Value-and-grad: forward + dW of every layer + dX of every layer but
        the first.  HVP (forward-over-reverse, as the numpy R-op computes it):
        forward 1, R-forward 1 (+1 past the first layer), dW 1, dX (past the
        first layer) 1, R-dW 1 (+1 past the first layer), R-dX (past the first
        layer) 2 matmuls of the layer's size.
        """
        if self.scalar:
            return None
        if self.seq:
            return self.module.flops(self.kind)[0]
        total = 0.0
        for i, (k, n, _) in enumerate(self.layers()):
            unit = 2.0 * self.batch * k * n
            inner = 1 if i > 0 else 0
            if self.hvp:
                total += unit * (1 + (1 + inner) + 1 + inner + (1 + inner) + 2 * inner)
            else:
                total += unit * (1 + 1 + inner)
        return total

    def forward_flops(self) -> float | None:
        if self.scalar:
            return None
        if self.seq:
            return self.module.flops(self.kind)[1]
        return sum(2.0 * self.batch * k * n for k, n, _ in self.layers())


def _all() -> list[Workload]:
    wl = [Workload("W1", "W1", "scalar logistic unit, 0.5 (y-t)^2 + lam/2 w^2",
                   "float64", 0, loss="scalar", seed=101)]
    for dt, seed in (("float32", 201), ("float64", 202)):
        wl.append(Workload(f"W2/f{dt[5:]}", "W2",
                           "784 -> 128 sigmoid -> 10 linear, squared error",
                           dt, 64, (784, 128, 10), ("sigmoid", "linear"), "mse", seed=seed))
    wl.append(Workload("W3", "W3", "64 -> 128 ReLU -> 64 ReLU -> 10, softmax cross-entropy",
                       "float32", 32, (64, 128, 64, 10), ("relu", "relu", "linear"),
                       "xent", seed=301))
    wl.append(Workload("W4", "W4", "1024 -> 1024 ReLU -> 1024 ReLU -> 10, softmax cross-entropy",
                       "float32", 256, (1024, 1024, 1024, 10), ("relu", "relu", "linear"),
                       "xent", seed=401))
    wl.append(Workload("W5", "W5", "16 x [Linear(32, 32) + tanh], squared error",
                       "float64", 16, (32,) * 17, ("tanh",) * 16, "mse", seed=501))
    wl.append(Workload("W6", "W6", "Hessian-vector product of W3's loss, all parameters",
                       "float32", 32, (64, 128, 64, 10), ("relu", "relu", "linear"),
                       "xent", hvp=True, seed=601))
    wl.append(Workload("W12", "W12", "per-example gradients of W3's loss, all parameters",
                       "float32", 32, (64, 128, 64, 10), ("relu", "relu", "linear"),
                       "xent", per_example=True, seed=1201))
    c7, c8 = seq_workloads.W7, seq_workloads.W8
    wl.append(Workload("W7", "W7", f"embedding {c7['vocab']}x{c7['dim']} + {c7['heads']}-head "
                       f"self-attention (T={c7['T']}) + mean-pooled linear, cross-entropy",
                       "float32", c7["B"], loss="xent", seed=701, kind="w7"))
    wl.append(Workload("W8", "W8", f"Elman RNN T={c8['T']}, input {c8['input']}, hidden "
                       f"{c8['hidden']}, last h -> linear, cross-entropy",
                       "float32", c8["B"], loss="xent", seed=801, kind="w8"))
    c10 = conv_workloads.W10
    wl.append(Workload("W9", "W9", "LeNet-5 on 1x28x28: conv 1->6 5x5 pad 2, ReLU, max-pool 2, "
                       "conv 6->16 5x5, ReLU, max-pool 2, 400 -> 120 ReLU -> 84 ReLU -> 10, "
                       "cross-entropy", "float32", conv_workloads.W9["B"], loss="xent",
                       seed=901, kind="w9"))
    wl.append(Workload("W10", "W10", f"residual stage on {c10['C']}x{c10['S']}x{c10['S']}: "
                       f"{c10['blocks']} basic blocks (3x3 conv, batch norm, ReLU, 3x3 conv, "
                       "batch norm, + input, ReLU), global average pool, linear 64 -> 10, "
                       "cross-entropy", "float32", c10["B"], loss="xent", seed=1001, kind="w10"))
    wl.append(Workload("W11", "W11", "per-example Jacobian of W2's 10 outputs w.r.t. its 784 "
                       "inputs (784 -> 128 sigmoid -> 10)", "float32",
                       jac_workloads.W11["B"], seed=1101, kind="w11"))
    return wl


WORKLOADS: list[Workload] = _all()


def select(groups: list[str] | None) -> list[Workload]:
    if not groups:
        return list(WORKLOADS)
    wanted = {g.strip().upper() for g in groups if g.strip()}
    out = [w for w in WORKLOADS if w.group in wanted or w.key.upper() in wanted]
    unknown = wanted - {w.group for w in out} - {w.key.upper() for w in out}
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return out


def make_data(wl: Workload) -> dict:
    """Deterministic data for one workload.

    Returns {"inputs": {...}, "params": {...} (ordered), "dirs": {...} (W6),
    "consts": {...}, "labels": int array (cross-entropy only)}.
    """
    if wl.seq:
        return wl.module.make_data(wl.kind, wl.seed, wl.dtype)
    rng = np.random.default_rng(wl.seed)
    dt = np.dtype(wl.dtype)
    if wl.scalar:
        x, w, b = rng.standard_normal(3)
        t = rng.uniform(0.0, 1.0)
        arr = lambda v: np.asarray(v, dtype=dt)  # noqa: E731  (0-d arrays)
        return {"inputs": {"x": arr(x), "t": arr(t)},
                "params": {"w": arr(w), "b": arr(0.1 * b)},
                "dirs": {}, "consts": {"lam": W1_LAMBDA}}
    B = wl.batch
    X = rng.standard_normal((B, wl.sizes[0]))
    params = {}
    for i, (k, n, _) in enumerate(wl.layers(), start=1):
        params[f"W{i}"] = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dt)
        params[f"b{i}"] = (0.1 * rng.standard_normal(n)).astype(dt)
    labels = None
    if wl.loss == "xent":
        labels = rng.integers(0, wl.sizes[-1], size=B)
        T = np.zeros((B, wl.sizes[-1]))
        T[np.arange(B), labels] = 1.0
    else:
        T = rng.standard_normal((B, wl.sizes[-1]))
    dirs = {}
    if wl.hvp:
        dirs = {name: rng.standard_normal(p.shape).astype(dt) for name, p in params.items()}
    return {"inputs": {"x": X.astype(dt), "t": T.astype(dt)}, "params": params,
            "dirs": dirs, "consts": {}, "labels": labels}


def as_float64(data: dict) -> dict:
    """The same data in float64 (exact widening) for the reference run; integer arrays
    (W7's token ids) stay integers."""
    def widen(v):
        v = np.asarray(v)
        return v if v.dtype.kind in "iub" else v.astype(np.float64)
    conv = lambda d: {k: widen(v) for k, v in d.items()}  # noqa: E731
    out = dict(data)
    for part in ("inputs", "params", "dirs"):
        out[part] = conv(data[part])
    return out
