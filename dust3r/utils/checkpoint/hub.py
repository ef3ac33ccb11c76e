"""Hub ids (``owner/name``) resolved to a snapshot directory of the local Hugging Face cache."""
from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlsplit

from .errors import CheckpointError, CheckpointNotFoundError
from .files import _short_error
from .hf import CONFIG_NAME, PYTORCH_WEIGHTS_NAME, SAFETENSORS_NAME

_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".tar", ".pkl", ".pickle")
_REPO_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,95}")


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) for p in parts):
        return False
    if name.lower().endswith(_CHECKPOINT_SUFFIXES) or ".." in name or "--" in name:
        return False
    return not any(p.endswith((".", "-")) for p in parts)


def _env_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


#: seconds to wait for a TCP connection to the hub before treating the machine as offline
HUB_PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.ENDPOINT)
    except ImportError:  # pragma: no cover - a dependency of the project
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub endpoint accepts a TCP connection within ``timeout`` s, else why not (one phrase).

    One quick probe instead of huggingface_hub's retries (five back-offs, about 25 s and ten warning lines when
    the machine has no network). With a proxy configured the proxy decides: no probe, None.
    """
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return None
    endpoint = urlsplit(_hub_endpoint())
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"{host} cannot be reached ({e.strerror or type(e).__name__}; no network?)"


def resolve_pretrained(name_or_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                       revision: str | None = None, token: str | bool | None = None,
                       local_files_only: bool | None = None, force_download: bool = False) -> tuple[str, str]:
    """Find a checkpoint: ``('pth', file)``, ``('hf_dir', directory)``.

    * an existing file -> ``'pth'``; an existing directory -> ``'hf_dir'``;
    * otherwise ``owner/name`` is fetched from the Hugging Face hub (``config.json`` and ``model.safetensors``,
      or ``pytorch_model.bin`` if the repo has no safetensors) into ``cache_dir`` (hub default if None) and the
      snapshot directory is returned as ``'hf_dir'``.

    ``local_files_only=None`` means: offline iff ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set, read at call
    time (huggingface_hub itself reads it only when imported). Online, one quick probe of the hub
    (:func:`hub_unreachable_reason`) comes first: when the hub cannot be reached only the cache is used, and a
    model that is not cached fails at once with one line instead of a storm of retries.

    Raises:
        CheckpointNotFoundError: not an existing path and not a hub id, or the hub id could not be fetched.
    """
    name = os.fspath(name_or_path)
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint name must be a path or hub id string, got '{name}'")
    local = os.path.expanduser(name)
    if os.path.isfile(local):
        return "pth", local
    if os.path.isdir(local):
        return "hf_dir", local
    if os.path.exists(local):
        raise CheckpointError(f"'{name}' is neither a file nor a directory")
    if not _looks_like_repo_id(name):
        raise CheckpointNotFoundError(f"checkpoint path does not exist: '{name}' (and it is not a Hugging Face hub "
                                      "id of the form owner/name)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise CheckpointNotFoundError(f"'{name}' is not a local path, and huggingface_hub is not installed to fetch "
                                      "it from the hub: pip install huggingface_hub") from e
    offline = _env_offline() if local_files_only is None else bool(local_files_only)
    unreachable = None if offline else hub_unreachable_reason()
    offline = offline or unreachable is not None
    common = dict(repo_id=name, revision=revision, cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                  token=token, force_download=force_download, local_files_only=offline)

    def fail(what: str, err: BaseException) -> CheckpointNotFoundError:
        where = f"cache '{common['cache_dir']}'" if cache_dir is not None else "the default Hugging Face cache"
        if unreachable:
            mode = f"{unreachable} and it is not in {where}"
        elif offline:
            mode = "offline mode is on (HF_HUB_OFFLINE / local_files_only) and it is not in " + where
        else:
            mode = "it could not be downloaded and is not in " + where
        rev = f" (revision {revision!r})" if revision else ""
        return CheckpointNotFoundError(
            f"cannot get {what} of Hugging Face model '{name}'{rev}: {mode} [{_short_error(err)}]. "
            f"'{name}' is not a local path "
            "either. Download the official .pth checkpoint and pass its path, or download the repository while "
            "online (huggingface-cli download) into the cache / pass cache_dir.")

    try:
        config_file = hf_hub_download(filename=CONFIG_NAME, **common)
    except Exception as e:  # hub errors are many (HTTP, offline, validation, missing entry)
        raise fail(CONFIG_NAME, e) from e
    try:
        hf_hub_download(filename=SAFETENSORS_NAME, **common)
    except Exception as e_st:
        try:
            hf_hub_download(filename=PYTORCH_WEIGHTS_NAME, **common)
        except Exception:
            raise fail(f"the weights ({SAFETENSORS_NAME} or {PYTORCH_WEIGHTS_NAME})", e_st) from e_st
    return "hf_dir", os.path.dirname(config_file)
