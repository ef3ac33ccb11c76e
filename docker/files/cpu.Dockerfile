# syntax=docker/dockerfile:1
# MASt3R demo, CPU only.
#
# Build context: the repository root (see docker/docker-compose-cpu.yml), e.g.
#   docker build -f docker/files/cpu.Dockerfile -t mast3r-demo:cpu .
# torch is installed first, pinned, from the CPU wheel index: an unpinned torch from PyPI pulls several GB
# of CUDA libraries that a CPU image never uses.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG USER_UID=1000

LABEL org.opencontainers.image.title="mast3r-demo" \
      org.opencontainers.image.description="MASt3R browser demo (CPU)"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MAST3R_HOME=/mast3r \
    MAST3R_CHECKPOINT_DIR=/mast3r/checkpoints \
    HF_HOME=/home/mast3r/.cache/huggingface \
    DEVICE=cpu \
    MODEL=MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth \
    PORT=7860

# 1. torch, pinned, CPU wheel (its own layer: it changes least often); setuptools for the editable install.
RUN pip install --no-cache-dir "setuptools>=77" \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# 2. the other dependencies; only requirements.txt is copied so that editing the code keeps this layer.
WORKDIR /mast3r
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# 3. the code, installed in editable mode against the torch above (no CUDA here: curope is not built).
COPY . .
RUN MAST3R_BUILD_CUROPE=0 pip install --no-cache-dir --no-build-isolation --no-deps -e . \
    && python -c "import torch, mast3r.model; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

COPY docker/files/entrypoint.sh /usr/local/bin/mast3r-entrypoint.sh

# 4. an unprivileged user; its Hugging Face cache directory exists so that a named volume mounted there
#    inherits the ownership.
RUN useradd --create-home --uid "${USER_UID}" --shell /usr/sbin/nologin mast3r \
    && mkdir -p "${HF_HOME}" "${MAST3R_CHECKPOINT_DIR}" \
    && chown -R mast3r:mast3r /home/mast3r \
    && chmod 0755 /usr/local/bin/mast3r-entrypoint.sh
USER ${USER_UID}

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ.get('PORT', '7860'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/mast3r-entrypoint.sh"]
CMD []
