"""Packing for the GEMM kernels: operand panels copied into contiguous, zero-padded slivers.

Transposed operands are read PV elements at a time (the parameters' ``PV``: any power of
two 2..16; 8 for f32 and 4 for f64 on AVX2 and AVX-512, 4 / 2 on SSE and NEON) and
transposed in registers.
"""
from __future__ import annotations

import llvmlite.ir as ir

from ..lowering.irkit import at as _at, c32 as _c32, c64 as _c64, function as _function
from ..lowering.irkit import imin as _min, loop as _loop, vload as _vload, vstore as _vstore

I32, I64 = ir.IntType(32), ir.IntType(64)


def _transpose(b, rows):
    """Transpose VL vectors of VL lanes (VL a power of two, 2..16).  8 and 4 lanes: unpack,
    shuffle, 128-bit permute (in-lane shuffles first, as x86 prefers); other widths: log2(VL)
    rounds of the perfect shuffle (row i and row i + VL/2 interleaved, low and high halves)."""
    def sh(x, y, mask):
        return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, len(rows)), mask))
    n = len(rows)
    if n not in (4, 8):
        if n < 2 or n & (n - 1):
            raise ValueError(f"transposes take a power of two of lanes, got {n}")
        h = n // 2
        lo = [j for i in range(h) for j in (i, n + i)]
        hi = [j for i in range(h, n) for j in (i, n + i)]
        for _ in range(n.bit_length() - 1):
            rows = [m for i in range(h) for m in (sh(rows[i], rows[i + h], lo),
                                                   sh(rows[i], rows[i + h], hi))]
        return rows
    if len(rows) == 4:   # interleave (r0,r1), (r2,r3) in 128-bit lanes, then swap halves
        t = [sh(rows[i], rows[i + 1], m) for i in (0, 2) for m in ([0, 4, 2, 6], [1, 5, 3, 7])]
        lo, hi = [0, 1, 4, 5], [2, 3, 6, 7]
        return [sh(t[0], t[2], lo), sh(t[1], t[3], lo), sh(t[0], t[2], hi), sh(t[1], t[3], hi)]
    t = [sh(rows[i], rows[i + 1], m) for i in range(0, 8, 2)
         for m in ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])]
    m44, mee = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    # s[c] holds columns c and c+4 of rows 0-3, s[c+4] the same of rows 4-7
    s = [sh(t[g], t[g + 2], m) for g in (0, 1, 4, 5) for m in (m44, mee)]
    lo, hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return [sh(s[c], s[c + 4], lo) for c in range(4)] + [sh(s[c], s[c + 4], hi) for c in range(4)]


def _chunks(n, VL):
    """Split n lanes into vector pieces of VL, VL/2, ..., 1 lanes: [(offset, length)]."""
    out, off = [], 0
    for ln in (VL >> s for s in range(VL.bit_length())):
        while n - off >= ln:
            out, off = out + [(off, ln)], off + ln
    return out


