"""Where a model comes from: a local folder, the Hugging Face hub or ModelScope, and the keywords every load shares.

Every failure to find or read a model, tokenizer or adapter becomes a :class:`ModelLoadError` that names what was
asked for and what to do, instead of a hub traceback (most often: an offline machine given a hub id).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.paths import source_kind
from .errors import ModelLoadError
from .offline import hub_unreachable, local_only


def hub_kwargs(cfg) -> dict[str, Any]:
    """Keywords for every ``from_pretrained`` of the base model: remote code, cache, revision and token."""
    m = cfg.model
    kwargs: dict[str, Any] = {"trust_remote_code": m.trust_remote_code, "revision": m.model_revision}
    if m.cache_dir:
        kwargs["cache_dir"] = m.cache_dir
    if m.hf_hub_token:
        kwargs["token"] = m.hf_hub_token
    if local_only(m.model_name_or_path):  # no hub: fail at once instead of a minute of retries
        kwargs["local_files_only"] = True
    return kwargs


def looks_like_path(name: str) -> bool:
    """A name that can only be a folder (absolute, relative, home or nested), never a hub id ``org/name``."""
    return source_kind(name) == "local"


def model_source(cfg) -> str:
    """The folder or hub id to load the base model from; downloads it first when ModelScope is asked for."""
    name = cfg.model.model_name_or_path
    if not name:
        raise ModelLoadError("model_name_or_path is required: a local model folder or a hub id")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if looks_like_path(name):
        raise ModelLoadError(f"model_name_or_path {name!r}: no such folder")
    if source_kind(name) == "invalid":
        raise ModelLoadError(f"model_name_or_path {name!r} is neither a local folder nor a hub id (owner/name)")
    if cfg.env.USE_MODELSCOPE_HUB:
        return _modelscope_download(cfg, name)
    return name


def _modelscope_download(cfg, name: str) -> str:
    if importlib.util.find_spec("modelscope") is None:
        raise ModelLoadError(
            f"USE_MODELSCOPE_HUB is set but the modelscope package is not installed, so {name!r} cannot be "
            "downloaded (pip install modelscope), or unset USE_MODELSCOPE_HUB to use the Hugging Face hub"
        )
    from modelscope import snapshot_download
    from modelscope.hub.api import HubApi

    if cfg.model.ms_hub_token:
        HubApi().login(cfg.model.ms_hub_token)
    # ModelScope calls the default branch "master"; "main" is LLaMA-Factory's default revision for both hubs.
    revision = "master" if cfg.model.model_revision == "main" else cfg.model.model_revision
    try:
        return snapshot_download(name, revision=revision, cache_dir=cfg.model.cache_dir)
    except Exception as err:  # modelscope raises many unrelated types; all mean "could not download"
        raise ModelLoadError(f"cannot download {name!r} from ModelScope: {err}") from err


def _offline() -> bool:
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE) or hub_unreachable()


@contextlib.contextmanager
def explain_hub_errors(what: str, name: str) -> Iterator[None]:
    """Turn the OSError/ValueError of a failed hub lookup into a ModelLoadError naming ``what`` and ``name``."""
    try:
        yield
    except (OSError, ValueError) as err:
        if isinstance(err, ModelLoadError):
            raise
        if Path(name).expanduser().exists():
            raise ModelLoadError(f"cannot read {what} {name!r}: {err}") from err
        hint = (
            "the hub cannot be reached (no network, or HF_HUB_OFFLINE is set) and it is not in the local cache; "
            f"download it on a machine with network access (hf download {name}) or point to a local folder"
            if _offline()
            else "it is not a local folder and the hub lookup failed"
        )
        raise ModelLoadError(f"cannot load {what} {name!r}: {hint} ({_first_line(err)})") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_config(cfg, source: str):
    """``AutoConfig`` of the base model, with hub errors explained."""
    from transformers import AutoConfig

    with explain_hub_errors("model", cfg.model.model_name_or_path):
        return AutoConfig.from_pretrained(source, **hub_kwargs(cfg))
