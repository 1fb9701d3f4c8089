# syntax=docker/dockerfile:1
#
# holly: the package, the Snakemake workflow and its default config in one image.
#
#   make image                                                # = docker build -t holly:cuda .
#   docker build -t holly:cpu --build-arg TORCH_VARIANT=cpu . # CPU-only image
#   docker run --rm --gpus all -v "$PWD":/data -u "$(id -u):$(id -g)" holly:cuda
#
# See docs/containers.md (build inputs for proxies and mirrors, Docker, Apptainer,
# `snakemake --sdm apptainer`) and docs/cluster.md.
#
# Builds alike with Docker's classic builder, BuildKit and podman/buildah: no `RUN --mount`, and
# one dependency stage that picks its lock file by TORCH_VARIANT (the classic builder builds every
# stage of the file, so a stage per variant would download both).
#
# Base image: a slim Debian 12 CPython 3.11, pinned by tag and digest, rather than nvidia/cuda or
# pytorch/pytorch. PyTorch's Linux CUDA wheels bundle the CUDA runtime, cuDNN and NCCL as nvidia-*
# wheels (all pinned and hashed in requirements/lock-cuda.txt), so a CUDA base image would only
# add a second, unused CUDA stack of several GiB. The host needs just the NVIDIA driver plus the
# NVIDIA Container Toolkit (`docker run --gpus all`) or Apptainer's `--nv`.
# Any Debian 12 base with python3.11 (and its venv module) on PATH as `python3` also works
# (tools/base-image.sh makes such a stand-in with debootstrap where no registry is reachable).
# To move the pin: docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Every distribution of the virtual environment, pinned and hashed in the lock file of the
# variant; pip refuses anything whose hash does not match. The site's build inputs (build-inputs/:
# an extra CA bundle, local wheels) are used here only: the runtime stage copies the finished
# /opt/venv, so they never reach the image.
FROM python AS deps
# cuda: torch 2.13.0 from PyPI (CUDA 13.0, needs NVIDIA driver >= 580; also runs on CPU).
# cpu:  torch 2.13.0+cpu from PyTorch's CPU wheel index (or build-inputs/wheels/), no nvidia-*.
ARG TORCH_VARIANT=cuda
# Where the CPU torch comes from; empty: nowhere but PIP_INDEX_URL and build-inputs/wheels/.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# pip reads it from the environment: a PyPI mirror, if the site has one.
ARG PIP_INDEX_URL=https://pypi.org/simple
COPY requirements/lock-${TORCH_VARIANT}.txt /tmp/lock.txt
COPY build-inputs/ /tmp/build-inputs/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ -s /tmp/build-inputs/ca.crt ]; then \
        cat "$(python -c 'import pip._vendor.certifi as c; print(c.where())')" \
            /tmp/build-inputs/ca.crt > /tmp/ca-bundle.crt; \
        export PIP_CERT=/tmp/ca-bundle.crt; \
    fi; \
    if ls /tmp/build-inputs/wheels/*.whl >/dev/null 2>&1; then \
        export PIP_FIND_LINKS=/tmp/build-inputs/wheels; \
    fi; \
    set --; \
    if [ "${TORCH_VARIANT}" = cpu ] && [ -n "${TORCH_CPU_INDEX}" ]; then \
        set -- --extra-index-url "${TORCH_CPU_INDEX}"; \
    fi; \
    pip install --no-cache-dir --require-hashes "$@" -r /tmp/lock.txt; \
    rm -rf /tmp/lock.txt /tmp/build-inputs /tmp/ca-bundle.crt

FROM python AS runtime
ARG TORCH_VARIANT=cuda
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="holly" \
      org.opencontainers.image.description="HOLLy: 3D point clouds from 2D super-resolution microscopy images; package, Snakemake workflow and default config" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      io.github.holly.torch-variant="${TORCH_VARIANT}"
COPY --from=deps /opt/venv /opt/venv

# The package itself, without dependencies (all of them came from the lock file above);
# setuptools for the build also comes from the lock (hashed), hence --no-build-isolation.
COPY pyproject.toml README.md /opt/holly/src/
COPY holly /opt/holly/src/holly
RUN pip install --no-cache-dir --no-deps --no-build-isolation /opt/holly/src \
    && rm -rf /opt/holly/src \
    && holly --version

# The workflow and its default config, read-only for the user. envs/ too: rules name the conda
# environment, and Snakemake reads that file even when it does not deploy it.
COPY Snakefile /opt/holly/Snakefile
COPY workflow /opt/holly/workflow
COPY config /opt/holly/config
COPY envs /opt/holly/envs

# Numeric non-root user (uid/gid 1000). `docker run -u "$(id -u):$(id -g)"` and Apptainer (which
# runs as the calling user) may use any other uid, so every cache points into /tmp, writable for all.
RUN groupadd --gid 1000 holly \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash holly \
    && mkdir /data \
    && chown 1000:1000 /data
# The commit the image was built from, for every run's provenance.json (the installed package
# is no git checkout; `make image` passes it).
ENV HOLLY_REVISION="${REVISION}" \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/holly-cache/matplotlib \
    XDG_CACHE_HOME=/tmp/holly-cache \
    TORCH_HOME=/tmp/holly-cache/torch \
    HOLLY_WORKFLOW=/opt/holly
USER 1000:1000
WORKDIR /data

# The working directory (results/, resources/, logs/) is the bind-mounted /data. Arguments replace
# CMD, so pass `--configfile` again when giving your own (see docs/containers.md).
ENTRYPOINT ["snakemake", "--snakefile", "/opt/holly/Snakefile"]
CMD ["--cores", "all", "--configfile", "/opt/holly/config/config.yaml"]
