"""The Python side of native calls: array objects in the pointer table, the fallback path."""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from adjit.backends.llvm import runtime

SCRIPT = """
import numpy as np, adjit as aj
x = aj.input("x", (None, 3)); W = aj.param("W", (3, 2), dtype="float32")
f = aj.compile([aj.sum(aj.tanh(x @ W)), x @ W], opt_level=1, cache=False)
from adjit.backends.llvm.runtime import DATA_OFFSET
X = np.arange(15.0).reshape(5, 3)[::-1] / 10; W0 = np.ones((3, 2), np.float32)
L, Y = f(x=X, W=W0)
print(DATA_OFFSET, repr(float(L)), repr(Y.tolist()))
"""


@pytest.mark.skipif(runtime.DATA_OFFSET is None, reason="numpy's array layout was not recognised")
@pytest.mark.parametrize("arr", [np.empty(5), np.zeros((4, 6), np.float32)[2:, 1:],
                                 np.asarray(3.0), np.ones(3, np.int32)[::2]])
def test_probed_offset_reads_the_data_pointer(arr):
    got = ctypes.c_void_p.from_address(id(arr) + runtime.DATA_OFFSET).value
    assert got == arr.ctypes.data


def test_array_objects_and_plain_addresses_agree():
    def run(flag):
        env = dict(os.environ, ADJIT_ARRAY_OBJECTS=flag)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.split(" ", 1)
    (off_on, res_on), (off_off, res_off) = run("1"), run("0")
    assert off_off == "None" and off_on == str(runtime.DATA_OFFSET)
    assert res_on == res_off
