"""Read a YAML/JSON config plus command-line overrides into a resolved :class:`Config`.

Overrides follow the file, in either form, and win over it::

    tuneforge check cfg.yaml learning_rate=1e-4 --lora_rank 16 --plot_loss

Every problem is collected (never the first one only): unknown keys with a
suggestion, values of the wrong type or out of range, environment variables
written into the file, legacy keys (translated with a notice).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..utils.suggest import did_you_mean
from .coerce import CoerceError, coerce, describe_type
from .diagnostics import ConfigError, Diagnostic
from .legacy import apply_legacy
from .schema import DERIVED_ONLY, GROUPS, Config, all_specs, group_classes, load_table
from .yamlfile import read_yaml

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Resolution:
    """The outcome of resolving a config: values, where each came from, and the diagnostics."""

    config: Config | None
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    path: Path | None = None
    explicit: set[str] = field(default_factory=set)
    environ: Mapping[str, str] = field(default_factory=dict)  # the environment resolved against (hub cache, offline)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "error"]

    def is_set(self, key: str) -> bool:
        """Whether the user wrote this key (file, override or environment), even if a rule changed it later."""
        return key in self.explicit


@dataclass
class _Raw:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    diags: list[Diagnostic] = field(default_factory=list)

    def error(self, key: str, message: str) -> None:
        self.diags.append(Diagnostic("error", key, message))

    def notice(self, key: str, message: str) -> None:
        self.diags.append(Diagnostic("notice", key, message))


def read_config_file(path: Path, repeated: list[Diagnostic] | None = None) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping, or raise ConfigError naming the file and line.

    A key written twice in a YAML file is an error too: appended to ``repeated`` when given (so it is reported
    with every other problem), else raised.
    """
    if not path.is_file():
        raise ConfigError([Diagnostic("error", str(path), "config file not found")])
    text = path.read_text(encoding="utf-8", errors="replace")
    twice: list[Diagnostic] = []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError([Diagnostic("error", str(path), f"cannot parse: {err}")]) from None
    else:
        data, twice = read_yaml(text, str(path))
    if twice and repeated is None:
        raise ConfigError(twice)
    (repeated if repeated is not None else []).extend(twice)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError([Diagnostic("error", str(path), "the top level must be a mapping of key: value")])
    return dict(data)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(tokens: Sequence[str]) -> tuple[list[tuple[str, Any]], list[Diagnostic]]:
    """Turn ``key=value``, ``--key value``, ``--key=value`` and bare ``--flag`` into pairs."""
    pairs: list[tuple[str, Any]] = []
    diags: list[Diagnostic] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok.startswith("--") and len(tok) > 2:
            key, eq, text = tok[2:].partition("=")
            if not eq:
                if i < len(tokens) and not tokens[i].startswith("--"):
                    text, i = tokens[i], i + 1
                else:
                    text = "true"
            pairs.append((key.replace("-", "_") if key not in all_specs() else key, _parse_scalar(text)))
        elif "=" in tok and not tok.startswith("="):
            key, _, text = tok.partition("=")
            pairs.append((key.strip(), _parse_scalar(text)))
        else:
            diags.append(Diagnostic("error", tok, "unexpected argument: write overrides as key=value or --key value"))
    return pairs, diags


def _flatten(data: Mapping[str, Any], raw: _Raw, source: str) -> None:
    specs = all_specs()
    for key, value in data.items():
        key = str(key)
        if key in GROUPS and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                sub = str(sub)
                if sub in specs and specs[sub].group != key:
                    raw.notice(sub, f"written under '{key}:' but belongs to the {specs[sub].group} group")
                raw.values[sub], raw.sources[sub] = sub_value, source
            continue
        raw.values[key], raw.sources[key] = value, source


def _unsupported_index() -> tuple[dict[str, str], dict[str, Any]]:
    table = load_table("unsupported.yaml")
    reason = {key: what for what, keys in table["_groups"].items() for key in keys}
    return reason, table["_defaults"]


