"""``tuneforge export``: merge the adapters into the base and write a plain Hugging Face model folder.

The folder (``export_dir``) holds safetensors weights (shards of at most ``export_size`` GB plus
``model.safetensors.index.json`` when there is more than one), ``config.json``, a ``generation_config.json`` whose
``eos_token_id`` lists the template's stop ids (so vLLM / transformers stop where training taught the model to),
the tokenizer (``padding_side: left``) whose ``chat_template`` is the training template, and ``tuneforge_export.json``
recording what went in (base, adapters with SHA-256, template, dtype, versions).

The merge runs in float32 on the CPU from the unquantized base, then the weights are cast to the export dtype:
``infer_dtype``, or with ``auto`` the base config's dtype with float32 turned into bfloat16 (as LLaMA-Factory does).
A quantized base (``quantization_bit`` or a pre-quantized checkpoint) is refused: merging into rounded weights
loses the adapter's precision. Nothing is written into a non-empty ``export_dir`` unless asked (``--force`` or
``overwrite_output_dir``); the folder is written beside the target and renamed into place at the end, so a failed
export never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from .errors import InferError

logger = logging.getLogger(__name__)
MANIFEST = "tuneforge_export.json"
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def export_model(cfg: Any, *, force: bool = False, max_shard_size: int | str | None = None) -> Path:
    """Merge and write ``cfg.model.export_dir``; returns its path.

    ``force`` (or ``overwrite_output_dir``) replaces a non-empty folder. ``max_shard_size`` (bytes or "500MB")
    overrides ``export_size`` GB. Raises :class:`InferError` for a missing/occupied export_dir or a quantized base,
    ``ModelLoadError`` when the model or an adapter cannot be loaded.
    """
    from ..model import load_model, load_tokenizer
    from ..model.hub import load_config, model_source
    from .engine import config_template

    dest = check_export_dir(cfg, force=force or bool(cfg.monitoring.overwrite_output_dir))
    base_config = load_config(cfg, model_source(cfg))
    check_not_quantized(cfg, base_config)
    tokenizer = load_tokenizer(cfg)
    template = config_template(cfg, tokenizer)
    fp32 = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, infer_dtype="float32"))
    model = load_model(fp32, tokenizer, is_trainable=False)
    dtype = export_dtype(cfg.model.infer_dtype, _config_dtype(base_config))
    model = model.to(dtype)
    model.config.dtype = dtype
    stop_ids = template.stop_token_ids(tokenizer)
    set_generation_stops(model, tokenizer, stop_ids)
    shard = max_shard_size if max_shard_size is not None else f"{cfg.model.export_size}GB"
    with staged_dir(dest) as staging:
        save_weights(model, staging, shard)
        save_tokenizer(tokenizer, template if cfg.data.template else None, staging)
        write_manifest(staging, manifest(cfg, template, dtype, stop_ids))
    logger.info("exported %s (%s) to %s", cfg.model.model_name_or_path, str(dtype).removeprefix("torch."), dest)
    if cfg.model.export_hub_model_id:
        push_to_hub(dest, cfg.model.export_hub_model_id, cfg.model.hf_hub_token)
    return dest


# ---------------------------------------------------------------------- checks
def _sources(cfg: Any) -> list[Path]:
    names = [cfg.model.model_name_or_path, *(cfg.model.adapter_name_or_path or [])]
    return [Path(n).expanduser().resolve() for n in names if n and Path(n).expanduser().exists()]


def check_export_dir(cfg: Any, *, force: bool) -> Path:
    """The resolved ``export_dir``; refuses none, a non-empty one without ``force``, and one whose replacement would
    delete the model being exported or the working directory."""
    if not cfg.model.export_dir:
        raise InferError("export_dir is not set: add `export_dir: path/to/merged-model` to the config (or "
                         "export_dir=... on the command line)")
    dest = Path(cfg.model.export_dir).expanduser().resolve()
    protected = [*_sources(cfg), Path.cwd().resolve()]
    if any(dest == p or dest in p.parents for p in protected):
        raise InferError(f"export_dir {dest} is (or contains) the base model, an adapter or the working directory; "
                         "choose a new folder")
    if dest.exists() and not dest.is_dir():
        raise InferError(f"export_dir {dest} is a file; choose a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise InferError(f"export_dir {dest} is not empty: pass --force (or overwrite_output_dir: true) to replace "
                         "it, or choose another export_dir")
    return dest


def check_not_quantized(cfg: Any, base_config: Any) -> None:
    """Refuse to merge into quantized weights: the merged model would not equal base + adapter."""
    if cfg.model.quantization_bit is not None:
        raise InferError(f"cannot merge into a quantized base (quantization_bit: {cfg.model.quantization_bit}): "
                         "remove quantization_bit so the adapter is merged into the full-precision weights "
                         "(an adapter trained with QLoRA merges into the unquantized base)")
    if getattr(base_config, "quantization_config", None):
        method = dict(base_config.quantization_config).get("quant_method", "quantized")
        raise InferError(f"{cfg.model.model_name_or_path} is a {method} checkpoint: export needs the unquantized "
                         "base model to merge into; point model_name_or_path at it")
    if cfg.model.export_quantization_bit is not None:
        raise InferError("export_quantization_bit (GPTQ at export) is not supported: export in 16 bits, then "
                         "quantize with a dedicated tool (e.g. gptqmodel, llm-compressor)")


# ---------------------------------------------------------------------- dtype
def _config_dtype(config: Any) -> torch.dtype | None:
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(value, str):
        return _DTYPES.get(value.removeprefix("torch."))
    return value if isinstance(value, torch.dtype) else None


def export_dtype(infer_dtype: str, config_dtype: torch.dtype | None) -> torch.dtype:
    """``infer_dtype`` when set; ``auto`` keeps the base's 16-bit dtype and turns float32 (or none) into bfloat16.

    >>> export_dtype("auto", torch.float16), export_dtype("auto", torch.float32), export_dtype("float32", None)
    (torch.float16, torch.bfloat16, torch.float32)
    """
    if infer_dtype != "auto":
        return _DTYPES[infer_dtype]
    if config_dtype in (torch.float16, torch.bfloat16):
        return config_dtype
    return torch.bfloat16


# ---------------------------------------------------------------------- writing
def set_generation_stops(model: Any, tokenizer: Any, stop_ids: list[int]) -> None:
    """``generation_config.eos_token_id`` = the template's stop ids (sampling settings of the base are kept)."""
    from transformers import GenerationConfig

    config = getattr(model, "generation_config", None) or GenerationConfig()
    config.eos_token_id = list(stop_ids) if len(stop_ids) != 1 else stop_ids[0]
    if tokenizer.pad_token_id is not None:
        config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None and config.bos_token_id is None:
        config.bos_token_id = tokenizer.bos_token_id
    drop_unused_sampling_flags(config)
    model.generation_config = config


