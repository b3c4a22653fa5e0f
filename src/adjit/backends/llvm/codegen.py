"""Lower a planned Graph to LLVM IR with a single entry point.

``void adjit_entry(i8** table, i64 batch)``: the table holds one pointer per buffer slot
(see :mod:`.plan`).  With ``data_offset`` set, the slots of inputs and outputs hold the
numpy array objects themselves and the entry reads each data pointer at that byte offset
(numpy's ``PyArrayObject.data``, checked at import by :mod:`.runtime`), which saves the
caller an address lookup per array per call.  Each step of the plan becomes one kernel
function whose pointer parameters are ``noalias`` (the plan guarantees an output never
overlaps what the kernel reads), called in order from the entry.

Compile time: steps that compute the same thing on the same types (W5's 16 equal layers)
share one kernel, keyed by :func:`kernel_key` before any IR is built.  A plan of more
than :data:`.entry.ENTRY_CHUNK` steps gets its entry in parts (:mod:`.entry`), and large
constants are bytes copied in after loading, never IR text (:mod:`.constants`).  Every
kernel is built in its own small ``ir.Module``; :meth:`Lowering.lower` returns the texts of a few
LLVM modules (kernels balanced by size, the entry with the lightest; elementwise maps
apart from the other kernels and optimized without loop unrolling, see UNROLL_MAPS) that
:func:`.target.compile_ir` optimizes and compiles in parallel threads and links into one
native entry.  Kernels are therefore external ``noinline`` functions called from the entry
(a call costs nanoseconds; each kernel loops over whole tensors).
"""
from __future__ import annotations

import time

from llvmlite import ir

from ...ir import Node
from ..lowering.elements import element_cost, element_fn, map_rule
from ..lowering.loops import (add, broadcast_access, c64, contiguous, emit_nest, for_range,
                              merge_dims, size_value)
from ..lowering.plan import (GEMM_OPS, ONE, ZERO, Plan, dim, folded_product,
                             inlined_operand, numel, window_operand)
from ..lowering.rules import RuleTable
from ..lowering.printer import LLVM_TYPES
from ..lowering.reducers import REDUCERS
from ..lowering.target import compile_threads, target_cpu
from .parallel import emit_step
from .modules import MAX_PARTS, UNROLL_MAPS, module_texts
from .constants import const_array, inline_global, large_constants, large_global
from .entry import lower_entry
from .concat import lower_concatenate
from .window_gemm import lower_fold_step
from .windows import lower_unfold
from .scatter import lower_scatter
from .pools import lower_max_pool
from .convs import lower_conv, lower_conv_weight

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
I8P = I8.as_pointer()


def kernel_key(plan: Plan, node: Node):
    """What a step's kernel depends on: equal keys give the same kernel.

    The kernel is a function of the op, its attributes (the fused expression included),
    the output and operand types and, for a matmul, which operands are read transposed
    (views).  None when an attribute cannot be hashed (the step gets its own kernel).
    """
    views = tuple(i.op == "transpose" and plan.storage[i.id].kind == "view"
                  for i in node.inputs) if node.op in GEMM_OPS else ()
    if node.op in GEMM_OPS and window_operand(plan, node) is not None:
        # read through a window: the kernel holds the unfold's geometry and the x it reads
        u = window_operand(plan, node)
        views += ("window", u.attrs, u.inputs[0].type)
    if inlined_operand(plan, node) is not None:   # the kernel computes its operand
        src = inlined_operand(plan, node)
        views = ("inline", src.attrs, tuple(i.type for i in src.inputs))
    p = folded_product(plan, node)
    if p is not None:
        # the fold computes its product: the kernel holds the product's operands and flag
        a = p.inputs[0]
        views = ("product", p.type, tuple(i.type for i in p.inputs),
                 a.op == "transpose" and plan.storage[a.id].kind == "view", plan.windows[p.id])
    key = (node.op, node.attrs, node.type, tuple(i.type for i in node.inputs), views)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _ty(dtype: str) -> ir.Type:
    if dtype in LLVM_TYPES:
        return LLVM_TYPES[dtype]
    return {"int32": I32, "int64": I64, "uint32": I32}[dtype]


