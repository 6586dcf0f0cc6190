"""Padding-free training: the varlen attention and the flattened batches compute what padded batches compute."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch
import torch.nn.functional as F

from tuneforge.data.collator import PaddingCollator, PaddingFreeCollator, build_collator
from tuneforge.data.messages import IGNORE_INDEX as X
from tuneforge.losses.ce import causal_lm_loss
from tuneforge.model.varlen import VARLEN, flattens_batches, register, varlen_attention_forward
from tuneforge.testing import build_tiny_model


def _rows(lengths=(7, 3, 11, 5), vocab=1000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(5, vocab, (n,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [X, X, *ids[2:]]})
    return out


def test_padding_free_collator_exact():
    rows = [{"input_ids": [5, 6, 7], "labels": [X, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    batch = PaddingFreeCollator(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[X, 6, 7, X, 9]]  # the second row's first label is never predicted
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["cu_seq_lens_q"].dtype == torch.int32 and batch["cu_seq_lens_q"].tolist() == [0, 3, 5]
    assert batch["max_length_q"] == batch["max_length_k"] == 3
    assert "attention_mask" not in batch


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (4, 2)])
def test_per_sequence_attention_equals_padded_sdpa(heads, kv_heads):
    torch.manual_seed(0)
    lens, dim = [5, 1, 8], 16
    q = torch.randn(1, heads, sum(lens), dim)
    k, v = torch.randn(2, 1, kv_heads, sum(lens), dim).unbind(0)
    cu = torch.tensor([0, 5, 6, 14], dtype=torch.int32)
    module = NS(is_causal=True, training=False, num_key_value_groups=heads // kv_heads)
    out, _ = varlen_attention_forward(module, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu, max_length_q=8)
    assert out.shape == (1, sum(lens), heads, dim)
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
        kk, vv = (t[:, :, start:end].repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
        ref = F.scaled_dot_product_attention(q[:, :, start:end], kk, vv, is_causal=True)
        torch.testing.assert_close(out[0, start:end], ref[0].transpose(0, 1), rtol=1e-5, atol=1e-6)


def _loss_and_grads(model, batch, n_items):
    model.zero_grad()
    loss, _ = causal_lm_loss(model, batch, num_items_in_batch=n_items)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_padding_free_loss_and_grads_equal_padded(arch):
    """The whole fast path on the tiny model: varlen attention + flattened batch == padded sdpa batch."""
    rows = _rows()
    n_items = sum(sum(1 for t in r["labels"][1:] if t != X) for r in rows)
    padded = build_tiny_model(arch, attn="sdpa").train()
    flat = build_tiny_model(arch, attn=register()).train()
    assert flat.config._attn_implementation == VARLEN
    ref_loss, ref_grads = _loss_and_grads(padded, PaddingCollator(pad_token_id=0)(rows), n_items)
    loss, grads = _loss_and_grads(flat, PaddingFreeCollator(pad_token_id=0)(rows), n_items)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_varlen_model_still_runs_padded_batches():
    """Without cu_seq_lens (padded eval, generation) the varlen model is plain SDPA with the padding mask."""
    rows = _rows()
    batch = PaddingCollator(pad_token_id=0)(rows)
    ref = build_tiny_model("llama", attn="sdpa")
    model = build_tiny_model("llama", attn=register())
    with torch.no_grad():
        expected = ref(**batch).logits
        got = model(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], expected[mask])


def _cfg(stage="sft", packing=False, neat=False, padding_free=None, flash_attn="auto", remote=False):
    return NS(finetuning=NS(stage=stage), model=NS(flash_attn=flash_attn, trust_remote_code=remote),
              data=NS(packing=packing, neat_packing=neat, padding_free=padding_free))


def test_flattens_batches_rules():
    assert flattens_batches(_cfg(neat=True, packing=True))
    assert not flattens_batches(_cfg(packing=True))  # plain packing: examples attend across
    assert not flattens_batches(_cfg(stage="dpo", padding_free=True))
    assert not flattens_batches(_cfg(padding_free=True, flash_attn="disabled"))
    assert flattens_batches(_cfg(padding_free=True)) and not flattens_batches(_cfg(padding_free=False))
    assert flattens_batches(_cfg(flash_attn="fa2"))
    assert not flattens_batches(_cfg(flash_attn="fa2", remote=True))  # remote code: only when asked for
    assert flattens_batches(_cfg(padding_free=True, remote=True))
    assert flattens_batches(_cfg()) == torch.cuda.is_available()  # auto: only where the fused kernel runs


def test_build_collator_padding_free():
    tok = NS(pad_token_id=0, eos_token_id=2)
    assert isinstance(build_collator(_cfg(), tok, padding_free=True, attn_implementation=VARLEN), PaddingFreeCollator)
    # sdpa (a model varlen cannot serve) would need a dense mask for a stream: padded batches instead
    assert isinstance(build_collator(_cfg(), tok, padding_free=True, attn_implementation="sdpa"), PaddingCollator)
    neat = build_collator(_cfg(packing=True, neat=True), tok, attn_implementation=VARLEN)
    assert neat.flatten and neat.flash_kwargs


def test_varlen_attention_under_autocast_casts_like_sdpa():
    """Full fine-tuning keeps fp32 weights: RoPE then hands fp32 q/k to attention, which must cast as SDPA does."""
    torch.manual_seed(1)
    q = torch.randn(1, 4, 9, 16)
    k, v = torch.randn(2, 1, 4, 9, 16).unbind(0)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    module = NS(is_causal=True, training=False, num_key_value_groups=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = varlen_attention_forward(module, q, k, v, None, cu_seq_lens_q=cu, max_length_q=5)
        ref = F.scaled_dot_product_attention(q[:, :, :4], k[:, :, :4], v[:, :, :4], is_causal=True)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out[0, :4], ref[0].transpose(0, 1))


def test_varlen_only_for_plain_causal_attention():
    from transformers import Gemma2Config, MistralConfig, Qwen2Config

    from tuneforge.model.varlen import training_attn_implementation, varlen_supported

    assert varlen_supported(Qwen2Config(), 32768)  # use_sliding_window is off: every layer is full attention
    assert not varlen_supported(Qwen2Config(use_sliding_window=True, sliding_window=1024, max_window_layers=0), 4096)
    assert not varlen_supported(MistralConfig(sliding_window=4096), 8192)
    assert varlen_supported(MistralConfig(sliding_window=4096), 2048)  # the window never binds
    assert not varlen_supported(Gemma2Config(), 1024)  # soft-capped attention logits
    cfg = NS(finetuning=NS(stage="sft"), model=NS(flash_attn="auto", trust_remote_code=False),
             data=NS(packing=True, neat_packing=True, padding_free=None, cutoff_len=8192))
    assert training_attn_implementation(cfg, "sdpa", Qwen2Config()) == VARLEN
    assert training_attn_implementation(cfg, "sdpa", MistralConfig(sliding_window=4096)) == "sdpa"
