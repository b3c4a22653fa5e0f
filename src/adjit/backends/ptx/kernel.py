"""One kernel under construction, for the GPU or for the CPU grid emulation.

A kernel's code is written once, by the functions in :mod:`.lower` and :mod:`.matmul`, against
this builder; the *flavour* decides only where thread and block indices come from, which
address spaces pointers live in, and what a barrier is:

==============  ==================================  ====================================
..              GPU (NVPTX, ``ptx_kernel``)         CPU (grid emulation, host code)
==============  ==================================  ====================================
signature       ``k(global T*..., i64 batch, ..)``  ``k(i64 nctaid, T*..., i64 batch, ..)``
block index     ``%ctaid.x``, ``%nctaid.x``         ``for ctaid in range(nctaid)``
thread index    ``%tid.x``                          ``for tid in range(NTID)`` per region
shared memory   an ``addrspace(3)`` global          a stack array, reused by every block
private arrays  a per-thread ``alloca``             one ``alloca`` slice per thread
barrier         ``bar.sync 0``                      the end of one thread loop
==============  ==================================  ====================================

Rules the kernel code keeps (so both flavours compute the same thing):

* per-thread code runs only inside ``with k.threads():`` regions; barriers and loops that
  contain barriers (``uniform`` loops, same trip count in every thread of a block) sit
  outside them.  On the CPU consecutive regions are consecutive thread loops, which is
  exactly what a barrier between them guarantees on the GPU.
* a value computed inside a region is not used after it (LLVM's verifier rejects that in the
  CPU flavour); what must survive a barrier lives in shared memory or a private array.
"""
from __future__ import annotations

from contextlib import contextmanager

from llvmlite import ir

from ..lowering.irkit import c64, loop

GPU, CPU = "gpu", "cpu"
I32, I64 = ir.IntType(32), ir.IntType(64)
GLOBAL, SHARED = 1, 3          # NVPTX address spaces


def _sreg(module: ir.Module, name: str) -> ir.Function:
    full = f"llvm.nvvm.read.ptx.sreg.{name}.x"
    fn = module.globals.get(full)
    return fn if fn is not None else ir.Function(module, ir.FunctionType(I32, []), name=full)