def _apply_unsupported(raw: _Raw) -> None:
    reason, defaults = _unsupported_index()
    for key in [k for k in raw.values if k in reason]:
        value = raw.values.pop(key)
        raw.sources.pop(key)
        if value == defaults.get(key) or value in (None, False, 0, "", []):
            raw.notice(key, f"ignored: tuneforge does not support {reason[key]} (LLaMA-Factory key)")
        else:
            raw.error(key, f"tuneforge does not support {reason[key]}; remove {key} (got {value!r})")


def _check_unknown(raw: _Raw, environ: Mapping[str, str]) -> None:
    specs = all_specs()
    lenient = coerce(specs["ALLOW_EXTRA_ARGS"], environ.get("ALLOW_EXTRA_ARGS", "0"))
    for key in [k for k in raw.values if k not in specs or specs[k].group == "env"]:
        raw.values.pop(key)
        raw.sources.pop(key)
        if key in specs:
            raw.error(key, f"{key} is an environment variable, not a config key: set it in the shell, "
                           f"e.g. `{key}=... tuneforge train config.yaml`")
        elif key in DERIVED_ONLY:
            raw.error(key, f"{key} is computed ({DERIVED_ONLY[key][1]}) and cannot be set")
        else:
            known = [k for k, s in specs.items() if s.group != "env"]
            message = f"unknown key '{key}'.{did_you_mean(key, known)}"
            if lenient:
                raw.diags.append(Diagnostic("warning", key, message + " Ignored because ALLOW_EXTRA_ARGS is set."))
            else:
                raw.error(key, message + " (ALLOW_EXTRA_ARGS=1 turns this into a warning.)")


def _coerce_all(raw: _Raw, environ: Mapping[str, str]) -> dict[str, Any]:
    specs = all_specs()
    typed: dict[str, Any] = {}
    for key, value in raw.values.items():
        try:
            typed[key] = coerce(specs[key], value)
        except CoerceError as err:
            raw.error(key, f"invalid value {value!r}: {err} (allowed: {describe_type(specs[key])})")
    for key, spec in specs.items():
        if spec.group != "env" or key not in environ:
            continue
        try:
            typed[key] = coerce(spec, environ[key])
            raw.sources[key] = "override"
        except CoerceError as err:
            raw.error(key, f"environment variable {key}={environ[key]!r}: {err}")
    return typed


def _build(typed: dict[str, Any]) -> Config:
    specs = all_specs()
    parts: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for key, spec in specs.items():
        parts[spec.group][key] = typed[key] if key in typed else spec.default_value()
    classes = group_classes()
    return Config(**{g: classes[g](**parts[g]) for g in GROUPS})


def resolve(
    data: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Resolution:
    """Resolve file data plus overrides into a Config, derive values and run every rule.

    Never raises for user mistakes: the problems are in ``Resolution.diagnostics``; ``config`` is
    None only when the values could not be read at all.
    """
    from .derive import derive
    from .rules import run_rules

    environ = os.environ if environ is None else environ
    raw = _Raw()
    _flatten(data or {}, raw, "file")
    pairs, diags = parse_overrides(overrides)
    raw.diags.extend(diags)
    _flatten(dict(pairs), raw, "override")
    apply_legacy(raw)
    _apply_unsupported(raw)
    _check_unknown(raw, environ)
    typed = _coerce_all(raw, environ)
    config = _build(typed)
    sources = {key: raw.sources.get(key, "default") for key in all_specs()}
    explicit = {key for key, source in sources.items() if source != "default"}
    res = Resolution(config, sources, raw.diags, path, explicit, environ)
    derive(res)
    res.diagnostics.extend(run_rules(res))
    return res


def split_argv(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """Separate the config file (first argument ending in .yaml/.yml/.json) from the overrides."""
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        return Path(argv[0]), list(argv[1:])
    return None, list(argv)


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Resolution:
    """``argv`` = ``[config_file] [overrides...]`` → Resolution (raises ConfigError if the file is unreadable)."""
    path, overrides = split_argv(argv)
    repeated: list[Diagnostic] = []
    data = read_config_file(path, repeated) if path else {}
    res = resolve(data, overrides, environ, path)
    res.diagnostics[:0] = repeated
    return res
