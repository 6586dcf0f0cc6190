"""Collators: exact tensors, and packed == unpacked on a tiny model with no leakage between packed examples."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from tuneforge.data.collator import (
    KTOCollator,
    PackedCollator,
    PaddingCollator,
    PairwiseCollator,
    block_causal_mask,
    build_collator,
    pad_rows,
)
from tuneforge.data.messages import IGNORE_INDEX as X
from tuneforge.data.packing import pack_examples

VOCAB = 64


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()


def _examples() -> list[dict]:
    """Four examples of lengths 7, 5, 9, 3 with a masked prompt of 2 ids each."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for n in (7, 5, 9, 3):
        ids = torch.randint(1, VOCAB, (n,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [X, X, *ids[2:]]})
    return out


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token loss of one sequence (labels shifted by one, -100 ignored)."""
    return torch.nn.functional.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=X, reduction="sum")


def _unpacked_losses(model, examples) -> list[torch.Tensor]:
    with torch.no_grad():
        return [_token_losses(model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits[0],
                              torch.tensor(e["labels"])) for e in examples]


def _segment_losses(logits: torch.Tensor, labels: torch.Tensor, seq_lens: list[int]) -> list[torch.Tensor]:
    out, start = [], 0
    for n in seq_lens:
        out.append(_token_losses(logits[start : start + n], labels[start : start + n]))
        start += n
    return out


def test_pad_rows_left_and_multiple():
    assert pad_rows([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad_rows([[1, 2, 3], [4]], 0, side="left").tolist() == [[1, 2, 3], [0, 0, 4]]
    assert pad_rows([[1, 2, 3]], 9, multiple=4).tolist() == [[1, 2, 3, 9]]


def test_padding_collator_exact():
    batch = PaddingCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [X, 6, 7]},
                                            {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[X, 6, 7], [8, X, X]]
    left = PaddingCollator(pad_token_id=0, padding_side="left", pad_to_multiple_of=4)([{"input_ids": [5, 6]}])
    assert left["input_ids"].tolist() == [[0, 0, 5, 6]] and left["attention_mask"].tolist() == [[0, 0, 1, 1]]


def test_pairwise_collator_chosen_then_rejected():
    rows = [{"chosen_input_ids": [5, 6], "chosen_labels": [X, 6], "rejected_input_ids": [5, 7, 8],
             "rejected_labels": [X, 7, 8]},
            {"chosen_input_ids": [9], "chosen_labels": [9], "rejected_input_ids": [9, 10], "rejected_labels": [X, 10]}]
    batch = PairwiseCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 0], [9, 0, 0], [5, 7, 8], [9, 10, 0]]
    assert batch["labels"].tolist() == [[X, 6, X], [9, X, X], [X, 7, 8], [X, 10, X]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]


def test_kto_collator_target_kl_and_tags():
    rows = [{"input_ids": [5, 6], "labels": [X, 6], "kl_input_ids": [5, 9, 9], "kl_labels": [X, 9, 9],
             "kto_tags": True},
            {"input_ids": [7], "labels": [7], "kl_input_ids": [7, 6], "kl_labels": [X, 6], "kto_tags": False}]
    batch = KTOCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6], [7, 0]]
    assert batch["kl_input_ids"].tolist() == [[5, 9, 9], [7, 6, 0]]
    assert batch["kl_labels"].tolist() == [[X, 9, 9], [X, 6, X]]
    assert batch["kl_attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["kto_tags"].tolist() == [True, False]


def test_block_causal_mask_exact_matrix():
    m = torch.finfo(torch.float32).min
    mask = block_causal_mask([[2, 1]], 4)
    assert mask.shape == (1, 1, 4, 4)
    assert mask[0, 0].tolist() == [[0, m, m, m], [0, 0, m, m], [m, m, 0, m], [m, m, m, 0]]


def test_packed_collator_flatten_and_flash_kwargs():
    rows = [{"input_ids": [5, 6, 7], "labels": [X, 6, 7], "position_ids": [0, 1, 0], "seq_lens": [2, 1]},
            {"input_ids": [8, 9], "labels": [X, 9], "position_ids": [0, 1], "seq_lens": [2]}]
    batch = PackedCollator(pad_token_id=0, flash_kwargs=True)(rows)
    assert "attention_mask" not in batch  # transformers derives the block mask from position_ids
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[X, 6, 7, X, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0, 1]]
    assert batch["cu_seq_lens_q"].dtype == torch.int32 and batch["cu_seq_lens_q"].tolist() == [0, 2, 3, 5]
    assert batch["cu_seq_lens_k"].tolist() == [0, 2, 3, 5] and batch["max_length_q"] == batch["max_length_k"] == 2
    padded = PackedCollator(pad_token_id=0, flatten=False)(rows)
    assert padded["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert padded["position_ids"].tolist() == [[0, 1, 0], [0, 1, 0]]  # the pad starts its own sequence
    with pytest.raises(ValueError, match="flatten=True"):
        PackedCollator(pad_token_id=0, flatten=False, flash_kwargs=True)


@pytest.mark.parametrize(("flatten", "mask"), [(True, "position_ids"), (False, "position_ids"), (False, "4d")])
def test_packed_loss_equals_unpacked(tiny_model, flatten, mask):
    examples = _examples()
    expected = _unpacked_losses(tiny_model, examples)
    packed = pack_examples(Dataset.from_list(examples), cutoff_len=12)
    rows = packed.to_list()
    assert [sorted(r["seq_lens"]) for r in rows] == [[3, 9], [5, 7]]
    batch = PackedCollator(pad_token_id=0, flatten=flatten, mask=mask)(rows)
    with torch.no_grad():
        logits = tiny_model(**batch, use_cache=False).logits
    got = []
    for row in range(logits.shape[0]):
        lens = [n for r in (rows if flatten else [rows[row]]) for n in r["seq_lens"]]
        got += _segment_losses(logits[row], batch["labels"][row], lens)
    order = [i for b in packed["seq_lens"] for i in b]  # losses come out in packed order; match by length
    by_len = {len(e["input_ids"]): loss for e, loss in zip(examples, expected, strict=True)}
    for n, loss in zip(order, got, strict=True):
        assert abs(loss.item() - by_len[n].item()) < 1e-5


def test_plain_packing_lets_examples_attend(tiny_model):
    """neat_packing=False (LLaMA-Factory's plain packing) shares attention: the losses differ (the test can fail)."""
    examples = _examples()
    rows = pack_examples(Dataset.from_list(examples), cutoff_len=12).to_list()
    batch = PackedCollator(pad_token_id=0, neat_packing=False, flatten=False)(rows)
    assert batch["attention_mask"].tolist()[0] == [1] * 12
    with torch.no_grad():
        logits = tiny_model(**batch, use_cache=False).logits
    second = _segment_losses(logits[0], batch["labels"][0], rows[0]["seq_lens"])[1]
    alone = _unpacked_losses(tiny_model, [e for e in examples if len(e["input_ids"]) == rows[0]["seq_lens"][1]])[0]
    assert abs(second.item() - alone.item()) > 1e-3


@pytest.mark.parametrize("mask", ["position_ids", "4d"])
def test_neat_packing_no_leakage(tiny_model, mask):
    a = {"input_ids": [3, 4, 5, 6, 7], "labels": [X, 4, 5, 6, 7]}
    b = {"input_ids": [8, 9, 10, 11], "labels": [X, 9, 10, 11]}
    collate = PackedCollator(pad_token_id=0, mask=mask)
    logits = []
    for first in (a, {"input_ids": [30, 31, 32, 33, 34], "labels": [X, 31, 32, 33, 34]}):
        rows = pack_examples(Dataset.from_list([first, b]), cutoff_len=9).to_list()
        assert rows[0]["seq_lens"] == [5, 4] and rows[0]["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2, 3]
        with torch.no_grad():
            logits.append(tiny_model(**collate(rows), use_cache=False).logits[0])
    assert not torch.equal(logits[0][:5], logits[1][:5])
    assert torch.equal(logits[0][5:], logits[1][5:])  # B's logits unchanged, bit for bit


def test_build_collator_by_stage_and_layout():
    from types import SimpleNamespace as NS

    tok = NS(pad_token_id=None, eos_token_id=2)

    def build(stage, packing=False, neat=False, **kw):
        cfg = NS(finetuning=NS(stage=stage), data=NS(packing=packing, neat_packing=neat))
        return build_collator(cfg, tok, **kw)

    assert isinstance(build("dpo"), PairwiseCollator) and build("rm").pad_token_id == 2
    assert isinstance(build("kto"), KTOCollator)
    assert build("ppo").padding_side == "left" and build("sft", for_generation=True).padding_side == "left"
    assert isinstance(build("sft"), PaddingCollator) and build("sft").padding_side == "right"
    neat = build("sft", packing=True, neat=True, attn_implementation="flash_attention_2")
    assert isinstance(neat, PackedCollator) and neat.flatten and neat.flash_kwargs
    plain = build("pt", packing=True)
    assert not plain.neat_packing and not plain.flatten and not plain.flash_kwargs