class Kernel:
    """A kernel ``name`` taking pointers to ``elem_types`` (in order), the batch size, and
    ``n_ints`` more i64 arguments; ``ntid`` threads per block (fixed at compile time)."""

    def __init__(self, module: ir.Module, name: str, elem_types: list[ir.Type], n_ints: int,
                 ntid: int, flavor: str):
        if flavor not in (GPU, CPU):
            raise ValueError(f"unknown kernel flavour {flavor!r}")
        self.module, self.name, self.ntid, self.flavor = module, name, ntid, flavor
        space = GLOBAL if flavor == GPU else 0
        ptrs = [ir.PointerType(t, addrspace=space) for t in elem_types]
        lead = [I64] if flavor == CPU else []
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), lead + ptrs + [I64] * (1 + n_ints)),
                         name=name)
        fn.attributes.add("nounwind")
        args = list(fn.args)
        for a in args[len(lead):len(lead) + len(ptrs)]:
            a.add_attribute("noalias")     # the plan never lets an output overlap an operand
        self.fn = fn
        # allocas (and shared-memory addresses) go to their own entry block, which branches
        # to the body when the kernel is finished
        self._alloca = ir.IRBuilder(fn.append_basic_block("entry"))
        self._body = fn.append_basic_block("body")
        self.b = ir.IRBuilder(self._body)
        self._tid = None
        if flavor == GPU:
            fn.calling_convention = "ptx_kernel"
            # at most ntid threads per block: lets ptxas budget registers for that
            limit = module.add_metadata([fn, ir.MetaDataString(module, "maxntidx"),
                                         ir.Constant(I32, ntid)])
            module.add_named_metadata("nvvm.annotations").add(limit)
            read = lambda r: self.b.zext(self.b.call(_sreg(module, r), []), I64)
            self.ctaid, self.nctaid, self._gpu_tid = read("ctaid"), read("nctaid"), read("tid")
            self._blocks = None
        else:
            self.nctaid = args.pop(0)
            self._blocks = loop(self.b, 0, self.nctaid, 1, "ctaid")
            self.ctaid = self._blocks.__enter__()
        self.ptrs = args[:len(ptrs)]
        self.batch = args[len(ptrs)]
        self.ints = args[len(ptrs) + 1:]

    # -- thread regions and barriers -------------------------------------------------------
    @property
    def tid(self) -> ir.Value:
        """This thread's index in the block (i64); only inside a ``threads()`` region."""
        if self._tid is None:
            raise RuntimeError(f"kernel {self.name}: thread index used outside a threads() region")
        return self._tid

    @contextmanager
    def threads(self):
        """A region of per-thread code (no barriers inside)."""
        if self._tid is not None:
            raise RuntimeError(f"kernel {self.name}: nested threads() regions")
        if self.flavor == GPU:
            self._tid = self._gpu_tid
            yield self._tid
        else:
            with loop(self.b, 0, self.ntid, 1, "tid") as t:
                self._tid = t
                yield t
        self._tid = None

    def barrier(self) -> None:
        """Every thread of the block reaches this point before any goes on."""
        if self._tid is not None:
            raise RuntimeError(f"kernel {self.name}: barrier inside a threads() region")
        if self.flavor == GPU:
            bar = self.module.globals.get("llvm.nvvm.barrier0") or ir.Function(
                self.module, ir.FunctionType(ir.VoidType(), []), name="llvm.nvvm.barrier0")
            self.b.call(bar, [])

    def uniform_loop(self, start, stop, step, name: str):
        """``for i in range(start, stop, step)`` run alike by every thread of a block (may
        contain threads() regions and barriers; start/stop/step must be block-uniform)."""
        if self._tid is not None:
            raise RuntimeError(f"kernel {self.name}: uniform loop inside a threads() region")
        return loop(self.b, start, stop, step, name)

    # -- memory ----------------------------------------------------------------------------
    def shared(self, T: ir.Type, n: int) -> ir.Value:
        """Pointer to ``n`` elements of block-shared memory (contents undefined at start)."""
        arr = ir.ArrayType(T, n)
        if self.flavor == GPU:
            g = ir.GlobalVariable(self.module, arr, f"{self.name}_sh{len(self.module.globals)}",
                                  addrspace=SHARED)
            g.linkage, g.align = "internal", 16
            g.initializer = ir.Constant(arr, ir.Undefined)
            base = g
        else:
            base = self._alloca.alloca(arr)
            base.align = 16
        return self._alloca.gep(base, [c64(0), c64(0)])

    def private(self, T: ir.Type, n: int) -> "Private":
        """``n`` elements private to each thread that survive barriers."""
        total = n if self.flavor == GPU else n * self.ntid
        return Private(self, self._alloca.alloca(ir.ArrayType(T, total)), n)

    def finish(self) -> ir.Function:
        if self._blocks is not None:
            self._blocks.__exit__(None, None, None)
        self.b.ret_void()
        self._alloca.branch(self._body)
        return self.fn


class Private:
    """A per-thread array: ``at(j)`` is this thread's element j (inside a threads() region)."""

    def __init__(self, kernel: Kernel, base: ir.Value, n: int):
        self.k, self.base, self.n = kernel, base, n

    def at(self, j: int) -> ir.Value:
        k = self.k
        if k.flavor == GPU:
            index = c64(j)
        else:
            index = k.b.add(k.b.mul(k.tid, c64(self.n)), c64(j))
        return k.b.gep(self.base, [c64(0), index])

    def fill(self, value: ir.Value) -> None:
        """Every thread's elements set to ``value`` (a threads() region of its own)."""
        with self.k.threads():
            for j in range(self.n):
                self.k.b.store(value, self.at(j))
