"""The machine as a parameter: one record of what a CPU offers, built once per process
from the host or from a named CPU (tests and cross-compiles).  Everything in adjit that
depends on the CPU -- micro-kernel shapes, cache blocking, thresholds, how many threads --
reads it instead of asking the host.

    >>> from adjit.backends.lowering.target.description import describe
    >>> d = describe("x86-64-v3")            # an AVX2 CPU, whatever the host is
    >>> d.isa, d.vector_bytes, d.vector_registers, d.lanes("f32")
    ('x86-64-avx2', 32, 16, 8)

Facts and where they come from:

* ``isa``, ``vector_bytes``, ``vector_registers``, ``fma``: for the host, from LLVM's
  detected feature string; for a named CPU, from the assembly LLVM emits for it (a
  ``<16 x float>`` fused multiply-add compiled for that CPU: ``zmm`` registers mean 64-byte
  vectors, ``vfmadd``/``fmla`` mean FMA), so any name LLVM knows is described correctly.
* ``l1d``, ``l2``, ``l3`` (bytes): the host's from sysfs (cpu0's caches); a named CPU's are
  typical values for its ISA family (a cross-compile cannot read the target's sysfs).
* ``cores``: the threads adjit may run native code on (:func:`available_cores`): the same
  for a named CPU (the code runs on this host, or is only compiled).
"""
from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass

from . import cpu as _cpu

X86_TRIPLE_PREFIX, ARM_TRIPLE_PREFIX = "x86_64", "aarch64"
AARCH64_TRIPLE = "aarch64-unknown-linux-gnu"
KIB = 1024

# typical caches per ISA family, for named CPUs (bytes): l1d, l2 (per core), l3 (shared)
_TYPICAL_CACHES = {"x86-64-avx512": (48 * KIB, 1024 * KIB, 32768 * KIB),
                   "x86-64-avx2": (32 * KIB, 512 * KIB, 16384 * KIB),
                   "x86-64-sse": (32 * KIB, 256 * KIB, 8192 * KIB),
                   "aarch64-neon": (64 * KIB, 1024 * KIB, 32768 * KIB)}


@dataclass(frozen=True)
class CpuTarget:
    """What adjit's kernels may assume about the CPU they are generated for."""
    name: str               # "host" or the LLVM CPU name given
    llvm_cpu: str           # the CPU name LLVM generates code for
    triple: str
    isa: str                # "x86-64-avx512", "x86-64-avx2", "x86-64-sse", "aarch64-neon"
    vector_bytes: int       # widest vector register (64, 32 or 16)
    vector_registers: int   # architectural vector registers (32 or 16)
    fma: bool
    l1d: int
    l2: int
    l3: int
    cores: int

    def lanes(self, dtype: str) -> int:
        """Elements of ``dtype`` ("f32"/"f64"/"float32"/"float64") in one vector."""
        return self.vector_bytes // (4 if dtype in ("f32", "float32") else 8)

    @property
    def is_host(self) -> bool:
        return self.name == _cpu.HOST

    def summary(self) -> str:
        """One line for reports: CPU, ISA, vector width, caches, cores."""
        return (f"{self.llvm_cpu} ({self.isa}, {self.vector_bytes * 8}-bit vectors x "
                f"{self.vector_registers}, {'FMA' if self.fma else 'no FMA'}, L1d "
                f"{self.l1d // KIB} KiB, L2 {self.l2 // KIB} KiB, L3 {self.l3 // KIB} KiB, "
                f"{self.cores} core{'s' * (self.cores != 1)})")


def describe(cpu: str | None = None, triple: str | None = None) -> CpuTarget:
    """The description of CPU ``cpu`` ("host", an LLVM CPU name, or None for
    ``$ADJIT_CPU``/host) on ``triple`` (default the host's; an aarch64 triple for
    cross-compiles).  Cached per (name, triple, cores)."""
    from .machine import host_info
    name = _cpu.selected(cpu)
    host_triple = host_info()["triple"]
    return _describe(name, triple or host_triple, available_cores())


