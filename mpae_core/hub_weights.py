"""Pretrained weights from the Hugging Face hub (timm's repositories): the local cache first, the network fast.

timm's own ``pretrained=True`` asks the network before it looks at the cache and retries a failed connection with
back-off, so an offline machine waited about a minute before it learned that the weights are missing. Here the
cache is read without any network call; only when the file is not there is the hub asked, once, with a short
timeout, and the real download starts only after that answer came. ``HF_HUB_OFFLINE=1`` never touches the network.
A miss raises :class:`~mpae_core.errors.BackboneWeightsError` carrying a :class:`~mpae_core.errors.MissingWeights`,
so each front end can word its own advice (a command-line option, or a field of the app).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from .errors import BackboneWeightsError, MissingWeights, brief_error

logger = logging.getLogger(__name__)

#: Seconds to wait for the hub's first answer before deciding there is no network.
PROBE_TIMEOUT_S = 5.0
#: The most seconds the probe may take in all (a hanging name lookup included).
PROBE_DEADLINE_S = 2 * PROBE_TIMEOUT_S
#: The files a timm repository holds its weights in, in timm's order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB = "https://huggingface.co"


def hub_repository(model_name: str) -> str | None:
    """The hub repository timm downloads ``model_name``'s pretrained weights from ("timm/<name>.<tag>"), if any."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError:  # an unknown pretrained tag
        return None
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return repo.split("@")[0] if repo else None


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value, read now, not at import."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "on", "yes", "true")


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def cached_weights_file(repo: str) -> Path | None:
    """The weights file of ``repo`` in the local hub cache, found without any network call; None if absent."""
    from huggingface_hub import try_to_load_from_cache

    for filename in WEIGHT_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_weights_file(model_name: str, missing: MissingWeights) -> Path:
    """The local path of ``model_name``'s pretrained weights: from the cache, else downloaded into it.

    ``missing`` describes the weights for the error (its ``reason`` is filled in here). Raises
    BackboneWeightsError at once when offline, and after one short probe when the hub cannot be reached.
    """
    repo = hub_repository(model_name)
    if repo is None:
        raise BackboneWeightsError.for_missing(missing.because("timm knows no download for this name"))
    cached = cached_weights_file(repo)
    if cached is not None:
        logger.info("%s weights from the local cache: %s", missing.what, cached)
        return cached
    if offline_mode():
        raise BackboneWeightsError.for_missing(missing.because("offline mode: HF_HUB_OFFLINE is set"))
    filename = _probe(repo, missing)
    from huggingface_hub import hf_hub_download

    logger.info("Downloading the %s weights %s/%s (once; they are cached)", missing.what, repo, filename)
    try:
        return Path(hf_hub_download(repo, filename, endpoint=_endpoint()))
    except Exception as exc:  # noqa: BLE001 - a dropped connection, a full disk: the weights are not there
        raise BackboneWeightsError.for_missing(missing.because(f"the download failed: {brief_error(exc)}")) from exc


def _probe(repo: str, missing: MissingWeights) -> str:
    """Ask the hub once, without retries, which weights file ``repo`` has; no answer means no network.

    The question runs on a daemon thread with a hard deadline, since a name lookup on a machine without network
    can hang longer than any HTTP timeout covers.
    """
    endpoint = _endpoint()
    host = urlsplit(endpoint).netloc or endpoint
    answer: list[str | BaseException | None] = []
    asking = threading.Thread(target=lambda: answer.append(_ask_hub(repo, endpoint)), daemon=True,
                              name="hub-probe")
    asking.start()
    asking.join(PROBE_DEADLINE_S)
    if not answer:
        reason = f"no connection to {host}: no answer within {PROBE_DEADLINE_S:.0f} s"
        raise BackboneWeightsError.for_missing(missing.because(reason))
    result = answer[0]
    if isinstance(result, BaseException):
        reason = f"no connection to {host}: {brief_error(result)}"
        raise BackboneWeightsError.for_missing(missing.because(reason)) from result
    if result is None:
        raise BackboneWeightsError.for_missing(missing.because(f"{repo} holds no weights file"))
    return result


def _ask_hub(repo: str, endpoint: str) -> str | BaseException | None:
    """The first of WEIGHT_FILES that ``repo`` holds, None if none, or the exception that the question raised."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    for filename in WEIGHT_FILES:
        url = hf_hub_url(repo, filename, endpoint=endpoint)
        try:
            get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, endpoint=endpoint, retry_on_errors=False)
        except EntryNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - the HTTP client's connection errors vary by version
            return exc
        return filename
    return None

