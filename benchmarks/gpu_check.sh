#!/usr/bin/env bash
# The GPU path, proven in one go: on a machine with one CUDA GPU, in at most 10 minutes,
#   1. install what that machine lacks from wheels brought along (no network there): only the listed
#      packages it has not got, --no-deps, into a folder of their own (never over the machine's own),
#   2. build gsplat's CUDA kernels (TORCH_CUDA_ARCH_LIST / MAX_JOBS from the environment, default 9.0 / 16);
#      where the build fails, the CUDA stages are not run (each would compile again inside its own limit),
#   3. run the cuda-marked tests (gsplat backend against the CPU backend: images and gradients),
#   4. one paper-scale tracking run (experiment=sc4d_mlp dataset=synthetic trainer=gpu, 2000 steps), its
#      wall time and it/s,
#   5. benchmarks/step.py (paper scale) and benchmarks/render.py on CUDA,
#   6. fit.py on CUDA,
#   7. benchmarks/scale.py (step and memory against N: 3k, 300k, 1M; without the whole-run column),
# the most telling first, writing every log and a summary (summary.txt) under OUT_DIR.
#
#   benchmarks/gpu_check.sh OUT_DIR [--wheels DIR] [--quick] [--budget SECONDS] [--bundle DIR]
#   benchmarks/gpu_check.sh --plan OUT_DIR [--quick]   # print the stages and commands, run nothing
#   benchmarks/gpu_check.sh --download [DIR]           # on a machine with network: fetch the wheels (default wheels/)
#
# With the device tool (docs/performance.md, "The GPU check"): the wheels fetched here first, then one call
#   run(command="bash benchmarks/gpu_check.sh /tmp/gpu_check --bundle $OUT", carry=["wheels"], timeout_s=600)
# --bundle DIR: on exit, summary.txt, env.txt and logs.tar.gz (every log, the tracking run's metrics.json)
# into DIR: three small files (the device tool brings back 8 files at most).
#
# The wheels: benchmarks/gpu_wheels.txt lists them (cp312, manylinux); --download fetches them with
# --no-deps (so torch is never pulled in) and builds the one that is only an sdist (antlr4 4.9.3).
# wheels/ is ignored by git. Without a CUDA device the same stages run on the CPU (the fallbacks,
# used by tests/test_gpu_check.py): no gsplat build, the cuda tests skip themselves, trainer=cpu. Where
# nvidia-smi sees a GPU but PYTHON's torch does not, it stops at once and says so. --quick shrinks every
# stage (a smoke run). Every stage has its own time limit inside --budget (default 540 s, counted from
# the start); a stage that would start with less than 20 s left is skipped and said so.
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL_LIST="$REPO/benchmarks/gpu_wheels.txt"
PY="${PYTHON:-python3}"  # on the device machine the interpreter with torch is python3 (device/KINDS.md)

