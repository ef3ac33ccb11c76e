#!/usr/bin/env bash
# Build and start the MASt3R demo with Docker Compose (CPU by default, CUDA with --with-cuda).
# Run `bash run.sh --help` for the options.
set -euo pipefail

DOCKER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly DOCKER_DIR
readonly DOWNLOAD_ROOT="https://download.europe.naverlabs.com/ComputerVision"

usage() {
    cat <<USAGE
Usage: bash run.sh [options]

Build the MASt3R demo image and start it with Docker Compose. The demo is served on
http://localhost:7860 (see --port and --local_network).

Options:
  --with-cuda            use the CUDA image (docker-compose-cuda.yml; needs the NVIDIA Container Toolkit)
                         instead of the CPU image (docker-compose-cpu.yml)
  --model_name=NAME      checkpoint to serve, with or without .pth
                         (default: MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric)
  --checkpoints=DIR      host folder mounted read-only at /mast3r/checkpoints (default: ../checkpoints)
  --port=PORT            host port (default: 7860)
  --local_network        publish the port on all host addresses (default: 127.0.0.1 only)
  --no-download          do not download a missing checkpoint; the container then loads
                         naver/NAME from the Hugging Face hub (cached in a Docker volume)
  -h, --help             show this help and exit

A missing MASt3R_* or DUSt3R_* checkpoint is downloaded from ${DOWNLOAD_ROOT}
(licence CC BY-NC-SA 4.0, non-commercial use; see checkpoints/README.md).
USAGE
}

die() {
    echo "run.sh: $*" >&2
    echo "Try 'bash run.sh --help'." >&2
    exit 2
}

# ---- arguments -------------------------------------------------------------------------------------------
with_cuda=0
model_name="MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"
checkpoints="${MAST3R_CHECKPOINTS:-${DOCKER_DIR}/../checkpoints}"
port=7860
bind_address=127.0.0.1
download=1

while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --with-cuda) with_cuda=1 ;;
        --model_name=*) model_name="${1#*=}" ;;
        --model_name) (($# > 1)) || die "--model_name needs a value"; model_name="$2"; shift ;;
        --checkpoints=*) checkpoints="${1#*=}" ;;
        --checkpoints) (($# > 1)) || die "--checkpoints needs a value"; checkpoints="$2"; shift ;;
        --port=*) port="${1#*=}" ;;
        --port) (($# > 1)) || die "--port needs a value"; port="$2"; shift ;;
        --local_network) bind_address=0.0.0.0 ;;
        --no-download) download=0 ;;
        *) die "unknown argument '$1'" ;;
    esac
    shift
done

model_name="${model_name%.pth}"
[[ ${model_name} =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "invalid --model_name '${model_name}' (a checkpoint file name: letters, digits, '.', '_', '-')"
if ! [[ ${port} =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
    die "invalid --port '${port}' (1-65535)"
fi
[[ -n ${checkpoints} ]] || die "--checkpoints must not be empty"
checkpoint_file="${model_name}.pth"

# ---- helpers ---------------------------------------------------------------------------------------------
find_compose() {
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        echo "run.sh: Docker Compose was not found; install Docker and its compose plugin" \
            "(https://docs.docker.com/get-started/)" >&2
        exit 1
    fi
}

download_url() {
    case "$1" in
        MASt3R_*) echo "${DOWNLOAD_ROOT}/MASt3R/$1" ;;
        DUSt3R_*) echo "${DOWNLOAD_ROOT}/DUSt3R/$1" ;;
        *) return 1 ;;
    esac
}

fetch_checkpoint() {
    local dest="${checkpoints}/${checkpoint_file}" url part
    if [[ -e ${dest} ]]; then
        echo "run.sh: using ${dest}"
        return
    fi
    if ((download == 0)); then
        echo "run.sh: ${dest} not found; the container will load naver/${model_name} from the hub"
        return
    fi
    url="$(download_url "${checkpoint_file}")" \
        || die "no download address known for '${checkpoint_file}': put it in ${checkpoints}/ or use --no-download"
    mkdir -p "${checkpoints}"
    part="${dest}.part"
    echo "run.sh: downloading ${url}"
    if command -v curl >/dev/null 2>&1; then
        curl --fail --location --retry 3 --output "${part}" "${url}" || { rm -f "${part}"; exit 1; }
    elif command -v wget >/dev/null 2>&1; then
        wget --tries=3 --output-document="${part}" "${url}" || { rm -f "${part}"; exit 1; }
    else
        die "neither curl nor wget is installed: download ${url} into ${checkpoints}/ by hand"
    fi
    mv "${part}" "${dest}"
}

# ---- main ------------------------------------------------------------------------------------------------
main() {
    local compose_file
    find_compose
    fetch_checkpoint
    if ((with_cuda)); then
        compose_file="${DOCKER_DIR}/docker-compose-cuda.yml"
    else
        compose_file="${DOCKER_DIR}/docker-compose-cpu.yml"
    fi
    mkdir -p "${checkpoints}"
    MAST3R_CHECKPOINTS="$(cd "${checkpoints}" && pwd)"
    export MAST3R_CHECKPOINTS
    export MODEL="${checkpoint_file}" MAST3R_PORT="${port}" MAST3R_BIND="${bind_address}"
    echo "run.sh: serving ${MODEL} on http://${bind_address}:${port} ($(basename "${compose_file}"))"
    exec "${compose[@]}" -f "${compose_file}" up --build
}

main
