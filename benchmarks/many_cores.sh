#!/usr/bin/env bash
# One prepared run for a many-core machine (issue 16's 16-core targets): the pool's tests,
# then W4 (and W2/W3) with 2 and with all threads against numpy and PyTorch, each in one run.
#
# From the repository root (see device_env.sh for what the device machine needs):
#   bash benchmarks/many_cores.sh            # ~6 minutes on a 16-core Xeon
set -u
source benchmarks/device_env.sh
python3 - <<'PY'
from adjit.backends.lowering.target.description import describe
import adjit as aj
print("target:", describe().summary())
print("peaks:", aj.machine_peaks().line())
PY
python3 -m pytest -q -p no:cacheprovider tests/cpu tests/llvm/test_pool.py 2>&1 | tail -3
cd benchmarks
all=$(python3 -c "import os; print(len(os.sched_getaffinity(0)))")
for n in 2 "$all"; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONUTF8=1 \
    python3 run.py --workloads W2,W3,W4 --peers numpy,torch,llvm --repeat 2 --threads "$n" \
    2>&1 | grep -v "^$" | tail -30
done
