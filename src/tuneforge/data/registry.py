"""The dataset registry: LLaMA-Factory's ``dataset_info.json``, read unchanged.

Example entry::

    "alpaca_demo": {"file_name": "alpaca_demo.json"}
    "dpo_demo": {"file_name": "dpo.json", "formatting": "sharegpt", "ranking": true,
                 "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}

LLaMA-Factory's edge case holds: when ``columns`` (or ``tags``) is given, every column (tag)
it does not list is None, not its default. A dataset may also be named by a path to a data file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import TuneforgeError

DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text",
                 ".arrow": "arrow"}
INFO_FILE = "dataset_info.json"


class RegistryError(TuneforgeError, ValueError):
    """A dataset that cannot be found or whose registry entry is malformed; the message says which."""


@dataclass
class Columns:
    prompt: str | None = "instruction"
    query: str | None = "input"
    response: str | None = "output"
    history: str | None = None
    messages: str | None = "conversations"
    system: str | None = None
    tools: str | None = None
    images: str | None = None
    videos: str | None = None
    audios: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: str | None = None


@dataclass
class Tags:
    role_tag: str | None = "from"
    content_tag: str | None = "value"
    user_tag: str | None = "human"
    assistant_tag: str | None = "gpt"
    observation_tag: str | None = "observation"
    function_tag: str | None = "function_call"
    system_tag: str | None = "system"


@dataclass
class DatasetAttr:
    """One registered dataset."""

    name: str
    source: Literal["file", "hf_hub", "ms_hub"]
    path: str
    formatting: Literal["alpaca", "sharegpt", "openai"] = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: Columns = field(default_factory=Columns)
    tags: Tags = field(default_factory=Tags)

    def files(self) -> list[Path]:
        """The data files of a local dataset: the file, or a folder's files in sorted order."""
        base = Path(self.path)
        if base.is_dir():
            return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [base]


def _override(cls: type, given: dict[str, Any] | None, where: str) -> Any:
    if given is None:
        return cls()
    if not isinstance(given, dict):
        raise RegistryError(f"{where}: must be an object")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise RegistryError(f"{where}: unknown {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    # LLaMA-Factory semantics: a given object resets every entry it does not list
    return cls(**{n: given.get(n) for n in names})


_KNOWN = {"file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "formatting",
          "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}


def _source(name: str, entry: dict[str, Any], dataset_dir: Path, use_modelscope: bool) -> tuple[str, str]:
    if "ms_hub_url" in entry and (use_modelscope or "hf_hub_url" not in entry):
        return "ms_hub", entry["ms_hub_url"]
    if "hf_hub_url" in entry:
        return "hf_hub", entry["hf_hub_url"]
    if "file_name" in entry:
        return "file", str(dataset_dir / entry["file_name"])
    raise RegistryError(f"{INFO_FILE}: dataset '{name}' needs file_name, hf_hub_url or ms_hub_url")


def parse_entry(name: str, entry: Any, dataset_dir: Path, use_modelscope: bool = False) -> DatasetAttr:
    """Build a :class:`DatasetAttr` from one ``dataset_info.json`` entry."""
    where = f"{dataset_dir / INFO_FILE}: dataset '{name}'"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: must be an object")
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {', '.join(unknown)}")
    source, path = _source(name, entry, dataset_dir, use_modelscope)
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise RegistryError(f"{where}: formatting {formatting!r} is not alpaca, sharegpt or openai")
    return DatasetAttr(
        name=name, source=source, path=path, formatting=formatting, ranking=bool(entry.get("ranking", False)),
        subset=entry.get("subset"), split=entry.get("split", "train"), folder=entry.get("folder"),
        num_samples=entry.get("num_samples"),
        columns=_override(Columns, entry.get("columns"), where + " columns"),
        tags=_override(Tags, entry.get("tags"), where + " tags"),
    )


def read_info(dataset_dir: str | Path) -> dict[str, Any]:
    """The raw ``dataset_info.json`` of a folder ({} when there is none)."""
    info = Path(dataset_dir) / INFO_FILE
    if not info.is_file():
        return {}
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RegistryError(f"{info}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{info}: the top level must be an object of datasets")
    return data


def get_dataset_attr(name: str, dataset_dir: str | Path, use_modelscope: bool = False) -> DatasetAttr:
    """Find ``name`` in ``dataset_dir/dataset_info.json``, or treat it as a path to a data file or folder."""
    from ..utils.suggest import did_you_mean

    dataset_dir = Path(dataset_dir)
    info = read_info(dataset_dir)
    if name in info:
        return parse_entry(name, info[name], dataset_dir, use_modelscope)
    direct = Path(name)
    if direct.suffix in DATA_SUFFIXES and direct.is_file():
        return DatasetAttr(name=name, source="file", path=str(direct))
    if not info and not (dataset_dir / INFO_FILE).exists():
        raise RegistryError(
            f"dataset '{name}' not found: {dataset_dir / INFO_FILE} does not exist and '{name}' is not a data file"
        )
    raise RegistryError(f"dataset '{name}' is not in {dataset_dir / INFO_FILE}.{did_you_mean(name, info)}")
