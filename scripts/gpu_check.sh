#!/usr/bin/env bash
# graphc's GPU check (issue #6, "Running on a GPU"): on a machine with an NVIDIA GPU, CUDA,
# cupy, torch (+ Triton), numpy, networkx and llvmlite installed and no network, run from
# a checkout:
#
#     scripts/gpu_check.sh [RESULTS_DIR]        (default: $OUT if set, else ./gpu-results)
#
# Three phases, each under its own `timeout`, all of them always run; about 7.5 minutes at
# most in all:
#   1. environment: graphc from this checkout through PYTHONPATH (nothing is installed and
#      the network is never used), the versions of python, numpy, networkx, llvmlite, cupy,
#      torch, triton and pytest, the GPU as cupy and torch see it, nvidia-smi -> env.txt
#   2. tests: pytest -m gpu -> pytest.log, pytest-junit.xml
#   3. benchmark: benchmarks/gpu.py -> gpu-bench.json, gpu-bench.md, bench.log
# and summary.md: each phase's status, pytest's summary line and the benchmark's tables.
# Exit status: 0 when every phase passed, 1 otherwise.
#
# Environment knobs: PYTHON (default: python3, else python), BENCH_ARGS (more arguments of
# benchmarks/gpu.py, e.g. "--quick"), PYTEST_ARGS (more arguments of pytest, e.g. a test
# file), GPU_CHECK_TOTAL_S (450), PYTEST_TIMEOUT_S (150), GPU_CHECK_DEVICE=cpu (the same
# run on the CPU, no GPU required: the plumbing check of tests/test_gpu_bench_script.py).

set -u
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
RESULTS=${1:-${OUT:-$REPO/gpu-results}}
mkdir -p "$RESULTS" || exit 1
RESULTS=$(cd "$RESULTS" && pwd)
PY=${PYTHON:-$(command -v python3 || command -v python)}
TOTAL_S=${GPU_CHECK_TOTAL_S:-450}
PYTEST_TIMEOUT_S=${PYTEST_TIMEOUT_S:-150}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"   # graphc from this checkout
export PIP_NO_INDEX=1                                  # nothing here may reach the network
export GRAPHC_CACHE_DIR=${GRAPHC_CACHE_DIR:-$(mktemp -d -t graphc-gpu-check-XXXXXX)}
SECONDS=0
declare -a PHASES=()
FAILED=0

say() { printf '\n=== %s (%ds) ===\n' "$1" "$SECONDS"; }
# run_timed SECONDS CMD...: the command under `timeout` (a plain run if there is none)
run_timed() {
    local t=$1; shift
    if command -v timeout >/dev/null; then timeout -k 10 "$t" "$@"; else "$@"; fi
}
record() {  # record NAME RC [WHY]
    local why=${3:-}
    if [ "$2" -eq 0 ]; then PHASES+=("$1: ok${why:+ ($why)}")
    else PHASES+=("$1: FAILED (exit $2)${why:+: $why}"); FAILED=1; fi
}

# -- 1. environment -----------------------------------------------------------------------
say "1/3 environment"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); host: $(uname -srm)"
    echo "checkout: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')," \
         "$(git -C "$REPO" status --short 2>/dev/null | wc -l | tr -d ' ') changed files)"
    echo "python: $PY"
    echo "results: $RESULTS"
    run_timed 60 "$PY" - "$REPO" "$DEVICE" <<'EOF'
import importlib, os, sys
repo, device = sys.argv[1], sys.argv[2]
print("python", sys.version.split()[0])
bad = []
for name in ("numpy", "networkx", "llvmlite", "cupy", "torch", "triton", "pytest",
             "hypothesis"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as e:
        print(f"{name}: not importable ({type(e).__name__}: {e})")
        if name in ("numpy", "networkx", "llvmlite") or (name == "cupy" and device == "cuda"):
            bad.append(name)
try:
    import graphc
    where = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))
    print(f"graphc {graphc.__version__} from {graphc.__file__}")
    if os.path.realpath(where) != os.path.realpath(repo):
        bad.append(f"graphc imported from {where}, not from the checkout {repo}")
except Exception as e:
    bad.append(f"graphc: {type(e).__name__}: {e}")
if "cupy" in sys.modules:
    try:
        import cupy
        rt = cupy.cuda.runtime
        n = rt.getDeviceCount()
        print(f"cupy: {n} device(s), CUDA runtime {rt.runtimeGetVersion()}, driver "
              f"{rt.driverGetVersion()}")
        for i in range(n):
            p = rt.getDeviceProperties(i)
            print(f"  gpu {i}: {p['name'].decode() if isinstance(p['name'], bytes) else p['name']}"
                  f", sm_{p['major']}{p['minor']}, {p['totalGlobalMem'] / 2**30:.0f} GiB")
        if n == 0 and device == "cuda":
            bad.append("cupy sees no GPU")
    except Exception as e:
        print(f"cupy: no usable GPU ({type(e).__name__}: {e})")
        if device == "cuda":
            bad.append("cupy sees no GPU")
