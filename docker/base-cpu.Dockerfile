# A stand-in for the GPU image's base (pytorch/pytorch), for docker/check.sh on a machine that can
# neither pull it nor run CUDA: a Debian bookworm root file system made there by debootstrap, a
# Python venv on PATH (as the real base's conda is), and the CPU build of the torch that
# constraints.txt pins, preinstalled as the real base's CUDA build is (so the Dockerfile's install
# step keeps it). Build context: a folder holding that torch wheel.
ARG ROOTFS=localhost/objmm-debian:bookworm
FROM ${ROOTFS}
RUN python3 -m venv /opt/venv
# pip trusts the system's certificates (docker/check.sh mounts the machine's own over them, which
# a machine behind a TLS-inspecting proxy needs), not only those of its own certifi copy
ENV PATH=/opt/venv/bin:$PATH \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY torch-*.whl /tmp/
RUN pip install --no-cache-dir /tmp/torch-*.whl && rm /tmp/torch-*.whl
