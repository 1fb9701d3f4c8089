# syntax=docker/dockerfile:1
#
# holly: the package, the Snakemake workflow and its default config in one image.
#
#   docker build -t holly:cuda .                              # GPU image (default)
#   docker build -t holly:cpu --build-arg TORCH_VARIANT=cpu . # CPU-only image, ~1.6 GiB
#   docker run --rm --gpus all -v "$PWD":/data -u "$(id -u):$(id -g)" holly:cuda --cores all
#
# See docs/containers.md (Docker, Apptainer, `snakemake --sdm apptainer`) and docs/cluster.md.
#
# Base image: a slim Debian 12 CPython 3.11, pinned by tag and digest, rather than nvidia/cuda or
# pytorch/pytorch. PyTorch's Linux CUDA wheels bundle the CUDA runtime, cuDNN and NCCL as nvidia-*
# wheels (all pinned and hashed in requirements/lock-cuda.txt), so a CUDA base image would only
# add a second, unused CUDA stack of several GiB. The host needs just the NVIDIA driver plus the
# NVIDIA Container Toolkit (`docker run --gpus all`) or Apptainer's `--nv`. The same base serves
# the CPU image, so both variants differ only in their lock file.
# To move the pin: docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# cuda: torch 2.13.0 from PyPI (CUDA 13.0, needs a driver that supports it; also runs on CPU).
# cpu:  torch 2.13.0+cpu from PyTorch's CPU wheel index, without the nvidia-* wheels.
ARG TORCH_VARIANT=cuda

FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# One stage per torch variant; the final stage picks one with TORCH_VARIANT. Every distribution
# is pinned and hashed in the lock file, and pip refuses anything whose hash does not match.
FROM python AS deps-cuda
COPY requirements/lock-cuda.txt /tmp/lock.txt
RUN pip install --no-cache-dir --require-hashes -r /tmp/lock.txt && rm /tmp/lock.txt

FROM python AS deps-cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements/lock-cpu.txt /tmp/lock.txt
RUN pip install --no-cache-dir --require-hashes --extra-index-url "${TORCH_CPU_INDEX}" -r /tmp/lock.txt \
    && rm /tmp/lock.txt

# hadolint ignore=DL3006
FROM deps-${TORCH_VARIANT} AS runtime
ARG TORCH_VARIANT
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="holly" \
      org.opencontainers.image.description="HOLLy: 3D point clouds from 2D super-resolution microscopy images; package, Snakemake workflow and default config" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      io.github.holly.torch-variant="${TORCH_VARIANT}"

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
ENV MPLBACKEND=Agg \
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
