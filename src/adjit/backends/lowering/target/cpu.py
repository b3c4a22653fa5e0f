"""Which CPU adjit generates code for: the host (default), or a CPU named by ``cpu=`` or
``$ADJIT_CPU`` (any name LLVM knows for this triple: "haswell", "znver3", "x86-64-v4").

The host is compiled for with its CPU name and its detected feature string.  A named CPU
is given to LLVM with no feature string, so LLVM uses that CPU's features and tuning
(vector width, preferred vector width, costs) whatever machine compiles: a test of an
ISA-specific path names the CPU instead of depending on the host.

LLVM ends the whole process (``LLVM ERROR``) for some names it does not know, so a name
is tried once per process in a child process before any target machine is made with it.

Code for a named CPU is only run when the host is known to implement it: the host's own
CPU name, or an x86-64 psABI level (``x86-64``, ``-v2``, ``-v3``, ``-v4``) whose features
the host has.  For any other name the module compiles (IR, assembly, the disk cache) but
its symbols are refused (:func:`runnable`), since the host may lack an instruction it uses.
"""
from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import sys

HOST = "host"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")

# x86-64 psABI micro-architecture levels: LLVM feature names each level requires
_V2 = {"cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3"}
_V3 = _V2 | {"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
LEVELS = {"x86-64": set(), "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}

_PROBE = r"""
import sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
if sys.argv[3] == "all":
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
tm = llvm.Target.from_triple(sys.argv[1]).create_target_machine(
    cpu=sys.argv[2], features="", opt=2, reloc="default", codemodel="jitdefault", jit=True)
m = llvm.parse_assembly("define double @f(double %x) {\n  %y = fmul double %x, %x\n"
                        "  ret double %y\n}\n")
m.triple = sys.argv[1]
tm.emit_object(m)
"""


def selected(cpu: str | None = None) -> str:
    """The CPU name to compile for: ``cpu``, else ``$ADJIT_CPU``, else ``"host"``.
    Raises ValueError for a name that cannot be a CPU name."""
    name = cpu if cpu is not None else (os.environ.get("ADJIT_CPU", "").strip() or HOST)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"cpu must be 'host' or an LLVM CPU name such as 'znver3', "
                         f"got {name!r}")
    return name


@functools.cache
def check(name: str, triple: str) -> None:
    """Raise ValueError unless LLVM can generate code for CPU ``name`` on ``triple``
    (tried in a child process: LLVM may end the process for an unknown name)."""
    if name == HOST:
        return
    try:
        native = triple.startswith(platform.machine())
        proc = subprocess.run([sys.executable, "-c", _PROBE, triple, name,
                               "native" if native else "all"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ValueError(f"cpu {name!r}: could not check it with LLVM ({e})") from None
    said = (proc.stderr or "").strip().splitlines()
    if proc.returncode != 0 or any("not a recognized processor" in s for s in said):
        why = next((s for s in said if "LLVM ERROR" in s or "not a recognized" in s),
                   said[-1] if said else f"exit status {proc.returncode}")
        raise ValueError(f"cpu {name!r} is not a CPU LLVM can compile for on {triple}: "
                         f"{why}")


def spec(name: str, host: dict) -> tuple[str, str]:
    """(LLVM CPU name, feature string) for ``name``; ``host`` is the host facts."""
    if name == HOST:
        return host["cpu"], host["features"]
    check(name, host["triple"])
    return name, ""


def runnable(name: str, host: dict) -> bool:
    """Whether code compiled for ``name`` is known to run on this host."""
    if name in (HOST, host["cpu"]):
        return True
    if name in LEVELS and host["triple"].startswith("x86_64"):
        have = {f[1:] for f in host["features"].split(",") if f.startswith("+")}
        return LEVELS[name] <= have
    return False