def emit_pack(module, dt, p, T, W):
    """Pack an n x kc panel into W-wide slivers: dst[s*kc + k*W + w] = src(s+w, k).

    Element (w, k) is ``src[w*ld + k]`` (w_contig == 0) or ``src[k*ld + w]`` (w_contig
    != 0); the last sliver is zero padded to W.  Signature (i32 w_contig, i64 n, i64 kc,
    T* src, i64 ld, T* dst).  Strided rows are read VL k at a time and transposed in
    registers.  Contiguous rows go KB=8 rows at a time across all slivers: row by row
    (one write page per sliver) ran at 3.0 Gelem/s, sliver by sliver (one read page per row)
    at 2.3, 8-row blocks at 5.3 (packing W4's 4 MB B as 128-column chunks: 6-7 Gelem/s,
    against 8.8 for a plain numpy copy of 4 MB; 4- or 8-row blocks alike, 16 and 32 slower,
    software prefetch no help).  The partial last sliver of strided rows takes the same
    transposes (its rows clamped to the last, then zeroed); of contiguous rows, a plain
    scalar loop.
    """
    # transposes of PV x PV blocks (PV <= the micro-kernel's vector lanes)
    VL, esz, KB = p["PV"], (4 if dt == "f32" else 8), 8
    tp, vt = T.as_pointer(), ir.VectorType(T, VL)
    fn, b = _function(module, f"adjit_gemm_{dt}.pack{W}", ir.VoidType(),
                      [I32, I64, I64, tp, I64, tp], "w_contig n kc src ld dst".split(),
                      noalias=(3, 5))
    w_contig, n, kc, src, ld, dst = fn.args
    contig = b.icmp_signed("!=", w_contig, _c32(0))
    nfull = b.mul(b.sdiv(n, _c64(W)), _c64(W))     # columns in full slivers

    def zeros(ty):
        return ir.Constant(ty, [0.0] * ty.count) if isinstance(ty, ir.VectorType) \
            else ir.Constant(ty, 0.0)

    def piece(v, off, ln):   # lanes off..off+ln of vector v
        mask = ir.Constant(ir.VectorType(I32, ln), list(range(off, off + ln)))
        return v if ln == VL else b.shuffle_vector(v, v, mask)

    def copy(s, k):          # contiguous: W elements of row k into sliver s
        row, out = _at(b, src, b.mul(k, ld), s), _at(b, dst, b.mul(s, kc), b.mul(k, _c64(W)))
        for off, ln in _chunks(W, VL):
            piece_t = ir.VectorType(T, ln)
            _vstore(b, _vload(b, _at(b, row, off), piece_t, esz), _at(b, out, off), esz)
    with b.if_else(contig) as (then, other):
        with then:
            kb = b.mul(b.sdiv(kc, _c64(KB)), _c64(KB))
            with _loop(b, 0, kb, KB, "kb") as k0:
                with _loop(b, 0, nfull, W, "sb") as s:
                    for kk in range(KB):
                        copy(s, b.add(k0, _c64(kk)))
            with _loop(b, kb, kc, 1, "kc") as k:
                with _loop(b, 0, nfull, W, "sc") as s:
                    copy(s, k)
        with other:          # W strided rows per sliver: transpose VL x VL blocks
            kv = b.mul(b.sdiv(kc, _c64(VL)), _c64(VL))
            per = 2 if W > VL else 1    # blocks per step (see below)
            kw = b.mul(b.sdiv(kc, _c64(per * VL)), _c64(per * VL))

            def sliver(rows, sl, valid=None):
                """Rows ``rows`` (W pointers) into sliver ``sl``; ``valid[w]`` (i1) zeroes
                row w when false (the partial last sliver, whose rows are clamped)."""
                def row(w, v):
                    return v if valid is None else b.select(valid[w], v, zeros(v.type))

                def blocks(k, g, n):   # rows g..g+VL-1, n VL x VL blocks from column k
                    for h in range(n):
                        kh = b.add(k, _c64(h * VL))
                        tr = _transpose(b, [row(g + r, _vload(b, _at(b, rows[g + r], kh), vt, esz))
                                            if g + r < W else ir.Constant(vt, [0.0] * VL)
                                            for r in range(VL)])
                        for t in range(VL):
                            out = _at(b, sl, b.mul(b.add(kh, _c64(t)), _c64(W)), g)
                            for off, ln in _chunks(min(VL, W - g), VL):
                                _vstore(b, piece(tr[t], off, ln), _at(b, out, off), esz)
                # W > VL rows: one group of VL rows at a time, two blocks (a 64-byte line
                # of each row) per step.  Rows ld apart share a few L1 sets; all W rows at
                # once evicted each other mid-line (B^T packed at 3.8 Gelem/s, by groups
                # at 7-8.7).
                for g in range(0, W, VL):
                    with _loop(b, 0, kw, per * VL, f"kt{g}") as k:
                        blocks(k, g, per)
                    if per > 1:
                        with _loop(b, kw, kv, VL, f"ku{g}") as k:
                            blocks(k, g, 1)
                with _loop(b, kv, kc, 1, "kr") as k:
                    for w in range(W):
                        b.store(row(w, b.load(_at(b, rows[w], k), align=esz)),
                                _at(b, sl, b.mul(k, _c64(W)), w), align=esz)

            with _loop(b, 0, nfull, W, "st") as s:
                sliver([_at(b, src, b.mul(b.add(s, _c64(w)), ld)) for w in range(W)],
                       _at(b, dst, b.mul(s, kc)))
            rem = b.sub(n, nfull)   # the partial last sliver: rows clamped, then zeroed
            with b.if_then(b.icmp_signed(">", rem, _c64(0))):
                last = b.sub(n, _c64(1))
                sliver([_at(b, src, b.mul(_min(b, b.add(nfull, _c64(w)), last), ld))
                        for w in range(W)], _at(b, dst, b.mul(nfull, kc)),
                       [b.icmp_signed("<", _c64(w), rem) for w in range(W)])
    rem = b.sub(n, nfull)    # contiguous partial last sliver: lanes w >= rem get 0
    with b.if_then(b.and_(contig, b.icmp_signed(">", rem, _c64(0)))):
        base, sl = _at(b, src, nfull), _at(b, dst, b.mul(nfull, kc))
        last = b.sub(rem, _c64(1))
        cols = [_at(b, base, _min(b, _c64(w), last)) for w in range(W)]
        with _loop(b, 0, kc, 1, "ke") as k:
            koff, out = b.mul(k, ld), _at(b, sl, b.mul(k, _c64(W)))
            for w in range(W):
                v = b.load(_at(b, cols[w], koff), align=esz)
                v = b.select(b.icmp_signed("<", _c64(w), rem), v, ir.Constant(T, 0.0))
                b.store(v, _at(b, out, w), align=esz)
    b.ret_void()
    return fn