class Lowering:
    def __init__(self, plan: Plan, data_offset: int | None = None, profile: bool = False,
                 parts: int | None = None, cpu: str | None = None):
        """``parts``: most LLVM modules to split into per kind of kernel (maps, others: see
        UNROLL_MAPS; default: :func:`compile_threads`); 1: a single module.  ``cpu``: the
        CPU the module is compiled for (None: ``$ADJIT_CPU`` or the host), whose GEMM
        library and tiles the products use."""
        self.plan = plan
        self.cpu = target_cpu(cpu)
        self._target = None
        self.data_offset = data_offset
        self.profile = profile
        self.parts = min(compile_threads(), MAX_PARTS) if parts is None else max(1, parts)
        self.entry_module = self.module = ir.Module(name="adjit")
        self._consts: dict[int, str] = {}          # small constant id -> its global's name
        self._large: dict[int, int] | None = None   # large constant id -> its number
        self._part_modules: list[ir.Module] = []    # the entry's parts (see .entry)
        self._kernels: dict = {}                   # kernel_key -> kernel function
        self._kernel_modules: list[ir.Module] = []  # one per distinct kernel
        self._unroll: list[bool] = []              # per kernel module: loop unrolling on
        self._n = 0
        self.timings: dict[str, float] = {}        # seconds: "build" (ir objects), "text"

    @property
    def target(self):
        """The :class:`~..lowering.target.description.CpuTarget` of :attr:`cpu`."""
        if self._target is None:
            from ..lowering.target.description import describe
            self._target = describe(self.cpu)
        return self._target

    def declare_gemm(self, module: ir.Module, dtype: str) -> ir.Function:
        """The GEMM of ``dtype`` ("f32"/"f64") for this lowering's CPU, declared in
        ``module`` (see :mod:`.library`)."""
        from .library import declare_gemm
        return declare_gemm(module, dtype, self.cpu)

    @property
    def n_kernels(self) -> int:
        """Distinct kernels lowered (steps with equal :func:`kernel_key` share one)."""
        return len(self._kernel_modules)

    # -- module -----------------------------------------------------------------------------
    def lower(self) -> list[str]:
        """The LLVM IR texts to compile together (see the module docstring)."""
        t0 = time.perf_counter()
        self._lower_entry()
        t1 = time.perf_counter()
        texts = self._texts()
        self.timings = {"build": t1 - t0, "text": time.perf_counter() - t1}
        return texts

    def _texts(self) -> list[str]:
        """The module texts to compile (:func:`.modules.module_texts`)."""
        return module_texts(self.entry_module, self._kernel_modules + self._part_modules,
                            self._unroll + [False] * len(self._part_modules), self.parts)

    def _lower_entry(self) -> None:
        self._part_modules = lower_entry(self)

    def llvm_type(self, dtype: str) -> ir.Type:
        return _ty(dtype)

    def begin_function(self, b: ir.IRBuilder, table: ir.Value, batch: ir.Value) -> None:
        """Start emitting steps into the function of ``b`` (the entry or a part of it),
        which reads the pointer table ``table``: its slots are loaded as first used."""
        self._table, self.batch, self._slot_values = table, batch, {}

    def slot(self, b: ir.IRBuilder, k: int) -> ir.Value:
        """Table slot ``k`` in the current function (an array slot's data pointer with
        ``data_offset``), loaded once, where first used."""
        v = self._slot_values.get(k)
        if v is None:
            v = b.load(b.gep(self._table, [c64(k)]), name=f"slot{k}")
            if self.data_offset is not None and k < self.plan.n_array_slots:
                # PyArrayObject* -> its data pointer
                field = b.bitcast(b.gep(v, [c64(self.data_offset)]), I8P.as_pointer())
                v = b.load(field, name=f"data{k}")
            self._slot_values[k] = v
        return v

    def pointer(self, b: ir.IRBuilder, node: Node) -> ir.Value:
        """Typed pointer to ``node``'s storage (views resolved)."""
        root = self.plan.root(node)
        st = self.plan.storage[root.id]
        T = _ty(root.dtype).as_pointer()
        if st.kind == "slot":
            return b.bitcast(self.slot(b, st.slot), T)
        if st.kind == "const":
            return b.bitcast(self._const_global(b.module, root), T)
        raise AssertionError(f"{node!r} has no memory ({st.kind})")

    def _const_global(self, module: ir.Module, node: Node) -> ir.GlobalVariable:
        """A large constant's global (declared in ``module``), or a small one's IR copy."""
        if self._large is None:
            self._large = {n.id: k for k, n in enumerate(large_constants(self.plan))}
        T = _ty(node.dtype)
        k = self._large.get(node.id)
        if k is not None:
            return large_global(module, T, max(const_array(node).size, 1), k,
                                define=module is self.entry_module)
        name = self._consts.setdefault(node.id, f"const{len(self._consts)}")  # ids vary
        return inline_global(module, T, const_array(node), name)

    # -- one kernel per step ------------------------------------------------------------------
    def _new_kernel(self, node: Node, operands: list[Node], workspace: bool = False,
                    extra: tuple = (), suffix: str = ""):
        """A function ``void k(T* out, T* in..., [i8* work,] i64 batch, extra...)``: internal
        when ``suffix`` names a helper, else the step's kernel (external, noinline)."""
        types = [_ty(node.dtype).as_pointer()] + [_ty(o.dtype).as_pointer() for o in operands]
        types += [I8P] if workspace else []
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), types + [I64, *extra]),
                         name=f"k{self._n}_{node.op}{suffix}")
        self._n += 1
        if suffix:
            fn.linkage = "internal"
        else:
            fn.attributes.add("noinline")
        for a in fn.args[:len(types)]:
            a.add_attribute("noalias")
        return fn, ir.IRBuilder(fn.append_basic_block("entry"))

    def call_kernel(self, b, node, kernel):
        fn, operands = kernel
        ptrs = [self.pointer(b, node)] + [self._operand_ptr(b, o) for o in operands]
        if len(fn.args) == len(ptrs) + 2:   # the kernel takes the GEMM workspace
            ptrs.append(self.slot(b, self.plan.workspace_slot))
        b.call(fn, ptrs + [self.batch])

    def _operand_ptr(self, b, o: Node):
        st = self.plan.storage[self.plan.root(o).id]
        if st.kind == "batch":   # passed as a one-element stack slot
            slot = b.alloca(_ty(o.dtype))
            b.store(b.sitofp(self.batch, _ty(o.dtype)), slot)
            return slot
        return self.pointer(b, o)

    def kernel_for(self, node: Node):
        """(the kernel as declared in the entry module, its operands) for one step."""
        op = node.op
        key = kernel_key(self.plan, node)
        fn = self._kernels.get(key) if key is not None else None
        if fn is None:
            caller = self.module
            self.module = ir.Module(name=f"adjit_k{len(self._kernel_modules)}")
            rule = rule_for(op)
            try:
                fn, _ = rule(self, node)
            finally:
                self._kernel_modules.append(self.module)
                self._unroll.append(UNROLL_MAPS or rule is not Lowering._map)
                self.module = caller
            if key is not None:
                self._kernels[key] = fn
        decl = self.module.globals.get(fn.name)
        if decl is None:
            decl = ir.Function(self.module, fn.function_type, name=fn.name)
        return decl, operands_of(node, self.plan)

    # -- elementwise map ----------------------------------------------------------------------
    def _map(self, node: Node):
        """Any op computed element by element over the output shape (a map rule of
        :mod:`..lowering.elements`)."""
        out_shape, operands = node.shape, list(node.inputs)
        rule, elem = map_rule(node.op), self._scalar_fn(node)
        if rule.gathers:   # the rule reads its operands: full output indices, no merging
            sizes, accs = [dim(d) for d in out_shape], [contiguous(out_shape)]
        else:
            accesses = (rule.access(node) if rule.access is not None
                        else [broadcast_access(o.shape, out_shape) for o in operands])
            sizes, accs = merge_dims(out_shape, [contiguous(out_shape)] + accesses)
        # a gathering rule reads its operands at offsets of the full output index: its part
        # is also told its first row (the operands' pointers are not moved, the output's is)
        first = rule.gathers and bool(sizes)
        extra = (I64, I64) if first else (I64,)
        part, b = self._new_kernel(node, operands, extra=extra, suffix=".part")
        n_args = len(part.args) - len(extra) - 1
        out, ins = part.args[0], part.args[1:n_args]
        batch, rows = part.args[n_args], part.args[n_args + 1]
        ctx = _ElemCtx(b, batch, operands, ins)

        def body(offsets, indices):
            if first:
                indices = [add(b, indices[0], part.args[-1])] + indices[1:]
            vals = [] if rule.gathers else [ctx.load(k, off) for k, off in enumerate(offsets[1:])]
            res = elem(b, vals, indices, ctx)
            if node.dtype == "bool":
                res = b.zext(res, I8)
            b.store(res, b.gep(out, [offsets[0]]))

        emit_nest(b, sizes, accs, batch, body, outer=(c64(0), rows))
        b.ret_void()
        fn, b = self._new_kernel(node, operands)
        strides = [a[0] for a in accs] if sizes else [ZERO] * len(accs)
        strides += [ZERO] * (1 + len(operands) - len(strides))
        emit_step(self.module, b, fn, part, sizes[0] if sizes else ONE, numel(out_shape),
                  element_cost(node), strides, first=first)
        return fn, operands

    def _scalar_fn(self, node: Node):
        """One output element (shared with the ptx kernels: lowering.elements)."""
        try:
            return element_fn(node)
        except NotImplementedError:
            raise NotImplementedError(
                f"the llvm backend has no lowering for op {node.op!r} ({node.dtype})") from None

    # -- reductions (see .reduce) -----------------------------------------------------------
    def _reduce(self, node: Node):
        from .reduce import lower_reduce
        return lower_reduce(self, node)

    # -- matmul: batched calls of the packed GEMM (see .matmul) ------------------------------
    def _matmul(self, node: Node):
        from .matmul import lower_matmul
        from .window_gemm import lower_window_matmul
        u = window_operand(self.plan, node)
        return lower_matmul(self, node) if u is None else lower_window_matmul(self, node, u)

    def _matmul_sum(self, node: Node):
        from .matmul_sum import lower_matmul_sum
        from .window_gemm import lower_window_matmul_sum
        u = window_operand(self.plan, node)
        return (lower_matmul_sum(self, node) if u is None
                else lower_window_matmul_sum(self, node, u))

    # -- output copies ----------------------------------------------------------------------
    def copy_output(self, b, node: Node, slot: int):
        T = _ty(node.dtype)
        dst = b.bitcast(self.slot(b, slot), T.as_pointer())
        st = self.plan.storage[self.plan.root(node).id]
        if st.kind == "batch":
            b.store(b.sitofp(self.batch, T), dst)
            return
        src = self.pointer(b, node)
        with for_range(b, size_value(b, numel(node.shape), self.batch), "copy") as i:
            b.store(b.load(b.gep(src, [i])), b.gep(dst, [i]))



