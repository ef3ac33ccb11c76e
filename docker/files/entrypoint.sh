#!/usr/bin/env bash
# Container entry point: start the MASt3R browser demo, reachable from outside the container.
#
# Environment (defaults set by the Dockerfiles / compose files):
#   MODEL                   checkpoint name, e.g. MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth.
#                           Loaded from $MAST3R_CHECKPOINT_DIR/$MODEL (a .pth file or a Hugging Face
#                           directory) when it exists there, else from the hub (naver/<name without .pth>,
#                           cached in $HF_HOME).
#   DEVICE                  torch device (cpu, cuda, cuda:1, ...)
#   PORT                    port inside the container (7860)
#   MAST3R_HOME             where the repository lives in the image (/mast3r)
#   MAST3R_CHECKPOINT_DIR   the mounted checkpoints folder (/mast3r/checkpoints)
# Any argument given to the container is appended to demo.py's command line (e.g. --image_size 224).
set -euo pipefail

die() {
    echo "entrypoint: $*" >&2
    exit 2
}

model=${MODEL:-MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth}
device=${DEVICE:-cpu}
port=${PORT:-7860}
home_dir=${MAST3R_HOME:-/mast3r}
ckpt_dir=${MAST3R_CHECKPOINT_DIR:-${home_dir}/checkpoints}

# MODEL names a file or folder under the checkpoints folder, or a hub id: no absolute path, no '..'.
[[ ${model} =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ ]] || die "MODEL='${model}' is not a valid checkpoint name"
[[ /${model}/ != */../* ]] || die "MODEL='${model}' must not contain '..'"
[[ ${device} =~ ^(cpu|cuda(:[0-9]+)?)$ ]] || die "DEVICE='${device}' must be cpu, cuda or cuda:N"
if ! [[ ${port} =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
    die "PORT='${port}' is not a port number (1-65535)"
fi

if [[ -e ${ckpt_dir}/${model} ]]; then
    source_args=(--weights "${ckpt_dir}/${model}")
else
    echo "entrypoint: ${ckpt_dir}/${model} not found, loading '${model%.pth}' from the Hugging Face hub" >&2
    source_args=(--model_name "${model%.pth}")
fi

cd "${home_dir}"
exec python3 demo.py "${source_args[@]}" --device "${device}" --local_network --server_port "${port}" "$@"
