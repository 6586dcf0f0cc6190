"""Load the tokenizer of the base model, with the tokens the config adds."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

from ..config.paths import tokenizer_problem
from .errors import ModelLoadError
from .hub import explain_hub_errors, hub_kwargs, model_source

logger = logging.getLogger(__name__)

# Tokens added by ``load_tokenizer`` per tokenizer object. ``load_model`` reads it to decide whether the vocabulary
# was extended (LLaMA-Factory turns resize_vocab on then) without mutating the config or the tokenizer.
_ADDED_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_tokenizer(cfg):
    """The base model's tokenizer, ready for training.

    Contract: ``padding_side == "right"``; ``split_special_tokens`` as configured; ``add_tokens`` added as normal
    tokens and ``add_special_tokens`` as special ones (tokens already in the vocabulary are not added twice); the pad
    token is the eos token when the tokenizer has none; ``model_max_length`` is at least ``cutoff_len`` (so long rows
    raise no warning). ``use_fast_tokenizer`` is accepted but transformers 5 always loads the fast tokenizer.
    Raises :class:`ModelLoadError` when the tokenizer cannot be found.
    """
    from transformers import AutoTokenizer

    source = model_source(cfg)
    if Path(source).is_dir() and (problem := tokenizer_problem(Path(source))):
        raise ModelLoadError(f"model_name_or_path {source} {problem}; copy the tokenizer files of the base model "
                             "into it")
    with explain_hub_errors("tokenizer of", cfg.model.model_name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(
            source, padding_side="right", split_special_tokens=cfg.model.split_special_tokens, **hub_kwargs(cfg)
        )
    _ADDED_TOKENS[tokenizer] = _add_tokens(tokenizer, cfg)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("the tokenizer has no pad token: using the eos token %r", tokenizer.eos_token)
    if (tokenizer.model_max_length or 0) < cfg.data.cutoff_len:
        tokenizer.model_max_length = cfg.data.cutoff_len
    return tokenizer


def _add_tokens(tokenizer, cfg) -> int:
    added = 0
    if cfg.model.add_tokens:
        added += tokenizer.add_tokens(list(cfg.model.add_tokens), special_tokens=False)
    if cfg.model.add_special_tokens:
        added += tokenizer.add_special_tokens(
            {"extra_special_tokens": list(cfg.model.add_special_tokens)}, replace_extra_special_tokens=False
        )
    if added:
        logger.info("added %d token(s) to the tokenizer: the embeddings will be resized", added)
    return added


def num_added_tokens(tokenizer) -> int:
    """How many tokens ``load_tokenizer`` added to this tokenizer (0 for a tokenizer loaded another way)."""
    try:
        return _ADDED_TOKENS.get(tokenizer, 0)
    except TypeError:  # an unhashable or non-weakref-able tokenizer class
        return 0