_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")


def drop_unused_sampling_flags(config: Any) -> list[str]:
    """Unset sampling flags of a greedy config (returns their names).

    Some published configs carry ``temperature`` with ``do_sample: false``; transformers refuses to save such a
    config once modified (and we modify ``eos_token_id``), so the flags that would be ignored anyway are dropped.
    """
    if config.do_sample:
        return []
    dropped = [name for name in _SAMPLING_ONLY if getattr(config, name, None) is not None]
    for name in dropped:
        setattr(config, name, None)
    if dropped:
        logger.info("generation_config: dropped %s (ignored without do_sample)", ", ".join(dropped))
    return dropped


def save_weights(model: Any, out: Path, max_shard_size: int | str) -> list[str]:
    """Write config + safetensors shards (index when sharded) into ``out``; returns the weight file names."""
    model.save_pretrained(str(out), max_shard_size=max_shard_size)
    mode = 0o666 & ~_umask()
    for path in Path(out).glob("*.safetensors*"):
        path.chmod(mode)  # transformers writes weights through a private temp file (0600): make them shareable
    return sorted(p.name for p in Path(out).glob("*.safetensors"))


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def save_tokenizer(tokenizer: Any, template: Any | None, out: Path) -> None:
    """Save the tokenizer for inference: left padding, and the named training template as its chat_template
    (``template=None`` keeps the tokenizer's own, which is what training used)."""
    if template is not None:
        tokenizer.chat_template = template.jinja_chat_template()
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(out))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _adapter_record(name: str) -> dict[str, Any]:
    path = Path(name).expanduser()
    files = sorted(p for p in path.glob("adapter_*") if p.is_file()) if path.is_dir() else []
    return {"path": name, "sha256": {p.name: file_sha256(p) for p in files}}


def _base_record(cfg: Any) -> dict[str, Any]:
    name = cfg.model.model_name_or_path
    config_file = Path(name).expanduser() / "config.json"
    return {"model_name_or_path": name, "revision": cfg.model.model_revision,
            "config_sha256": file_sha256(config_file) if config_file.is_file() else None}


def manifest(cfg: Any, template: Any, dtype: torch.dtype, stop_ids: list[int]) -> dict[str, Any]:
    """What went into the export: base, adapters with hashes, template and its flags, dtype, library versions."""
    import peft
    import transformers

    from .. import __version__

    return {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": _base_record(cfg),
        "adapters": [_adapter_record(a) for a in cfg.model.adapter_name_or_path or []],
        "template": {"name": cfg.data.template or getattr(template, "name", None),
                     "default_system": cfg.data.default_system, "enable_thinking": cfg.data.enable_thinking},
        "stop_token_ids": list(stop_ids),
        "dtype": str(dtype).removeprefix("torch."),
        "versions": {"tuneforge": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
    }


def write_manifest(out: Path, data: dict[str, Any]) -> None:
    (Path(out) / MANIFEST).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield a hidden sibling folder to write into; on success it replaces ``dest``, on failure it is removed."""
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def push_to_hub(folder: Path, repo_id: str, token: str | None) -> None:
    """Upload the export to a (created if missing) hub model repository."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    except Exception as err:  # network, auth, permissions: the export itself is done, say so
        raise InferError(f"the model was exported to {folder} but pushing it to {repo_id} failed: {err}") from None
    logger.info("pushed %s to the hub as %s", folder, repo_id)
