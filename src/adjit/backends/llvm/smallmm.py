"""Matrix products with a small weight matrix, as plain loops with static trip counts.

A GEMM call costs 1-2 us before it multiplies anything (argument checks, blocking, edge
tiles through a stack tile), which dominated models such as a 16-layer 32x32 network.
When the operand that does not involve the batch is small (at most SMALL_ELEMS
elements), the product is emitted inline instead, in the loop order that keeps the
small operand or the output row in L1 and gives the vectorizer a static inner loop:

* ``C = A B``:       for i: C[i,:] = 0; for k: C[i,:] += A[i,k] * B[k,:]
* ``C = A B^T``:     for i, j: C[i,j] = dot(A[i,:], B[j,:])          (reassoc reduction)
* ``C = A^T B``:     C = 0; for k: for i: C[i,:] += A[k,i] * B[k,:]  (streams A, B once)
* ``C = A^T B^T``:   for i, j: C[i,j] = sum_k A[k,i] B[j,k]

Every dimension is a symbolic size (static or the batch), so any batch size works.
"""
from __future__ import annotations

from llvmlite import ir

from .loops import REDUCE_FLAGS, for_range, reduce_range, size_value
from .plan import Size, dim

SMALL_ELEMS = 4096      # e.g. a 64 x 64 weight matrix


def static_elems(*dims) -> int | None:
    """Product of the static dims (None dims skipped); None if every dim is the batch."""
    sizes = [d for d in dims if d is not None]
    out = 1
    for d in sizes:
        out *= d
    return out if sizes else None


def is_small(M, N, K) -> bool:
    """True when the product is cheap to do inline: a small static operand or output."""
    if None not in (M, N, K):
        return M * N * K <= SMALL_ELEMS * 8
    static = static_elems(*(d for d in (M, N, K)))
    return static is not None and static <= SMALL_ELEMS and sum(d is None for d in (M, N, K)) == 1


def emit_small_matmul(b: ir.IRBuilder, out, pa, pb, ta: bool, tb: bool, M, N, K, lda, ldb,
                      batch, T: ir.Type) -> None:
    """Emit ``out[M,N] = op(A) @ op(B)`` into the current block (dims: int or None)."""
    sv = lambda d: size_value(b, dim(d) if not isinstance(d, Size) else d, batch)  # noqa: E731
    m, n, k = sv(M), sv(N), sv(K)
    lda_v, ldb_v = sv(lda), sv(ldb)
    zero = ir.Constant(T, 0.0)

    def a_at(i, kk):   # op(A)[i, kk]
        idx = b.add(b.mul(kk, lda_v), i) if ta else b.add(b.mul(i, lda_v), kk)
        return b.load(b.gep(pa, [idx]))

    def b_at(kk, j):   # op(B)[kk, j]
        idx = b.add(b.mul(j, ldb_v), kk) if tb else b.add(b.mul(kk, ldb_v), j)
        return b.load(b.gep(pb, [idx]))

    def c_ptr(i, j):
        return b.gep(out, [b.add(b.mul(i, n), j)])

    if tb:   # dot products along k
        with for_range(b, m, "i") as i:
            with for_range(b, n, "j") as j:
                acc = reduce_range(b, k, zero, lambda kk, acc: b.fadd(
                    acc, b.fmul(a_at(i, kk), b_at(kk, j), flags=REDUCE_FLAGS),
                    flags=REDUCE_FLAGS))
                b.store(acc, c_ptr(i, j))
        return
    def axpy(i, kk):   # C[i,:] += op(A)[i,kk] * op(B)[kk,:]
        a = a_at(i, kk)
        with for_range(b, n, "j") as j:
            p = c_ptr(i, j)
            b.store(b.fadd(b.load(p), b.fmul(a, b_at(kk, j), flags=("contract",)),
                           flags=("contract",)), p)

    if not ta:   # row by row: C[i,:] accumulates rows of B
        with for_range(b, m, "i") as i:
            with for_range(b, n, "j0") as j:
                b.store(zero, c_ptr(i, j))
            with for_range(b, k, "k") as kk:
                axpy(i, kk)
        return
    with for_range(b, b.mul(m, n), "z") as z:   # A^T B: stream A and B once
        b.store(zero, b.gep(out, [z]))
    with for_range(b, k, "k") as kk:
        with for_range(b, m, "i") as i:
            axpy(i, kk)
