#!/usr/bin/env bash
# The GPU checks of issue 14 as one command, for a borrowed GPU machine (the `device` tool's
# `run`, which starts in a copy of this working tree and fetches what is written under $OUT) or
# any CUDA machine with a PyTorch that sees the GPU:
#
#   1. the `gpu` pytest tier (renderer against the dense reference on CUDA, tiny CUDA trainings,
#      exact resume on CUDA);
#   2. `holly bench --device cuda` (the same table as on the CPU);
#   3. the paper settings at the paper's length on the built-in tetrapod
#      (config/paper-length-tetrapod.yaml, 1.6 M presentations), stopped after PAPER_S seconds
#      if it has not finished: its metrics.csv gives images/s either way, and a second call
#      within the machine's warm period continues it (--resume auto).
#
# Nothing is fetched: holly runs from this checkout (PYTHONPATH) on the machine's own torch,
# numpy, scipy, pandas and matplotlib. Wheels it lacks come from .gpu-wheels/ (`make gpu-wheels`
# fills it for CPython 3.12 x86-64, ~21 MB, from tools/gpu-wheels.txt; carry it:
# run(..., carry=[".gpu-wheels"])).
#
#   bash tools/gpu-check.sh                          # on the GPU machine, ~9 min at most
#   DEVICE=cpu PAPER_S=15 BENCH_ARGS="--size 32 --repeats 2 --dense-repeats 1" \
#       bash tools/gpu-check.sh                      # the same path on a CPU (tests/test_tools.py)
#
# Every step runs even if an earlier one fails; the exit status is the first failure's. $OUT
# gets 8 files at most (what the device tool brings back): summary.txt, a log per step,
# bench.json and the paper-length run's metrics.csv and evaluation.json.
set -uo pipefail

OUT=${OUT:-gpu-check-out}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PAPER_S=${PAPER_S:-330}
BENCH_ARGS=${BENCH_ARGS:-}
RUN=${PAPER_RUN:-/tmp/holly-gpu-check/paper-length-tetrapod}
WHEELS=.gpu-wheels
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
step() {  # step NAME COMMAND...: run it, log to $OUT/NAME.log, remember the first failure
    local name=$1 rc
    shift
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    local t0=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "   exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tail -n 3 "$OUT/$name.log" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
    [ "$status" -ne 0 ] || status=$rc
    return 0
}

install_missing() {  # what holly needs and the machine may lack, from the carried wheels only
    local missing
    missing=$("$PY" - <<'EOF'
import importlib.util
dists = [line.strip() for line in open("tools/gpu-wheels.txt") if line[:1].isalpha()]
need = [d for d in dists if importlib.util.find_spec(d.replace("-", "_")) is None]
if "pandas" not in need:
    import pandas
    if int(pandas.__version__.split(".")[0]) < 3:
        need.append("pandas")  # holly needs pandas >= 3
print(" ".join(need))
EOF
) || return 2
    echo "missing here: ${missing:-nothing}"
    [ -n "$missing" ] || return 0
    if [ ! -d "$WHEELS" ]; then
        echo "no $WHEELS/ (make gpu-wheels, then carry it) and nothing can be fetched" >&2
        return 2
    fi
    # shellcheck disable=SC2086
    "$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps $missing
}

setup() {  # what machine and software this is, then the missing wheels
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    git rev-parse HEAD 2>/dev/null || echo "commit: not a git checkout here (the caller knows it)"
    install_missing
}

paper_length() {
    timeout "$PAPER_S" "$PY" -m holly train --config config/paper-length-tetrapod.yaml \
        --device "$DEVICE" --out "$RUN" --resume auto
    local rc=$?
    cp "$RUN/metrics.csv" "$OUT/paper-length-metrics.csv" 2>/dev/null
    if [ "$rc" -eq 124 ]; then
        echo "stopped after $PAPER_S s (not finished): images/s in paper-length-metrics.csv"
        return 0
    fi
    [ "$rc" -eq 0 ] || return "$rc"
    "$PY" -m holly evaluate "$RUN" && cp "$RUN/evaluation.json" "$OUT/paper-length-evaluation.json"
}

: >"$OUT/summary.txt"
step setup setup
if [ "$DEVICE" = cuda ]; then
    step gpu-tier "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_resume.py
fi
# shellcheck disable=SC2086
step bench "$PY" -m holly bench --device "$DEVICE" $BENCH_ARGS --json "$OUT/bench.json"
step paper-length paper_length
echo "== done, exit $status; files in $OUT" | tee -a "$OUT/summary.txt"
exit "$status"
