"""Chunked cross-entropy and the causal-LM loss: equal to the full-logits reference, and lean on memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge.losses import causal_lm_loss, chunked_cross_entropy, shift_labels
from tuneforge.testing import build_tiny_model

V, H = 97, 16


def _problem(n=40, masked=(), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, H, generator=gen, dtype=dtype).requires_grad_()
    weight = torch.randn(V, H, generator=gen, dtype=dtype).requires_grad_()
    labels = torch.randint(0, V, (n,), generator=gen)
    labels[list(masked)] = -100
    return hidden, weight, labels


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 1024])
def test_chunked_ce_equals_full_logits_sum_and_mean(chunk_size):
    hidden, weight, labels = _problem(masked=range(0, 40, 3))
    total, count = chunked_cross_entropy(hidden, weight, labels, chunk_size=chunk_size)
    ref_sum = F.cross_entropy(hidden @ weight.T, labels, reduction="sum")
    ref_mean = F.cross_entropy(hidden @ weight.T, labels)
    assert count.item() == int((labels != -100).sum())
    torch.testing.assert_close(total, ref_sum, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(total / count, ref_mean, rtol=1e-6, atol=1e-6)
    for ours, ref in zip(_grads(total, hidden, weight), _grads(ref_sum, hidden, weight), strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_chunked_ce_float64_is_exact_and_bias_is_used():
    hidden, weight, labels = _problem(masked=[0, 5], dtype=torch.float64)
    bias = torch.randn(V, dtype=torch.float64, requires_grad=True)
    total, _ = chunked_cross_entropy(hidden, weight, labels, bias=bias, chunk_size=6, logit_fp32=False)
    ref = F.cross_entropy(F.linear(hidden, weight, bias), labels, reduction="sum")
    torch.testing.assert_close(total.double(), ref, rtol=1e-6, atol=1e-6)
    for ours, theirs in zip(_grads(total, hidden, weight, bias), _grads(ref, hidden, weight, bias), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_chunks_without_trained_tokens_are_skipped_and_empty_batch_gives_zero():
    # With chunk_size=8 the first two chunks of the original layout (tokens 0-15) hold no trained token.
    hidden, weight, labels = _problem(masked=range(16))
    total, count = chunked_cross_entropy(hidden, weight, labels, chunk_size=8)
    ref = F.cross_entropy(hidden @ weight.T, labels, reduction="sum")
    torch.testing.assert_close(total, ref, rtol=1e-6, atol=1e-6)
    assert count.item() == 24

    hidden, weight, labels = _problem(masked=range(40))
    total, count = chunked_cross_entropy(hidden, weight, labels, chunk_size=8)
    assert total.item() == 0.0 and count.item() == 0
    g_hidden, g_weight = _grads(total, hidden, weight)  # still attached: DDP sees every parameter used
    assert not g_hidden.any() and not g_weight.any()


def test_full_vocab_logits_are_never_kept_for_backward():
    """No vocabulary-wide tensor (a chunk's logits or softmax) is kept for backward: each chunk is recomputed.

    Outside the checkpointed chunks autograd saves only the hidden states (already alive) and the index vectors.
    """
    hidden, weight, labels = _problem(n=64)
    saved = []

    def pack(tensor):
        saved.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        total, _ = chunked_cross_entropy(hidden, weight, labels, chunk_size=8)
    assert saved and all(V not in shape for shape in saved), saved
    total.backward()  # and the recomputation still produces gradients
    assert hidden.grad.abs().sum() > 0 and weight.grad.abs().sum() > 0


def test_bf16_chunks_are_upcast_like_hf():
    hidden, weight, labels = _problem(dtype=torch.bfloat16)
    total, _ = chunked_cross_entropy(hidden, weight, labels, chunk_size=5)
    ref = F.cross_entropy((hidden @ weight.T).float(), labels, reduction="sum")
    assert total.dtype == torch.float32
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-4)


def test_chunk_size_must_be_positive():
    hidden, weight, labels = _problem()
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_cross_entropy(hidden, weight, labels, chunk_size=0)


def test_shift_labels_docstring_example():
    labels = torch.tensor([[-100, -100, 7, 8, 2]])
    assert shift_labels(labels).tolist() == [[-100, 7, 8, 2, -100]]


# ---- causal_lm_loss on the tiny models ----------------------------------------------------------------------


def _batch(lengths, prompt=2, seed=0, vocab=1024):
    """Right-padded rows of the given lengths; the first ``prompt`` tokens of each row are untrained."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=gen)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :prompt] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.fixture(scope="module")
def llama():
    return build_tiny_model("llama", seed=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_causal_lm_loss_equals_hf_labels_loss(arch, llama):
    model = llama if arch == "llama" else build_tiny_model(arch, seed=0)
    batch = _batch([9, 5, 12])
    ref = model(**batch).loss
    loss, stats = causal_lm_loss(model, batch, num_items_in_batch=None, chunk_size=4)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    n = int((shift_labels(batch["labels"]) != -100).sum())
    assert stats["num_tokens"].item() == n
    torch.testing.assert_close(stats["loss_sum"] / n, ref.detach(), rtol=1e-5, atol=1e-5)
    ref_sum = model(**batch, num_items_in_batch=torch.tensor(50)).loss
    loss_sum, _ = causal_lm_loss(model, batch, num_items_in_batch=torch.tensor(50))
    torch.testing.assert_close(loss_sum, ref_sum, rtol=1e-5, atol=1e-5)


def test_causal_lm_loss_passes_position_ids_and_prefers_shift_labels(llama):
    batch = _batch([10])
    batch["position_ids"] = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4, 5]])  # two packed sequences
    ref = llama(**batch).loss
    loss, _ = causal_lm_loss(llama, batch, num_items_in_batch=None)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    shifted = {**batch, "shift_labels": shift_labels(batch["labels"]), "labels": None}
    loss2, _ = causal_lm_loss(llama, shifted, num_items_in_batch=None)
    torch.testing.assert_close(loss2, loss)


