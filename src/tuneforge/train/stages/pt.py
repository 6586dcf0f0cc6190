"""Stage pt: (continued) pre-training on plain text; packed by default, EOS between documents is learned."""

from __future__ import annotations

from typing import Any

from ...config.schema import Config
from ..core.workflow import attn_implementation, prepare, train_and_evaluate


def run(cfg: Config) -> dict[str, Any]:
    from ...data.collator import build_collator
    from ...model.varlen import flattens_batches
    from ..core.trainer import build_trainer

    p = prepare(cfg)
    collator = build_collator(cfg, p.tokenizer, attn_implementation=attn_implementation(p.model),
                              padding_free=flattens_batches(cfg))
    trainer = build_trainer(cfg, p.model, p.tokenizer, p.data.train, p.data.eval, collator)
    return train_and_evaluate(cfg, trainer, p)