class _ElemCtx:
    """What a map rule may use inside a kernel (see :mod:`..lowering.elements`)."""

    def __init__(self, b, batch, operands, ptrs):
        self.b, self.batch, self._operands, self._ptrs = b, batch, operands, ptrs

    def size(self, s) -> ir.Value:
        return size_value(self.b, s, self.batch)

    def load(self, k: int, offset) -> ir.Value:
        b, v = self.b, self.b.load(self.b.gep(self._ptrs[k], [offset]))
        # numpy reads any nonzero byte as True (not just its lowest bit)
        return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if self._operands[k].dtype == "bool" \
            else v


# --- the rule table: every registered op has a kernel, needs none, or is refused -----------
KERNELS = {"matmul": Lowering._matmul, "matmul_sum": Lowering._matmul_sum,
           **{op: Lowering._reduce for op in REDUCERS},
           "scatter_add": lower_scatter, "concatenate": lower_concatenate, "fold": lower_fold_step,
           "unfold": lower_unfold, "max_pool": lower_max_pool, "pool_argmax": lower_max_pool,
           "conv": lower_conv, "conv_weight": lower_conv_weight}
RULES = RuleTable("llvm", KERNELS, Lowering._map)
rule_for, coverage = RULES.rule_for, RULES.coverage


def operands_of(node: Node, plan: Plan) -> list[Node]:
    """The nodes a step's kernel reads (a product reading an unfold as a window also
    reads the unfold's input)."""
    src = inlined_operand(plan, node)
    if src is not None:   # a reduction computing its elementwise operand: that one's operands
        return list(src.inputs)
    p = folded_product(plan, node)
    if p is not None:     # a fold computing its product: A, the scratch, B
        return [p.inputs[0], node.inputs[0], p.inputs[1]]
    u = window_operand(plan, node) if node.op in GEMM_OPS else None
    return list(node.inputs) + ([u.inputs[0]] if u is not None else [])
