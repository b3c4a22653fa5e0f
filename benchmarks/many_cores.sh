#!/usr/bin/env bash
# One prepared run for a many-core machine (issue 16's 16-core targets): the pool's tests,
# then W4 (and W2/W3) with 2 and with all threads against numpy and PyTorch, each in one run.
#
# On the device machine (no network there): carry a wheelhouse made here with
#   pip download -d wheels "llvmlite>=0.45,<0.51" sympy networkx mpmath
# (ignored by git: name it in the run's `carry`), then run from the repository root:
#   bash benchmarks/many_cores.sh            # ~6 minutes on a 16-core Xeon
set -u
python -m pip install -q --no-index --find-links wheels -e . 2>&1 | tail -2
python - <<'PY'
from adjit.backends.lowering.target.description import describe
import adjit as aj
print("target:", describe().summary())
print("peaks:", aj.machine_peaks().line())
PY
python -m pytest -q -p no:cacheprovider tests/cpu tests/llvm/test_pool.py 2>&1 | tail -3
cd benchmarks
all=$(python -c "import os; print(len(os.sched_getaffinity(0)))")
for n in 2 "$all"; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONUTF8=1 PYTHONPATH=../src \
    python run.py --workloads W2,W3,W4 --peers numpy,torch,llvm --repeat 2 --threads "$n" \
    2>&1 | grep -v "^$" | tail -30
done
