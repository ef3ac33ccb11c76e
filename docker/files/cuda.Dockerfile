# syntax=docker/dockerfile:1
# MASt3R demo with CUDA, and the optional cuRoPE extension compiled for the listed GPU architectures.
#
# Build context: the repository root (see docker/docker-compose-cuda.yml), e.g.
#   docker build -f docker/files/cuda.Dockerfile -t mast3r-demo:cuda .
# Two stages: the devel image (nvcc) builds a virtual environment and the extension, the runtime image
# receives the environment and the code. The CUDA version of the base images must have the same major
# version as the torch wheel's (TORCH_INDEX_URL); change the three ARGs together.
ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# 1 (default): compile croco.models.curope._C; 0: pure-PyTorch RoPE only (same numerics, a little slower).
ARG BUILD_CUROPE=1
# No GPU is visible while building: the architectures to compile for are given here (Turing .. Blackwell).
ARG TORCH_CUDA_ARCH_LIST="7.5;8.0;8.6;8.9;9.0;12.0+PTX"
ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's own Python; versions come from the pinned base image's release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv "${VIRTUAL_ENV}" \
    && pip install --no-cache-dir --upgrade "pip>=24" "setuptools>=77"

RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /mast3r
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN MAST3R_BUILD_CUROPE="${BUILD_CUROPE}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
        pip install --no-cache-dir --no-build-isolation --no-deps -e . \
    && rm -rf build \
    && if [ "${BUILD_CUROPE}" = "1" ]; then \
           ls croco/models/curope/_C*.so >/dev/null \
           || { echo "cuRoPE was requested but croco/models/curope/_C*.so was not built" >&2; exit 1; }; \
       fi


FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}

ARG USER_UID=1000
ARG DEBIAN_FRONTEND=noninteractive

LABEL org.opencontainers.image.title="mast3r-demo" \
      org.opencontainers.image.description="MASt3R browser demo (CUDA)"

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MAST3R_HOME=/mast3r \
    MAST3R_CHECKPOINT_DIR=/mast3r/checkpoints \
    HF_HOME=/home/mast3r/.cache/huggingface \
    DEVICE=cuda \
    MODEL=MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth \
    PORT=7860

COPY --from=build /opt/venv /opt/venv
COPY --from=build /mast3r /mast3r
COPY docker/files/entrypoint.sh /usr/local/bin/mast3r-entrypoint.sh

# Ubuntu 24.04 images ship a user "ubuntu" with uid 1000: replace it by our own unprivileged user.
RUN if id ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid "${USER_UID}" --shell /usr/sbin/nologin mast3r \
    && mkdir -p "${HF_HOME}" "${MAST3R_CHECKPOINT_DIR}" \
    && chown -R mast3r:mast3r /home/mast3r \
    && chmod 0755 /usr/local/bin/mast3r-entrypoint.sh
USER ${USER_UID}
WORKDIR /mast3r

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '7860'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/mast3r-entrypoint.sh"]
CMD []
