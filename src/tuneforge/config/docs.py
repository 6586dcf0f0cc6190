"""Generate ``docs/parameters.md`` from the schema, so the reference cannot drift from the code."""

from __future__ import annotations

import textwrap

from .coerce import describe_type
from .fields import FieldSpec
from .schema import DERIVED_ONLY, GROUPS, all_specs, hf_table_version

_INTRO = """\
# Parameters

Generated from the schema by `python scripts/gen_parameters_doc.py` (transformers {version}); do not edit.
Keys and defaults follow LLaMA-Factory; the `training`, `evaluation` and `monitoring` groups also hold every
key of the installed transformers' `Seq2SeqTrainingArguments` (marked *HF*), with transformers' defaults.
`env` values are read from environment variables only. `tuneforge check CONFIG` shows where each value of a
config came from.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(spec: FieldSpec) -> str:
    value = spec.default_value()
    if hasattr(value, "value"):
        value = value.value
    return "`" + _cell(repr(value) if isinstance(value, str) else str(value)) + "`"


def _help(spec: FieldSpec) -> str:
    text = " ".join(spec.help.split())
    if spec.origin == "transformers":
        text = "*HF* " + textwrap.shorten(text, 160, placeholder=" ...")
    derived = {"lora_alpha": " Derived: 2 x lora_rank.", "packing": " Derived: true for stage pt.",
               "eval_steps": " Derived: logging_steps.", "generation_max_length": " Derived: cutoff_len."}
    return _cell(text + derived.get(spec.name, ""))


def render() -> str:
    """The whole markdown document."""
    parts = [_INTRO.format(version=hf_table_version())]
    specs = all_specs()
    for group in GROUPS:
        rows = [s for s in specs.values() if s.group == group]
        parts.append(f"\n## {group}\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
        parts.extend(f"| `{s.name}` | {_cell(describe_type(s))} | {_default(s)} | {_help(s)} |\n" for s in rows)
        derived = [(k, m) for k, (g, m) in DERIVED_ONLY.items() if g == group]
        if derived:
            parts.append("\nShown by `check`, computed, not settable: ")
            parts.append("; ".join(f"`{k}` ({m})" for k, m in derived) + ".\n")
    return "".join(parts)