usage() {
    sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

download() {
    local dir="${1:-$REPO/wheels}"
    mkdir -p "$dir"
    local platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
    grep -v -e '^#' -e '^antlr4-python3-runtime' -e '^$' "$WHEEL_LIST" > "$dir/.binary.txt"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
        "${platforms[@]}" -d "$dir" -r "$dir/.binary.txt" || exit 1
    local antlr sdist
    antlr="$(grep '^antlr4-python3-runtime' "$WHEEL_LIST")"
    sdist="$(mktemp -d)"
    "$PY" -m pip download --no-deps --no-binary=:all: -d "$sdist" "$antlr" || exit 1
    "$PY" -m pip wheel --no-deps --no-build-isolation -w "$dir" "$sdist"/*.tar.gz || exit 1
    rm -rf "$sdist" "$dir/.binary.txt"
    echo "wheels in $dir:"
    ls -1 "$dir"
}

PLAN=0
QUICK=0
OUT=""
WHEELS="$REPO/wheels"
BUDGET=540
BUNDLE=""
while (($#)); do
    case "$1" in
        --download) shift; download "$@"; exit $? ;;
        --plan) PLAN=1 ;;
        --quick) QUICK=1 ;;
        --wheels) shift; (($#)) || usage; WHEELS="$1" ;;
        --budget) shift; (($#)) || usage; [[ "$1" =~ ^[0-9]+$ ]] || { echo "--budget: seconds, got '$1'" >&2; exit 2; }; BUDGET="$1" ;;
        --bundle) shift; (($#)) || usage; BUNDLE="$1" ;;
        -h|--help) usage ;;
        -*) echo "unknown option: $1" >&2; usage ;;
        *) [[ -z "$OUT" ]] || { echo "one OUT_DIR only, got '$OUT' and '$1'" >&2; exit 2; }; OUT="$1" ;;
    esac
    shift
done
[[ -n "$OUT" ]] || { echo "missing OUT_DIR" >&2; usage; }
START=$(date +%s)  # the budget counts from here, the probe below included
DEADLINE=$((START + BUDGET))

if PROBE="$("$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>&1)"; then
    DEVICE=cuda
elif command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
    echo "gpu_check: nvidia-smi sees a GPU but $PY's torch has no CUDA device (${PROBE:-torch.cuda.is_available() is False});" \
         "set PYTHON to the interpreter whose torch has CUDA, e.g. PYTHON=/opt/torch/.venv/bin/python3" >&2
    exit 1
else
    DEVICE=cpu
fi

# --- what each stage runs --------------------------------------------------------------------------
if ((QUICK)); then
    TRACK_SIZE=(max_steps=30 resolution=64 num_control_points=32 dataset.frames=4 loss.num_bands=4 eval.lpips=none eval.progression_frames=3)
    STEP_ARGS=(--scale cpu --steps 20)
    SCALE_ARGS=(--quick --sweep gaussians)
    RENDER_ARGS=(--scenes 2k_128 --reps 2)
    FIT_SIZE=(steps=30 resolution=64 num_points=500)
    FIT_DATA_RES=64
else
    TRACK_SIZE=(max_steps=2000)  # the paper's schedule is fractions of the steps: its shape, a fifth as long
    STEP_ARGS=(--scale paper --steps 200)
    SCALE_ARGS=(--sweep gaussians --gaussians 3000 300000 1000000 --no-run --steps 20)
    RENDER_ARGS=(--reps 7)
    FIT_SIZE=(steps=2000 resolution=256)
    FIT_DATA_RES=256  # the fit's own resolution: its targets are not upsampled
fi
if [[ "$DEVICE" == cuda ]]; then
    HARDWARE=(trainer=gpu)
    STEP_ARGS+=(--device cuda)
    SCALE_ARGS+=(--device cuda)
    RENDER_ARGS+=(--backends cpu gsplat)
    FIT_DEVICE=(device=cuda backend=gsplat)
else
    HARDWARE=(trainer=cpu)
    STEP_ARGS+=(--device cpu)
    SCALE_ARGS+=(--device cpu)
    RENDER_ARGS+=(--backends cpu)
    FIT_DEVICE=(device=cpu backend=auto)
fi
DATA="$OUT/data"
TRACK=("$PY" train.py experiment=sc4d_mlp dataset=synthetic "${HARDWARE[@]}" "${TRACK_SIZE[@]}"
       logger=csv trainer.enable_progress_bar=false "out_dir=$OUT/track")
TESTS=("$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_render.py)
STEP=("$PY" benchmarks/step.py "${STEP_ARGS[@]}")
SCALE=("$PY" benchmarks/scale.py "${SCALE_ARGS[@]}" --root "$DATA/synthetic")
RENDER=("$PY" benchmarks/render.py "${RENDER_ARGS[@]}")
FIT_DATA_CMD=("$PY" -m spectral_tracking.data.synthetic --preset quadruped_walk --frames 12 --resolution "$FIT_DATA_RES"
              --root "$DATA/synthetic")
FIT=("$PY" fit.py "${FIT_DEVICE[@]}" "${FIT_SIZE[@]}" progress=false "out=$OUT/fit")
BUILD=("$PY" -c 'from gsplat.cuda._backend import _C; import sys; print("gsplat CUDA extension:", _C); sys.exit(_C is None)')
SITE="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"  # the missing packages' folder (PYTHONPATH), apart from the machine's own

if ((PLAN)); then
    echo "device: $DEVICE$([[ $DEVICE == cpu ]] && echo ' (no CUDA device: the CPU fallbacks)')"
    echo "out: $OUT   wheels: $WHEELS   budget: $BUDGET s   quick: $QUICK"
    echo "install:   pip install --no-index --no-deps --target $SITE <the wheels in $WHEELS of the listed packages not installed>"
    [[ "$DEVICE" == cuda ]] && echo "build:     TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} ${BUILD[*]}"
    echo "tests:     ${TESTS[*]}"
    echo "track:     ${TRACK[*]}"
    echo "step:      ${STEP[*]}"
    echo "render:    ${RENDER[*]}"
    echo "fit data:  ${FIT_DATA_CMD[*]}"
    echo "fit:       ${FIT[*]} data.path=<the generated sequence>"
    echo "scale:     ${SCALE[*]}"
    [[ -n "$BUNDLE" ]] && echo "bundle:    summary.txt, env.txt, logs.tar.gz into $BUNDLE"
    exit 0
fi

# --- running ---------------------------------------------------------------------------------------
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"
DATA="$OUT/data"
SUMMARY="$OUT/summary.txt"
cd "$REPO" || exit 1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export SPECTRAL_TRACKING_DATA="$DATA"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONUNBUFFERED=1
FAILED=0

: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

bundle() {  # the few small files the device tool brings back
    [[ -n "$BUNDLE" ]] || return 0
    mkdir -p "$BUNDLE" || return 0
    cp "$SUMMARY" "$BUNDLE/summary.txt" 2> /dev/null
    [[ -f "$OUT/env.txt" ]] && cp "$OUT/env.txt" "$BUNDLE/env.txt"
    (cd "$OUT" && tar czf "$BUNDLE/logs.tar.gz" summary.txt $(ls ./*.log track/metrics.json fit/*.json 2> /dev/null))
    return 0
}
trap bundle EXIT

# stage NAME LIMIT_S CMD...: run CMD with a time limit, log to OUT/NAME.log, one summary line
stage() {
    local name="$1" limit="$2"
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    if ((left < 20)); then
        say "$(printf '%-8s skipped: %d s of the budget left' "$name" "$left")"
        FAILED=1
        return 1
    fi
    ((limit > left)) && limit=$left
    local t0 t1 rc
    t0=$(date +%s%N)
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    t1=$(date +%s%N)
    local verdict=ok
    ((rc == 124 || rc == 137)) && verdict="TIMED OUT"
    ((rc != 0 && rc != 124 && rc != 137)) && verdict="FAILED"
    ((rc != 0)) && FAILED=1
    local ms=$(((t1 - t0) / 1000000))
    say "$(printf '%-8s %-9s rc=%-3d %4d.%d s (limit %d s)  %s' "$name" "$verdict" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$limit" "$*")"
    tail -n 6 "$OUT/$name.log" | sed 's/^/           | /' | tee -a "$SUMMARY"
    return $rc
}

say "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), budget $BUDGET s, device $DEVICE, quick $QUICK"
{
    echo "git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) $(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed file(s)"
    "$PY" -c 'import platform, torch; print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    command -v nvcc > /dev/null && nvcc --version | tail -n 1
    echo "cores: $(nproc)"
} 2>&1 | tee "$OUT/env.txt" | tee -a "$SUMMARY"

# 1. install: the listed packages this interpreter has not got, from their wheels, into SITE
MISSING="$("$PY" - "$WHEEL_LIST" "$WHEELS" << 'EOF'
import re
import sys
from importlib import metadata
from pathlib import Path


def norm(name):  # a distribution's name as a wheel file spells it
    return re.sub(r"[-_.]+", "_", name).lower()


folder = Path(sys.argv[2])
wheels = {norm(f.name.split("-")[0]): f for f in folder.glob("*.whl")} if folder.is_dir() else {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        try:
            metadata.distribution(line.split("==")[0])
        except metadata.PackageNotFoundError:
            print(wheels.get(norm(line.split("==")[0]), f"MISSING:{line}"))
EOF
)"
if [[ -z "$MISSING" ]]; then
    say "install  skipped: every listed package is installed already"
elif grep -q "^MISSING:" <<< "$MISSING"; then
    say "install  FAILED: no wheel in $WHEELS for $(grep '^MISSING:' <<< "$MISSING" | sed 's/^MISSING://' | paste -sd' ')" \
        "(fetch them on a machine with network: benchmarks/gpu_check.sh --download)"
    exit 1
else
    mapfile -t FILES <<< "$MISSING"
    stage install 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "${FILES[@]}" || { say "cannot go on without the packages"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:$SITE"
fi

# 2. gsplat's CUDA kernels, once: a failed build would be tried again by every CUDA stage, inside its own limit
if [[ "$DEVICE" == cuda ]] && ! stage build 240 "${BUILD[@]}"; then
    say "gpu_check: the gsplat build failed or timed out (build.log), so the CUDA stages are not run"
    exit 1
fi

# 3-7, the most telling first
stage tests 60 "${TESTS[@]}"
[[ "$DEVICE" == cpu ]] && grep -q "deselected\|skipped\|no tests ran" "$OUT/tests.log" && say "         (no CUDA device: the cuda tests do not run here)"
if stage track 150 "${TRACK[@]}"; then
    "$PY" - "$OUT/track/metrics.json" << 'EOF' 2>&1 | tee -a "$SUMMARY"
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(f"track    {m['steps']} steps in {m['seconds']:.1f} s of training = {m['steps'] / m['seconds']:.1f} it/s; "
      f"train PSNR {m.get('train_psnr', float('nan')):.2f}, novel PSNR {m.get('novel_psnr', float('nan')):.2f}, "
      f"3d err {m.get('3d_mean_error', float('nan')):.3f}")
EOF
fi
stage step 75 "${STEP[@]}"
stage render 45 "${RENDER[@]}"
if stage fitdata 30 "${FIT_DATA_CMD[@]}"; then
    SEQ="$(ls -d "$DATA"/synthetic/quadruped_walk_* 2> /dev/null | head -n 1)"
    stage fit 60 "${FIT[@]}" "data.path=$SEQ"
fi
stage scale 120 "${SCALE[@]}"

say "gpu_check: done in $(($(date +%s) - START)) s, $([[ $FAILED == 0 ]] && echo 'every stage passed' || echo 'SOME STAGES FAILED OR WERE SKIPPED'); logs in $OUT"
exit $FAILED
