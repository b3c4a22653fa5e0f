#!/usr/bin/env bash
# One prepared run for a GPU machine (issue 17): the GPU tests, then every row of
# ptx_bench.py (W2, W4, the 4096-wide MLP step, a 4096^3 GEMM against cuBLAS FP32/TF32;
# resident steps with and without graph replay; tf32/bf16).  ~5 minutes on an H200.
# The device machine has torch and cuda-python but no network: carry a wheelhouse made
# here with  pip download -d wheels "llvmlite>=0.45,<0.51" sympy networkx mpmath
# (git-ignored; name it in the run's `carry`), then from the repository root:
#   bash benchmarks/gpu_check.sh
set -u
python -m pip install -q --no-index --find-links wheels -e . 2>&1 | tail -2
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python -m pytest -q -p no:cacheprovider -rs tests/ptx/test_ptx_gpu.py 2>&1 | tail -15
PYTHONPATH=src python benchmarks/ptx_bench.py --budget 1.5 2>&1 | tail -60