def test_causal_lm_loss_on_lora_model_matches_peft_forward():
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False)
    model = get_peft_model(build_tiny_model("llama", seed=0), config)
    batch = _batch([7, 11])
    ref = model(**batch).loss
    loss, _ = causal_lm_loss(model, batch, num_items_in_batch=None, chunk_size=3)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    for ours, theirs in zip(torch.autograd.grad(loss, params), torch.autograd.grad(ref, params), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_accumulation_invariance_8x1_equals_1x8(llama):
    """Σ over 8 micro-batches of (sum_i / N_total) equals the token mean of one batch of 8 ragged rows."""
    lengths = [3, 12, 7, 9, 4, 12, 6, 10]
    full = _batch(lengths, seed=1)
    mean_loss, stats = causal_lm_loss(llama, full, num_items_in_batch=None)
    total_items = stats["num_tokens"]
    micro = []
    for i, n in enumerate(lengths):
        row = {key: value[i : i + 1, :n] for key, value in full.items()}
        micro.append(causal_lm_loss(llama, row, num_items_in_batch=total_items)[0])
    torch.testing.assert_close(torch.stack(micro).sum(), mean_loss, rtol=1e-6, atol=1e-6)


def test_liger_request_on_cpu_uses_the_chunked_path(llama):
    batch = _batch([6, 8])
    plain, _ = causal_lm_loss(llama, batch, num_items_in_batch=None)
    liger, _ = causal_lm_loss(llama, batch, num_items_in_batch=None, use_liger=True)
    torch.testing.assert_close(liger, plain)


def _tiny_from_config(model_type, **extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    sizes.update(pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = AutoConfig.for_model(model_type, num_key_value_heads=1, head_dim=8, **sizes, **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


@pytest.mark.parametrize(
    ("model_type", "extra"),
    [
        ("gemma2", {"final_logit_softcapping": 0.5}),
        ("granite", {"logits_scaling": 4.0}),
        ("cohere", {"logit_scale": 3.0}),
        ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 2, "output_router_logits": True}),
    ],
)
def test_logit_transforms_and_moe_aux_loss_match_hf(model_type, extra):
    model = _tiny_from_config(model_type, **extra)
    batch = _batch([6, 9], vocab=64)
    ref = model(**batch).loss
    loss, stats = causal_lm_loss(model, batch, num_items_in_batch=None, chunk_size=4)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    assert ("aux_loss" in stats) == (model_type == "mixtral")
