#!/usr/bin/env bash
# GPU check in one call (issue 22): on a CUDA machine, times the full protocol's training steps and
# predict-style inference of both networks, the same steps on the CPU, projects the 24-job protocol,
# and writes one results file pair (gpu_check_<host>.json + .md). Without CUDA: a two-step smoke
# run on the CPU (tiny sizes), results file marked as smoke. No network access.
#
# Usage: benchmarks/gpu_check.sh [OUT_DIR] [gpu_check.py options, e.g. --smoke --threads 2]
#   OUT_DIR defaults to $OUT, else benchmarks/measurements. PYTHON picks the interpreter
#   (default: the project's .venv when present, else python3).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=${OUT:-$root/benchmarks/measurements}
if [[ $# -gt 0 && $1 != -* ]]; then
    out=$1
    shift
fi
python=${PYTHON:-}
if [[ -z $python ]]; then
    if [[ -x $root/.venv/bin/python ]]; then python=$root/.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$here/gpu_check.py" --out-dir "$out" "$@"
