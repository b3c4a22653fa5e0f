#!/usr/bin/env bash
# One prepared run for a GPU machine (issue 17): the GPU tests, then every row of
# ptx_bench.py (W2, W4, the 4096-wide MLP step, a 4096^3 GEMM against cuBLAS FP32/TF32;
# resident steps with and without graph replay; tf32/bf16).  ~5 minutes on an H200.
# From the repository root (see device_env.sh for what the machine needs):
#   bash benchmarks/gpu_check.sh
set -u
source benchmarks/device_env.sh
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
python3 -m pytest -q -p no:cacheprovider -rs tests/ptx/test_ptx_gpu.py 2>&1 | tail -25
python3 benchmarks/ptx_bench.py --budget 1.5 2>&1 | tail -60
