"""The GPU module's LLVM IR, its PTX per GPU architecture, and checking PTX with ``ptxas``."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ..lowering.target import emit_ptx
from ..lowering.target.forksafe import Lock
from .support import check_declared

#: Architectures adjit emits PTX for (LLVM 22 knows them); sm_80 and sm_90 are the ones the
#: tests assemble with ptxas.
ARCHES = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89", "sm_90")
DEFAULT_ARCH = "sm_80"


def check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise ValueError(f"unsupported GPU architecture {arch!r}; "
                         f"choose one of {', '.join(ARCHES)}")
    return arch


class Sources:
    """The GPU kernels' LLVM IR (made by ``lower()`` on first use); PTX and optimized IR for
    each architecture and opt level, made on demand and kept.

    The IR passes :func:`.support.check_declared` before LLVM parses it, and again before and
    after LLVM's optimizer, so NVPTX codegen never sees a call it cannot lower.
    """

    def __init__(self, lower, arch: str, opt_level: int):
        self._lower, self.arch, self.opt_level = lower, check_arch(arch), opt_level
        self._ir: str | None = None
        self._done: dict[tuple[str, int], tuple[str, str]] = {}
        self._lock = Lock(reentrant=True)     # fresh in a forked child

    @property
    def llvm_ir(self) -> str:
        with self._lock:
            if self._ir is None:
                self._ir = self._lower()
            return self._ir

    def _emit(self, arch: str, opt_level: int | None) -> tuple[str, str]:
        key = (check_arch(arch), self.opt_level if opt_level is None else opt_level)
        with self._lock:
            if key not in self._done:
                self._done[key] = emit_ptx(self.llvm_ir, arch=key[0], opt_level=key[1],
                                           check=check_declared)
            return self._done[key]

    def ptx(self, arch: str, opt_level: int | None = None) -> str:
        return self._emit(arch, opt_level)[1]

    def optimized(self, arch: str, opt_level: int | None = None) -> str:
        return self._emit(arch, opt_level)[0]


class PtxasError(RuntimeError):
    """ptxas rejected a PTX module; the message holds its diagnostics."""


def ptxas_path() -> str | None:
    """The ``ptxas`` on the PATH, if any."""
    return shutil.which("ptxas")


def assemble(ptx: str, arch: str) -> str:
    """Assemble ``ptx`` for ``arch`` with ptxas (``-v``); return its resource report.

    Raises PtxasError when ptxas rejects the module, FileNotFoundError without ptxas.
    """
    exe = ptxas_path()
    if exe is None:
        raise FileNotFoundError("ptxas is not on the PATH (it comes with the CUDA toolkit)")
    with tempfile.TemporaryDirectory(prefix="adjit-ptxas-") as d:
        src = os.path.join(d, "module.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        res = subprocess.run([exe, f"-arch={check_arch(arch)}", "-v", src, "-o",
                              os.path.join(d, "module.cubin")],
                             capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise PtxasError(f"ptxas -arch={arch} failed:\n{res.stderr[-4000:]}")
    return res.stderr


def registers(report: str) -> dict[str, int]:
    """``{kernel: registers used}`` from an :func:`assemble` report."""
    out, current = {}, None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            out[current] = int(m.group(1))
    return out


def spills(report: str) -> dict[str, int]:
    """``{kernel: bytes of spill stores + spill loads}`` from an :func:`assemble` report."""
    out, current = {}, None
    for line in report.splitlines():
        m = re.search(r"Function properties for (\w+)", line)
        current = m.group(1) if m else current
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            out[current] = int(m.group(1)) + int(m.group(2))
    return out
