#!/usr/bin/env bash
# Build the GPU image (docker/Dockerfile) where there is no Docker engine and the CUDA base image
# cannot be pulled, and check it: podman builds the Dockerfile FROM a stand-in base made here
# (docker/base-cpu.Dockerfile: Debian by debootstrap, a venv, the pinned torch's CPU build) through
# its BASE argument, then runs inside the image the README's tests and benchmarks/gpu_check.sh with
# DEVICE=cpu, and prints the image's size and what differs from the real base.
# Outside CI: it needs root, podman, buildah and debootstrap (Debian: apt-get install podman buildah
# debootstrap), network access to Debian's and Python's package registries, and about 20 minutes on 2
# cores. Every RUN step and the checks run with chroot isolation (`--isolation chroot`), not an OCI
# runtime: a sandbox without CAP_SYS_RESOURCE or a pure cgroup v2 refuses crun's container (its
# rlimits, its cgroups), and chroot isolation runs the same file system, environment and WORKDIR.
#   bash docker/check.sh                  WORK=/tmp/objmm_docker by default (the rootfs, logs)
#   TESTS=0 bash docker/check.sh          build, then gpu_check only
#   GPU_CHECK=0 bash docker/check.sh      build, then the tests only
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${WORK:-/tmp/objmm_docker}
torch_version=$(sed -n 's/^torch==//p' "$root/constraints.txt")
for tool in podman buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "docker/check.sh: $tool is missing (apt-get install podman buildah debootstrap)"; exit 2; }
done
mkdir -p "$work/base"
start=$SECONDS
# the machine's certificates over the image's, for every build step and check (a TLS-inspecting proxy's
# own CA is in the machine's bundle only); nothing of it stays in the images
certs=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)

# 1. a Debian bookworm root file system with Python and the libraries MuJoCo's EGL rendering loads
if ! podman image exists localhost/objmm-debian:bookworm; then
  if [ ! -x "$work/rootfs/usr/bin/python3" ]; then
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,libgl1,libegl1,libglib2.0-0 \
      bookworm "$work/rootfs" http://deb.debian.org/debian
  fi
  tar -C "$work/rootfs" -c . | podman import - localhost/objmm-debian:bookworm
fi

# 2. the stand-in base: that file system, a venv on PATH, the pinned torch's CPU build
rm -f "$work"/base/torch-*.whl
wheel=$(ls /opt/wheels/torch-"$torch_version"+cpu-*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then
  cp "$wheel" "$work/base/"
else
  pip download --no-deps -d "$work/base" "torch==$torch_version" --index-url https://download.pytorch.org/whl/cpu
fi
podman build --isolation chroot --network host "${certs[@]}" -t localhost/objmm-base-cpu -f "$root/docker/base-cpu.Dockerfile" "$work/base"

# 3. the image, from the project's own Dockerfile, with the stand-in as its BASE
podman build --isolation chroot --network host "${certs[@]}" --build-arg BASE=localhost/objmm-base-cpu -t localhost/objmm:check \
  -f "$root/docker/Dockerfile" "$root"
built=$((SECONDS - start))
size=$(podman image inspect localhost/objmm:check --format '{{.Size}}')
base=$(podman image inspect localhost/objmm-base-cpu --format '{{.Size}}')

# 4. inside it: the tests (the README's test command after its install, which the image ran) and gpu_check on the CPU
box=$(buildah from localhost/objmm:check)
trap 'buildah rm "$box" >/dev/null' EXIT
# (OMP_NUM_THREADS, when set here, goes in too: a check beside another job keeps to its threads)
inside() { buildah run --isolation chroot --network host "${certs[@]}" "$box" -- env WANDB_MODE=offline ${OMP_NUM_THREADS:+OMP_NUM_THREADS=$OMP_NUM_THREADS} "$@"; }
failed=()
if [ "${TESTS:-1}" != 0 ]; then
  inside python -m pytest -q -p no:cacheprovider > "$work/tests.log" 2>&1 || failed+=(tests)
  tail -2 "$work/tests.log"
fi
if [ "${GPU_CHECK:-1}" != 0 ]; then
  inside env DEVICE=cpu STEPS=all BUDGET=900 OUT=/tmp/gpu_check bash benchmarks/gpu_check.sh > "$work/gpu_check.log" 2>&1 || failed+=(gpu_check)
  tail -3 "$work/gpu_check.log"
fi
echo "docker/check.sh: built in ${built} s; image localhost/objmm:check $((size / 1000000)) MB, of which the stand-in base $((base / 1000000)) MB"
echo "docker/check.sh: what differs from the real base ($(sed -n 's/^ARG BASE=//p' "$root/docker/Dockerfile")): Debian's python3.11 in a venv"
echo "  instead of conda's Python, torch $torch_version's CPU build instead of its CUDA build, no CUDA libraries"
if [ ${#failed[@]} -eq 0 ]; then echo "docker/check.sh: passed"; else echo "docker/check.sh: FAILED: ${failed[*]}"; exit 1; fi