@functools.cache
def _describe(name: str, triple: str, cores: int) -> CpuTarget:
    from .machine import host_info
    host = host_info()
    if name == _cpu.HOST and triple == host["triple"]:
        llvm_cpu = host["cpu"]
        feats = {f[1:] for f in host["features"].split(",") if f.startswith("+")}
        if triple.startswith(ARM_TRIPLE_PREFIX):
            width, fma = 16, True
        else:
            width = 64 if "avx512f" in feats else 32 if "avx" in feats else 16
            fma = "fma" in feats or "avx512f" in feats
        caches = host_caches()
    else:
        if name == _cpu.HOST:
            raise ValueError(f"cpu 'host' describes only the host's triple "
                             f"{host['triple']!r}; name a CPU for {triple!r}")
        _cpu.check(name, triple)
        llvm_cpu = name
        width, fma = _probe(name, triple)
        caches = None
    isa = _isa(triple, width)
    regs = 32 if isa in ("x86-64-avx512", "aarch64-neon") else 16
    l1d, l2, l3 = caches or _TYPICAL_CACHES[isa]
    return CpuTarget(name, llvm_cpu, triple, isa, width, regs, fma, l1d, l2, l3, cores)


def _isa(triple: str, width: int) -> str:
    if triple.startswith(ARM_TRIPLE_PREFIX):
        return "aarch64-neon"
    return {64: "x86-64-avx512", 32: "x86-64-avx2"}.get(width, "x86-64-sse")


_PROBE_IR = """define void @f(<16 x float>* %p) {
  %a = load <16 x float>, <16 x float>* %p
  %b = call <16 x float> @llvm.fma.v16f32(<16 x float> %a, <16 x float> %a, <16 x float> %a)
  store <16 x float> %b, <16 x float>* %p
  ret void
}
declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
"""


def _probe(name: str, triple: str) -> tuple[int, bool]:
    """(vector bytes, FMA) of named CPU ``name``, read from the assembly LLVM emits for a
    16-lane fused multiply-add (``name`` already checked by :func:`.cpu.check`)."""
    import llvmlite.binding as llvm
    from .machine import _ensure_init, _lock
    _ensure_init()
    with _lock:
        if not triple.startswith(X86_TRIPLE_PREFIX):
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
        tm = llvm.Target.from_triple(triple).create_target_machine(
            cpu=name, features="", opt=2, reloc="default", codemodel="jitdefault")
        mod = llvm.parse_assembly(_PROBE_IR)
        mod.triple = triple
        asm = tm.emit_assembly(mod)
    if triple.startswith(ARM_TRIPLE_PREFIX):
        return 16, "fmla" in asm
    width = 64 if "zmm" in asm else 32 if "ymm" in asm else 16
    return width, bool(re.search(r"vfn?madd", asm))


def host_caches() -> tuple[int, int, int] | None:
    """(L1d, L2, L3) bytes of cpu0 from sysfs, or None when sysfs does not say."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    found = {}
    try:
        for entry in os.listdir(base):
            d = os.path.join(base, entry)
            try:
                with open(os.path.join(d, "level")) as f:
                    level = int(f.read())
                with open(os.path.join(d, "type")) as f:
                    kind = f.read().strip()
                with open(os.path.join(d, "size")) as f:
                    size = _size(f.read().strip())
            except (OSError, ValueError):
                continue
            if kind != "Instruction" and size:
                found[level] = size
    except OSError:
        return None
    if 1 not in found or 2 not in found:
        return None
    return found[1], found[2], found.get(3, found[2])


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text)
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "K": KIB, "M": KIB ** 2, "G": KIB ** 3}[m.group(2)]


_chosen: int | None = None     # set_num_threads's count, else None


def num_threads() -> int:
    """Threads compiled code uses: the count :func:`choose_threads` set (``aj.set_num_threads``),
    else :func:`available_cores`.  Sizes fixed at compile time (a weight gradient's blocks,
    a convolution's per-thread scratch) read it when a function is compiled."""
    return _chosen or available_cores()


def choose_threads(n: int | None) -> None:
    """Record the thread count (None: back to :func:`available_cores`)."""
    global _chosen
    _chosen = n


def available_cores() -> int:
    """Threads adjit runs native code on: ``$ADJIT_NUM_THREADS`` when set (>= 1), else the
    CPUs this process may run on (its affinity mask), capped by a cgroup CPU quota
    (``cpu.max`` rounded up; a container limited to 2.5 CPUs gets 3)."""
    env = os.environ.get("ADJIT_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"ADJIT_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """CPUs allowed by a cgroup v2 quota (``"<quota> <period>"``, rounded up), else None
    (no file, or ``max``)."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None
