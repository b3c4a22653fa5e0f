"""Lower a planned Graph to one LLVM module with a single entry point.

``void adjit_entry(i8** table, i64 batch)``: the table holds one pointer per buffer slot
(see :mod:`.plan`).  With ``data_offset`` set, the slots of inputs and outputs hold the
numpy array objects themselves and the entry reads each data pointer at that byte offset
(numpy's ``PyArrayObject.data``, checked at import by :mod:`.runtime`), which saves the
caller an address lookup per array per call.  Each step of the plan becomes one internal kernel function whose
pointer parameters are ``noalias`` (the plan guarantees an output never overlaps what
the kernel reads), called in order from the entry.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir

from ...ir import Node
from .library import declare_gemm
from .loops import (REDUCE_FLAGS, broadcast_access, c64, contiguous, emit_nest, for_range,
                    merge_dims, reduce_range, size_value, transpose_access)
from .plan import ONE, ZERO, Plan, numel
from .printer import LLVM_TYPES, element_fn, intrinsic
from .parallel import emit_step
from .profile import StepTimer

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()
ENTRY = "adjit_entry"


TRANSCENDENTAL = ("exp", "log", "tanh", "sin", "cos", "sigmoid", "softplus", "pow", "sqrt")


def element_cost(node: Node) -> int:
    """Rough cost of one element: 1, plus 4 per transcendental function (see parallel.py)."""
    if node.op == "fused":
        text = str(node.attr("expr"))
        return 1 + 4 * sum(text.count(f + "(") for f in TRANSCENDENTAL)
    return 5 if node.op in TRANSCENDENTAL else 1


def _ty(dtype: str) -> ir.Type:
    if dtype in LLVM_TYPES:
        return LLVM_TYPES[dtype]
    return {"int32": I32, "int64": I64}[dtype]


class Lowering:
    def __init__(self, plan: Plan, data_offset: int | None = None, profile: bool = False):
        self.plan = plan
        self.data_offset = data_offset
        self.profile = profile
        self.module = ir.Module(name="adjit")
        self.module.triple = ""   # set by the target when compiling
        self._consts: dict[int, ir.GlobalVariable] = {}
        self._n = 0

    # -- module -----------------------------------------------------------------------------
    def lower(self) -> str:
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64]),
                         name=ENTRY)
        table, batch = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.slots = [b.load(b.gep(table, [c64(k)]), name=f"slot{k}")
                      for k in range(self.plan.n_slots)]
        if self.data_offset is not None:
            for k in range(self.plan.n_array_slots):   # PyArrayObject* -> its data pointer
                field = b.bitcast(b.gep(self.slots[k], [c64(self.data_offset)]), I8P.as_pointer())
                self.slots[k] = b.load(field, name=f"data{k}")
        self.batch = batch
        timer = StepTimer(self.module, len(self.plan.steps)) if self.profile else None
        for k, node in enumerate(self.plan.steps):
            kernel = self._kernel_for(node)
            if timer:
                with timer.step(b, k):
                    self._call_kernel(b, node, kernel)
            else:
                self._call_kernel(b, node, kernel)
        for node, slot in self.plan.copies:
            self._copy(b, node, slot)
        b.ret_void()
        return str(self.module)

    def pointer(self, b: ir.IRBuilder, node: Node) -> ir.Value:
        """Typed pointer to ``node``'s storage (views resolved)."""
        root = self.plan.root(node)
        st = self.plan.storage[root.id]
        T = _ty(root.dtype).as_pointer()
        if st.kind == "slot":
            return b.bitcast(self.slots[st.slot], T)
        if st.kind == "const":
            return b.bitcast(self._const_global(root), T)
        raise AssertionError(f"{node!r} has no memory ({st.kind})")

    def _const_global(self, node: Node) -> ir.GlobalVariable:
        g = self._consts.get(node.id)
        if g is None:
            arr = np.ascontiguousarray(node.attr("value").array).reshape(-1)
            T = _ty(node.dtype)
            data = [ir.Constant(T, int(v) if T in (I8, I32, I64) else float(v)) for v in arr] \
                or [ir.Constant(T, 0)]
            g = ir.GlobalVariable(self.module, ir.ArrayType(T, len(data)),
                                  f"const{len(self._consts)}")   # ids vary; order does not
            g.initializer = ir.Constant(ir.ArrayType(T, len(data)), data)
            g.global_constant, g.linkage, g.align = True, "internal", 64
            self._consts[node.id] = g
        return g

    # -- one kernel per step ------------------------------------------------------------------
    def _new_kernel(self, node: Node, operands: list[Node], workspace: bool = False,
                    extra: tuple = (), suffix: str = ""):
        """An internal function ``void k(T* out, T* in..., [i8* work,] i64 batch, extra...)``."""
        types = [_ty(node.dtype).as_pointer()] + [_ty(o.dtype).as_pointer() for o in operands]
        types += [I8P] if workspace else []
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), types + [I64, *extra]),
                         name=f"k{self._n}_{node.op}{suffix}")
        self._n += 1
        fn.linkage = "internal"
        for a in fn.args[:len(types)]:
            a.add_attribute("noalias")
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def _call_kernel(self, b, node, kernel):
        fn, operands = kernel
        ptrs = [self.pointer(b, node)] + [self._operand_ptr(b, o) for o in operands]
        if len(fn.args) == len(ptrs) + 2:   # the kernel takes the GEMM workspace
            ptrs.append(self.slots[self.plan.workspace_slot])
        b.call(fn, ptrs + [self.batch])

    def _operand_ptr(self, b, o: Node):
        st = self.plan.storage[self.plan.root(o).id]
        if st.kind == "batch":   # passed as a one-element stack slot
            slot = b.alloca(_ty(o.dtype))
            b.store(b.sitofp(self.batch, _ty(o.dtype)), slot)
            return slot
        return self.pointer(b, o)

    def _kernel_for(self, node: Node):
        op = node.op
        if op == "matmul":
            return self._matmul(node)
        if op in ("sum", "max"):
            return self._reduce(node)
        return self._map(node)

    # -- elementwise map ----------------------------------------------------------------------
    def _map(self, node: Node):
        """Any op computed element by element over the output shape."""
        op, out_shape = node.op, node.shape
        operands = list(node.inputs)
        if op == "transpose":
            accesses = [transpose_access(operands[0].shape, node.attr("perm"))]
        else:
            accesses = [broadcast_access(o.shape, out_shape) for o in operands]
        sizes, accs = merge_dims(out_shape, [contiguous(out_shape)] + accesses)
        part, b = self._new_kernel(node, operands, extra=(I64, I64), suffix=".part")
        out, ins, (batch, lo, hi) = part.args[0], part.args[1:-3], part.args[-3:]
        scalar = self._scalar_fn(node)

        def body(offsets, indices):
            vals = []
            for o, p, off in zip(operands, ins, offsets[1:]):
                v = b.load(b.gep(p, [off]))
                # numpy reads any nonzero byte as True (not just its lowest bit)
                vals.append(b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if o.dtype == "bool"
                            else v)
            res = scalar(b, vals, indices)
            if node.dtype == "bool":
                res = b.zext(res, I8)
            b.store(res, b.gep(out, [offsets[0]]))

        if op == "one_hot":   # the class index is the inner loop's index: keep 2 dims
            last = numel(out_shape[-1:])
            sizes, accs = [numel(out_shape[:-1]), last], [[last, ONE], [ONE, ZERO]]
        emit_nest(b, sizes, accs, batch, body, outer=(lo, hi))
        b.ret_void()
        fn, b = self._new_kernel(node, operands)
        emit_step(self.module, b, fn, part, sizes[0] if sizes else ONE, numel(out_shape),
                  element_cost(node))
        return fn, operands

    def _scalar_fn(self, node: Node):
        """One output element (shared with the ptx kernels: printer.element_fn)."""
        try:
            return element_fn(node)
        except NotImplementedError:
            raise NotImplementedError(
                f"the llvm backend has no lowering for op {node.op!r} ({node.dtype})") from None

    # -- reductions -------------------------------------------------------------------------
    def _reduce(self, node: Node):
        x = node.inputs[0]
        axes = node.attr("axes")
        is_max = node.op == "max"
        T = _ty(node.dtype)
        out_strides = contiguous(node.shape)
        it = iter(out_strides)
        out_acc = [ZERO if k in axes else next(it) for k in range(x.ndim)]
        sizes, (oacc, xacc) = merge_dims(x.shape, [out_acc, contiguous(x.shape)])
        fn, b = self._new_kernel(node, [x])
        out, xin, batch = fn.args
        init = ir.Constant(T, float("-inf") if is_max else 0.0)
        with for_range(b, size_value(b, numel(node.shape), batch), "init") as i:
            b.store(init, b.gep(out, [i]))

        def combine(b, acc, v):
            if is_max:
                return b.call(intrinsic(self.module, "maximum", T, 2), [acc, v])
            return b.fadd(acc, v, flags=REDUCE_FLAGS)

        def body(offsets, indices):
            p = b.gep(out, [offsets[0]])
            b.store(combine(b, b.load(p), b.load(b.gep(xin, [offsets[1]]))), p)

        def inner(offsets, n, strides, indices):
            # innermost dim reduced: keep the accumulator in a register (a vectorizable
            # reduction thanks to the reassoc flag)
            p = b.gep(out, [offsets[0]])
            acc = reduce_range(b, n, b.load(p), lambda i, acc: combine(
                b, acc, b.load(b.gep(xin, [b.add(offsets[1], b.mul(i, strides[1]))]))))
            b.store(acc, p)

        reduced_inner = bool(sizes) and oacc[-1] == ZERO
        emit_nest(b, sizes, [oacc, xacc], batch, body, inner=inner if reduced_inner else None)
        b.ret_void()
        return fn, [x]

    # -- matmul -----------------------------------------------------------------------------
    def _matmul(self, node: Node):
        a, bnode = node.inputs
        ta = a.op == "transpose" and self.plan.storage[a.id].kind == "view"
        tb = bnode.op == "transpose" and self.plan.storage[bnode.id].kind == "view"
        (M, K), N = a.shape, node.shape[1]   # op(A) is M x K whether or not it is stored transposed
        lda = (a.inputs[0] if ta else a).shape[1]
        ldb = (bnode.inputs[0] if tb else bnode).shape[1]
        dt = "f32" if node.dtype == "float32" else "f64"
        gemm = declare_gemm(self.module, dt)
        fn, b = self._new_kernel(node, [a, bnode], workspace=True)
        out, pa, pb, work, batch = fn.args
        sv = lambda d: size_value(b, numel((d,)), batch)
        b.call(gemm, [ir.Constant(I32, int(ta)), ir.Constant(I32, int(tb)), sv(M), sv(N), sv(K),
                      pa, sv(lda), pb, sv(ldb), out, sv(N), ir.Constant(I32, 0),
                      b.bitcast(work, pa.type)])
        b.ret_void()
        return fn, [a, bnode]

    # -- output copies ----------------------------------------------------------------------
    def _copy(self, b, node: Node, slot: int):
        T = _ty(node.dtype)
        dst = b.bitcast(self.slots[slot], T.as_pointer())
        st = self.plan.storage[self.plan.root(node).id]
        if st.kind == "batch":
            b.store(b.sitofp(self.batch, T), dst)
            return
        src = self.pointer(b, node)
        with for_range(b, size_value(b, numel(node.shape), self.batch), "copy") as i:
            b.store(b.load(b.gep(src, [i])), b.gep(dst, [i]))

