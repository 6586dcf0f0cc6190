"""From a config to tokenized train/eval datasets: load → validate → mix/split → tokenize → pack.

``build_datasets(cfg, tokenizer, template)`` is what every stage calls. With ``tokenized_path`` set, an
existing saved dataset is loaded instead (the other data keys are then ignored, with a log line), and a
new one is saved there after processing. The bundle carries fingerprints of the data files and of the
processing settings, which the trainer records next to every checkpoint and compares on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, DatasetDict, IterableDataset, load_from_disk

from ..config.schema import Config
from .loader import load_aligned
from .processors import ProcessStats, process, processor_key
from .registry import RegistryError, get_dataset_attr

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from .templates.base import Template

logger = logging.getLogger(__name__)
AnyDataset = Dataset | IterableDataset


@dataclass
class DatasetBundle:
    """Tokenized datasets plus what is needed to record and compare them."""

    train: AnyDataset | None
    eval: AnyDataset | dict[str, AnyDataset] | None
    fingerprints: dict[str, str] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_fingerprints(cfg: Config) -> dict[str, str]:
    """``{dataset name: hash of its files}`` for local datasets, ``{name: url}`` for hub ones."""
    out: dict[str, str] = {}
    for name in (cfg.data.dataset or []) + (cfg.data.eval_dataset or []):
        try:
            attr = get_dataset_attr(name, cfg.data.dataset_dir, cfg.env.USE_MODELSCOPE_HUB)
        except RegistryError:
            continue
        if attr.source != "file":
            out[name] = f"{attr.source}:{attr.path}"
            continue
        files = attr.files()
        joined = "".join(_sha256(p) for p in files if p.is_file())
        out[name] = hashlib.sha256(joined.encode()).hexdigest()[:16]
    return out


def settings_fingerprint(cfg: Config, tokenizer: Tokenizer, template: Template) -> str:
    """A hash of everything that changes the tokenized rows: tokenizer vocab, template and data settings."""
    data = cfg.data
    keys = {
        "stage": cfg.finetuning.stage, "template": getattr(template, "name", None), "cutoff_len": data.cutoff_len,
        "train_on_prompt": data.train_on_prompt, "mask_history": data.mask_history, "packing": data.packing,
        "neat_packing": data.neat_packing, "max_samples": data.max_samples, "val_size": data.val_size,
        "mix_strategy": data.mix_strategy, "interleave_probs": data.interleave_probs, "seed": cfg.training.seed,
        "vocab": len(tokenizer), "tokenizer": type(tokenizer).__name__, "default_system": data.default_system,
        "enable_thinking": data.enable_thinking,
    }
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _process_one(ds: AnyDataset, cfg: Config, tokenizer: Tokenizer, template: Template, key: str, label: str,
                 summary: list[str]) -> AnyDataset:
    if isinstance(ds, IterableDataset):
        from .streaming import process_stream

        summary.append(f"{label}: streaming (rows are tokenized as they are read)")
        return process_stream(ds, cfg, tokenizer, template, key=key)
    stats = ProcessStats(stage=key)
    out = process(ds, cfg, tokenizer, template, key=key, stats=stats)
    summary.append(f"{label} {stats.summary()}")
    return out


def _process_eval(eval_part: Any, cfg: Config, tokenizer: Tokenizer, template: Template, summary: list[str]) -> Any:
    if eval_part is None:
        return None
    key = processor_key(cfg, for_generation=bool(cfg.evaluation.predict_with_generate))
    if isinstance(eval_part, dict):
        return {name: _process_one(ds, cfg, tokenizer, template, key, f"eval[{name}]", summary)
                for name, ds in eval_part.items()}
    return _process_one(eval_part, cfg, tokenizer, template, key, "eval", summary)


def _load_saved(path: Path) -> DatasetBundle:
    logger.info("loading the tokenized dataset from %s; the other data keys are ignored", path)
    saved = load_from_disk(str(path))
    if isinstance(saved, DatasetDict):
        train = saved.get("train")
        evals = {k[len("validation_"):]: v for k, v in saved.items() if k.startswith("validation_")}
        eval_part = saved.get("validation", evals or None)
    else:
        train, eval_part = saved, None
    info = path / "tuneforge_fingerprints.json"
    fingerprints = json.loads(info.read_text()) if info.is_file() else {"tokenized_path": str(path)}
    return DatasetBundle(train, eval_part, fingerprints, [f"loaded tokenized data from {path}"])


def _save(bundle: DatasetBundle, path: Path) -> None:
    parts = {}
    if bundle.train is not None:
        parts["train"] = bundle.train
    if isinstance(bundle.eval, dict):
        parts.update({f"validation_{k}": v for k, v in bundle.eval.items()})
    elif bundle.eval is not None:
        parts["validation"] = bundle.eval
    DatasetDict(parts).save_to_disk(str(path))
    (path / "tuneforge_fingerprints.json").write_text(json.dumps(bundle.fingerprints, indent=2))
    bundle.summary.append(f"saved the tokenized data to {path}")


def build_datasets(cfg: Config, tokenizer: Tokenizer, template: Template) -> DatasetBundle:
    """Tokenized train/eval datasets for ``cfg.finetuning.stage``; raises ``DataError``/``ValueError`` on bad data."""
    saved = Path(cfg.data.tokenized_path) if cfg.data.tokenized_path else None
    if saved is not None and saved.is_dir() and any(saved.iterdir()):
        return _load_saved(saved)
    splits = load_aligned(cfg)
    summary: list[str] = []  # load_aligned logged the data report already
    train = None
    if splits.train is not None:
        train = _process_one(splits.train, cfg, tokenizer, template, processor_key(cfg), "train", summary)
    eval_part = _process_eval(splits.eval, cfg, tokenizer, template, summary)
    fingerprints = {**data_fingerprints(cfg), "settings": settings_fingerprint(cfg, tokenizer, template)}
    bundle = DatasetBundle(train, eval_part, fingerprints, summary)
    if saved is not None:
        _save(bundle, saved)
    return bundle
