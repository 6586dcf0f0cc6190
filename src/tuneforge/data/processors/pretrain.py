"""pt: raw text -> ``input_ids`` = [bos] + text ids + document end, ``labels`` = the same ids.

Unlike LLaMA-Factory (§11.8), the document end is always learned (labels are explicit, never derived from the pad
id, even when pad == eos), nothing is dropped from the end of the data and no token is overwritten with bos.
Without packing a document longer than ``cutoff_len`` keeps its first ``cutoff_len`` ids; with packing it is kept
whole and ``packing.pack_stream`` cuts the stream into rows. Example (Qwen, "Hi"): ``input_ids = [13048,
151643]`` (``Hi``, ``<|endoftext|>``), ``labels`` identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..messages import PROMPT
from .common import DROP, INVALID, TRUNCATED, Batch, Context

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

COLUMNS: dict[str, Any] = {"input_ids": [], "attention_mask": [], "labels": []}
# Preferred document separators, before eos: an instruct tokenizer's eos is often the end-of-turn token.
DOC_END_TOKENS = ("<|end_of_text|>", "<|endoftext|>")


def doc_end_id(tokenizer: Tokenizer) -> int:
    """The id closing a pretraining document: ``<|end_of_text|>``/``<|endoftext|>`` when the vocab has it, else eos."""
    vocab = tokenizer.get_vocab()
    for token in DOC_END_TOKENS:
        if token in vocab:
            return vocab[token]
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token to close pretraining documents; set one (eos_token)")
    return tokenizer.eos_token_id


def auto_bos_id(tokenizer: Tokenizer) -> int | None:
    """The bos id when the tokenizer puts one in front of plain text by itself (Llama), else ``None`` (Qwen)."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None and tokenizer("x")["input_ids"][:1] == [bos] else None


def process_batch(batch: Batch, ctx: Context) -> Batch:
    """Batched ``datasets.map`` function for pt; the text is the content of each example's first prompt message."""
    texts = [prompt[0]["content"] if prompt else "" for prompt in batch[PROMPT]]
    encoded = ctx.tokenizer(texts, add_special_tokens=False)["input_ids"]
    head = [ctx.bos_id] if ctx.bos_id is not None else []
    out: Batch = {"input_ids": [], "attention_mask": [], "labels": [], DROP: [], TRUNCATED: []}
    for text, ids in zip(texts, encoded, strict=True):
        doc = head + ids + [ctx.doc_end_id] if text else []
        cut = not ctx.packing and len(doc) > ctx.cutoff_len
        doc = doc[: ctx.cutoff_len] if cut else doc
        out["input_ids"].append(doc)
        out["attention_mask"].append([1] * len(doc))
        out["labels"].append(list(doc))
        out[DROP].append("" if text else INVALID)
        out[TRUNCATED].append(cut)
    return out
