"""Load the datasets a config names, convert them to the message schema, check every row, mix and split.

Entry points::

    splits = load_aligned(cfg)        # AlignedSplits(train, eval, report)
    print(splits.report.format())     # read / kept / dropped by reason, the first bad rows as file:N
    ds = load_aligned_dataset("alpaca_demo", cfg)

Local files are read by :mod:`.formats.files` (``datasets`` builders, or an exact row-by-row reader
that names each bad line), converted by the format's converter inside ``datasets.map``, and every
row is checked; bad rows are dropped and counted in the report.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, IterableDataset, Value, concatenate_datasets, load_dataset

from ..catalog import stage
from ..config.schema import Config
from .formats import (
    ERROR,
    BatchAligner,
    Converter,
    RowPolicy,
    align_rows,
    aligned_features,
    attr_problems,
    make_converter,
)
from .formats.files import RawFile, discover_files, read_file
from .messages import COLUMNS, SOURCE
from .mixing import merge_datasets, split_dataset, stream
from .registry import Columns, DatasetAttr, RegistryError, Tags, get_dataset_attr
from .validate import BadRow, DataError, DataReport, DatasetStats, RowProblem, check_stats
from .workers import map_workers

LOGGER = logging.getLogger(__name__)
AnyDataset = Dataset | IterableDataset


@dataclass
class AlignedSplits:
    """What :func:`load_aligned` returns: train (or None), eval (one dataset, a dict by name, or None), report."""

    train: AnyDataset | None
    eval: AnyDataset | dict[str, AnyDataset] | None
    report: DataReport = field(default_factory=DataReport)


def empty_aligned() -> Dataset:
    """A dataset of the message schema with no rows."""
    features = aligned_features()
    return Dataset.from_dict({name: [] for name in features}, features=features)


def row_policy(cfg: Config) -> RowPolicy:
    """Rows need a response where the stage trains on replies (catalog ``needs_response``), unless only predicting."""
    predicting = cfg.evaluation.do_predict and not cfg.training.do_train
    return RowPolicy(response_required=stage(cfg.finetuning.stage).needs_response and not predicting)


def dataset_attr(name: str, cfg: Config) -> DatasetAttr:
    """The registry entry of ``name``; ``dataset_dir: ONLINE`` makes every name a hub id."""
    use_ms = cfg.env.USE_MODELSCOPE_HUB
    if cfg.data.dataset_dir == "ONLINE":
        return DatasetAttr(name=name, source="ms_hub" if use_ms else "hf_hub", path=name)
    try:
        return get_dataset_attr(name, cfg.data.dataset_dir, use_ms)
    except RegistryError as err:
        raise DataError(str(err)) from None


def load_aligned_dataset(name: str, cfg: Config, report: DataReport | None = None) -> AnyDataset:
    """Load one dataset in the message schema, every row checked; bad rows are dropped and counted.

    Returns a ``Dataset`` (an ``IterableDataset`` only for a hub dataset with ``streaming``). The
    counts go to a new :class:`DatasetStats` appended to ``report``. Raises :class:`DataError` when
    the data cannot be read, nothing is left, or more than ``cfg.data.max_bad_rows`` of the rows are bad.
    """
    attr = dataset_attr(name, cfg)
    stats = DatasetStats(name)
    if report is not None:
        report.datasets.append(stats)
    if attr.columns.kto_tag and stage(cfg.finetuning.stage).dataset != "kto_tag":
        stats.notes.append(f"stage {cfg.finetuning.stage} ignores columns.kto_tag: undesirable replies are "
                           "trained on like the others")
    loader = _load_local if attr.source == "file" else _load_hub
    dataset = loader(attr, cfg, row_policy(cfg), stats)
    check_stats(stats, cfg.data.max_bad_rows)
    return dataset


def load_aligned(cfg: Config) -> AlignedSplits:
    """Load, mix and split the ``dataset`` and ``eval_dataset`` of a config (LLaMA-Factory semantics).

    ``val_size`` splits eval rows off the mixed training data when no ``eval_dataset`` is given;
    ``eval_on_each_dataset`` returns the eval datasets as a dict by name. With ``streaming`` the
    training data becomes a shuffled IterableDataset. Every dataset is loaded before a DataError is
    raised, so it lists the problems of all of them. The summary is logged at INFO.
    """
    data, seed = cfg.data, cfg.training.seed
    report = DataReport()
    shards = max(1, cfg.training.dataloader_num_workers)
    trains, evals = _load_groups([data.dataset or [], data.eval_dataset or []], cfg, report)
    train = merge_datasets([d for _, d in trains], data.mix_strategy, data.interleave_probs, seed, shards) \
        if trains else None
    evaluation: AnyDataset | dict[str, AnyDataset] | None = None
    if evals:
        evaluation = dict(evals) if data.eval_on_each_dataset else merge_datasets(
            [d for _, d in evals], data.mix_strategy, data.interleave_probs, seed, shards)
    elif train is not None and data.val_size > 0:
        train, evaluation = split_dataset(train, data.val_size, seed)
    if train is not None and data.streaming:
        train = stream(train, shards, data.buffer_size, seed)
    LOGGER.info("%s", report.format())
    return AlignedSplits(train, evaluation, report)


def _load_groups(groups: list[list[str]], cfg: Config, report: DataReport) -> list[list[tuple[str, AnyDataset]]]:
    """Load every named dataset (a name may repeat), then raise one DataError listing all failures."""
    loaded: list[list[tuple[str, AnyDataset]]] = [[] for _ in groups]
    errors: list[DataError] = []
    for names, out in zip(groups, loaded, strict=True):
        for name in names:
            try:
                out.append((name, load_aligned_dataset(name, cfg, report)))
            except DataError as err:
                errors.append(err)
    if errors:
        raise DataError("\n\n".join(str(e) for e in errors), [m for e in errors for m in e.messages], report)
    return loaded


def _load_local(attr: DatasetAttr, cfg: Config, policy: RowPolicy, stats: DatasetStats) -> Dataset:
    direct = _is_direct(attr)
    if not direct:
        _refuse_attr(attr, policy)  # a registered entry is checked before any file is read
    files, kind = discover_files(attr, stats)
    limit = cfg.data.max_samples if attr.num_samples is None else None
    raws: list[RawFile] = []
    for path in files:
        raws.append(read_file(path, kind, stats))
        if limit is not None and sum(len(r) for r in raws) >= limit:
            break  # max_samples keeps the first rows: later files need not be read
    if direct:
        attr = _sniff(attr, kind, next((r.column_names() for r in raws if len(r)), []), stats)
        _refuse_attr(attr, policy)
    converter = make_converter(attr, policy)
    selections = plan_selection([len(r) for r in raws], attr.num_samples, cfg.data.max_samples, cfg.training.seed)
    parts = [_convert(raw, sel, converter, cfg, stats) for raw, sel in zip(raws, selections, strict=True)]
    parts = [p for p in parts if p is not None and len(p)]
    dataset = concatenate_datasets(parts) if parts else empty_aligned()
    stats.kept = len(dataset)
    return dataset


def _refuse_attr(attr: DatasetAttr, policy: RowPolicy) -> None:
    problems = attr_problems(attr, policy)
    if problems:
        raise DataError(f"dataset '{attr.name}' cannot be used as configured:\n" + "\n".join(
            f"  - {p}" for p in problems))


def plan_selection(sizes: list[int], num_samples: int | None, max_samples: int | None,
                   seed: int) -> list[np.ndarray | None]:
    """Which rows of each file to keep: ``num_samples`` at random with the seed, then the first ``max_samples``.

    ``num_samples`` above the total oversamples with replacement. Returns per file an index array, or
    None for "all rows". Example: sizes [3, 2], max_samples 4 -> [array([0, 1, 2]), array([0])].
    """
    total = sum(sizes)
    if total == 0 or (num_samples is None and (max_samples is None or max_samples >= total)):
        return [None] * len(sizes)
    if num_samples is not None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(total)[:num_samples]
        if num_samples > total:
            order = np.concatenate([order, rng.choice(total, num_samples - total, replace=True)])
    else:
        order = np.arange(total)
    if max_samples is not None:
        order = order[:max_samples]
    bounds = np.cumsum([0, *sizes])
    return [order[(order >= lo) & (order < hi)] - lo for lo, hi in itertools.pairwise(bounds)]


def _convert(raw: RawFile, selection: np.ndarray | None, converter: Converter, cfg: Config,
             stats: DatasetStats) -> Dataset | None:
    if raw.table is None:
        rows = raw.rows if selection is None else [raw.rows[i] for i in selection]
        good, bad = align_rows(converter, raw.path, rows)
        stats.read += len(rows)
        for row in bad:
            stats.add_bad(row)
        return Dataset.from_list(good, features=aligned_features()) if good else None
    table, numbers = raw.table, raw.numbers
    if selection is not None:
        table = table.select(selection)
        numbers = (np.arange(1, len(raw.table) + 1) if numbers is None else numbers)[selection]
    stats.read += len(table)
    return _map_table(table, BatchAligner(converter, raw.path, numbers), cfg, stats)


def _features_with_error():
    features = aligned_features()
    features[ERROR] = Value("string")
    return features


def _map_table(table: Dataset, aligner: BatchAligner, cfg: Config, stats: DatasetStats) -> Dataset:
    workers = map_workers(cfg.data.preprocessing_num_workers, len(table), rows_per_worker=5000)  # checks are cheap
    mapped = table.map(aligner, batched=True, with_indices=True, remove_columns=table.column_names,
                       features=_features_with_error(), num_proc=workers,
                       load_from_cache_file=not cfg.data.overwrite_cache, desc=f"Checking {stats.name}")
    errors = mapped.with_format("arrow")[ERROR]
    bad = pc.not_equal(errors, "")
    if not pc.any(bad).as_py():
        return mapped.remove_columns(ERROR)
    sources = pc.filter(mapped.with_format("arrow")[SOURCE], bad).to_pylist()
    for source, text in zip(sources, pc.filter(errors, bad).to_pylist(), strict=True):
        problem = RowProblem.decode(text)
        stats.add_bad(BadRow(source, problem.field, problem.reason, problem.detail))
    keep = np.flatnonzero(~np.asarray(bad))
    return mapped.select(keep).remove_columns(ERROR)


def _is_direct(attr: DatasetAttr) -> bool:
    """Named by a path to a data file rather than registered (the registry then keeps name == path)."""
    return attr.source == "file" and Path(attr.name) == Path(attr.path)


def _sniff(attr: DatasetAttr, kind: str, names: list[str], stats: DatasetStats) -> DatasetAttr:
    """Guess the format of a file named directly, from its columns (a registered dataset is never guessed)."""
    cols = set(names)
    extra = {k: k for k in ("system", "tools") if k in cols}
    ranked = {"chosen", "rejected"} <= cols
    pair = {"chosen": "chosen", "rejected": "rejected"} if ranked else {}
    if kind == "text" or cols == {"text"}:
        guess = replace(attr, columns=Columns(prompt="text", query=None, response=None, messages=None))
    elif "conversations" in cols:
        guess = replace(attr, formatting="sharegpt", ranking=ranked,
                        columns=Columns(messages="conversations", **extra, **pair))
    elif "messages" in cols:
        tags = Tags(role_tag="role", content_tag="content", user_tag="user", assistant_tag="assistant",
                    observation_tag="tool", function_tag=None, system_tag="system")
        columns = Columns(messages="messages", **extra, **pair)
        guess = replace(attr, formatting="openai", ranking=ranked, columns=columns, tags=tags)
    else:
        guess = replace(attr, ranking=ranked, columns=Columns(**extra, **pair))
    kind_name = "pretraining text" if guess.columns.prompt == "text" else f"{guess.formatting} data"
    stats.notes.append(f"read as {kind_name}{' (preference)' if ranked else ''} (guessed from its "
                       f"columns: {', '.join(sorted(cols)) or 'none'}); register it in dataset_info.json to choose")
    return guess


def _load_hub(attr: DatasetAttr, cfg: Config, policy: RowPolicy, stats: DatasetStats) -> AnyDataset:
    _refuse_attr(attr, policy)
    stats.files = [attr.path]
    raw = _fetch_hub(attr, cfg)
    converter = make_converter(attr, policy)
    if isinstance(raw, IterableDataset):
        stats.counted = False
        return _align_stream(raw, BatchAligner(converter, attr.path))
    selection = plan_selection([len(raw)], attr.num_samples, cfg.data.max_samples, cfg.training.seed)[0]
    part = _convert(RawFile(attr.path, raw), selection, converter, cfg, stats)
    stats.kept = len(part) if part is not None else 0
    return part if part is not None else empty_aligned()


def _align_stream(raw: IterableDataset, aligner: BatchAligner) -> IterableDataset:
    """A hub stream in the message schema: rows are converted as they are read and bad ones skipped."""
    names = raw.column_names  # None when the hub does not say: then the raw columns are dropped afterwards
    features = _features_with_error() if names is not None else None
    rows = raw.map(aligner, batched=True, with_indices=True, remove_columns=names, features=features)
    return rows.filter(lambda error: error == "", input_columns=ERROR).select_columns(list(COLUMNS))


def _fetch_hub(attr: DatasetAttr, cfg: Config) -> AnyDataset:
    hub = "ModelScope" if attr.source == "ms_hub" else "the Hugging Face hub"
    try:
        if attr.source == "ms_hub":
            return _fetch_modelscope(attr, cfg)
        return load_dataset(attr.path, name=attr.subset, data_dir=attr.folder, split=attr.split,
                            streaming=cfg.data.streaming)
    except DataError:
        raise
    except Exception as err:  # every failure means the same to the user: no data
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "check the name and the network, or download the data and register it with file_name"
        if cfg.env.HF_HUB_OFFLINE or _datasets_offline():
            hint = ("HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set and the dataset is not in the local cache; unset it "
                    "or download the data and register it with file_name")
        raise DataError(f"dataset '{attr.name}': cannot load {attr.path!r} from {hub} ({reason}); {hint}") from None


def _datasets_offline() -> bool:
    import datasets

    return bool(datasets.config.HF_HUB_OFFLINE)


def _fetch_modelscope(attr: DatasetAttr, cfg: Config) -> AnyDataset:
    try:
        from modelscope import MsDataset
    except ImportError:
        raise DataError(f"dataset '{attr.name}' comes from ModelScope ({attr.path}), which needs the modelscope "
                        "package: pip install modelscope (or unset USE_MODELSCOPE_HUB)") from None
    data = MsDataset.load(attr.path, subset_name=attr.subset, data_dir=attr.folder, split=attr.split,
                          use_streaming=cfg.data.streaming)
    return data.to_hf_dataset() if isinstance(data, MsDataset) else data
