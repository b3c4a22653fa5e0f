# Sourced by gpu_check.sh and many_cores.sh: the Python environment on the device machine.
# Its image has Python 3.12 with numpy, sympy, networkx, pytest, hypothesis, scikit-learn,
# torch, jax and cuda-python (cuda-bindings), and no network.  If its llvmlite is outside
# adjit's range, carry a wheel made here (the folder is ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     -d .whl llvmlite==0.50.0
# and name `.whl` in the run's `carry` (~57 MiB of the 64 MiB a run may carry).
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export ADJIT_CACHE_DIR="${ADJIT_CACHE_DIR:-$(mktemp -d)}"
python3 -c "import llvmlite, sympy, networkx, numpy; print('python', __import__('sys').version.split()[0], 'llvmlite', llvmlite.__version__, 'numpy', numpy.__version__)"