if "torch" in sys.modules:
    import torch
    print(f"torch: CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
if bad:
    print("environment problems: " + "; ".join(bad))
sys.exit(1 if bad else 0)
EOF
    rc=$?
    echo "--- nvidia-smi"
    if command -v nvidia-smi >/dev/null; then run_timed 20 nvidia-smi || echo "nvidia-smi failed"
    else echo "nvidia-smi: not on PATH"; fi
    exit $rc
} 2>&1 | tee "$RESULTS/env.txt"
rc=${PIPESTATUS[0]}
record "environment" "$rc" "$( [ "$rc" -ne 0 ] && grep -m1 '^environment problems' "$RESULTS/env.txt")"

# -- 2. tests -----------------------------------------------------------------------------
say "2/3 pytest -m gpu"
if ! "$PY" -c "import pytest" 2>/dev/null; then
    msg="pytest is not installed for $PY, so the gpu-marked tests did not run: install it in that environment (offline: pip install --no-index --find-links DIR pytest) or point PYTHON at an interpreter that has it"
    echo "$msg" | tee "$RESULTS/pytest.log"
    record "pytest -m gpu" 127 "pytest not installed"
else
    ignore=()
    if ! "$PY" -c "import hypothesis" 2>/dev/null; then
        # modules importing hypothesis would stop collection; none of them is gpu-marked
        ignore+=(-p no:hypothesispytest)   # a plugin left behind without its package
        skipped=$(grep -lE '^\s*(from|import) hypothesis' tests/*.py 2>/dev/null)
        for f in $skipped; do ignore+=(--ignore "$f"); done
        echo "hypothesis is not installed: not collecting" $skipped | tee "$RESULTS/pytest.log"
    fi
    # shellcheck disable=SC2086  # PYTEST_ARGS: words on purpose
    run_timed "$PYTEST_TIMEOUT_S" "$PY" -m pytest -m gpu -q -rfEs -p no:cacheprovider \
        --junitxml="$RESULTS/pytest-junit.xml" ${ignore[@]+"${ignore[@]}"} ${PYTEST_ARGS:-} 2>&1 \
        | tee -a "$RESULTS/pytest.log"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) why="$(grep -E '(passed|skipped|failed|error)' "$RESULTS/pytest.log" | tail -1)" ;;
        5) why="no gpu-marked test was collected" ;;
        124|137) why="timed out after ${PYTEST_TIMEOUT_S} s" ;;
        *) why="$(grep -E '(passed|skipped|failed|error)' "$RESULTS/pytest.log" | tail -1)" ;;
    esac
    record "pytest -m gpu" "$rc" "$why"
fi

# -- 3. benchmark -------------------------------------------------------------------------
say "3/3 benchmarks/gpu.py"
bench_timeout=$(( TOTAL_S - SECONDS - 15 ))
[ "$bench_timeout" -gt 330 ] && bench_timeout=330
[ "$bench_timeout" -lt 60 ] && bench_timeout=60
budget=$(( bench_timeout - 75 ))
[ "$budget" -lt 20 ] && budget=20
# shellcheck disable=SC2086  # BENCH_ARGS: words on purpose
run_timed "$bench_timeout" "$PY" benchmarks/gpu.py --device "$DEVICE" --out "$RESULTS" \
    --budget "$budget" ${BENCH_ARGS:-} 2>&1 | tee "$RESULTS/bench.log"
rc=${PIPESTATUS[0]}
case $rc in
    0) why="" ;;
    124|137) why="killed after ${bench_timeout} s; gpu-bench.json holds what it measured" ;;
    *) why="$(tail -1 "$RESULTS/bench.log")" ;;
esac
record "benchmark" "$rc" "$why"

# -- summary ------------------------------------------------------------------------------
{
    echo "# graphc GPU check"
    echo
    echo "$(head -2 "$RESULTS/env.txt" | tr '\n' ' ')"
    echo
    for p in "${PHASES[@]}"; do echo "- $p"; done
    echo "- total: ${SECONDS} s"
    echo
    if [ -f "$RESULTS/gpu-bench.md" ]; then sed 's/^#/##/' "$RESULTS/gpu-bench.md"; fi
} > "$RESULTS/summary.md"
say "summary"
for p in "${PHASES[@]}"; do echo "$p"; done
echo "results in $RESULTS: $(cd "$RESULTS" && ls | tr '\n' ' ')"
exit "$FAILED"
