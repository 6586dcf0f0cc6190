"""GPU check of tuneforge's fast paths: same loss and gradients as the plain path, and what each one saves.

On one batch of variable-length rows (a random-weight model from a real config, LoRA r16 on every linear layer,
activation checkpointing, bf16 weights, fp32 adapters, bf16 autocast as in the trainer), it computes
``causal_lm_loss`` and the LoRA gradients for:

* ``padded``: right-padded batch, transformers' SDPA, chunked cross-entropy, PEFT casting each adapter's input to
  its fp32 weights (the reference);
* ``padded+nocast``: the same without that cast (autocast casts back to bf16 anyway), as tuneforge trains;
* ``varlen``: the same rows as one unpadded stream through ``tuneforge_varlen`` (torch's flash varlen kernel);
* ``varlen+flce``: plus Liger's fused linear cross-entropy on the trained rows;
* ``varlen+liger``: plus Liger's RMSNorm/RoPE/SwiGLU kernels on the model;
* ``varlen+compile``: each decoder layer ``torch.compile``d (no Liger).

For each it prints the loss, the relative difference of the loss and of the gradient (‖g − g_ref‖ / ‖g_ref‖), the
median fwd+bwd time of 5 steps after 3 warm-up steps (no optimizer, no Trainer) and the peak allocated memory.
bf16 numerics make differences of about 1e-3..1e-2 in the gradient normal; the loss should agree to ~1e-3.

    python bench/fastpath_check.py --qwen-dir .gpu/qwen --tokens 16384 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CAST_OFF = [False]  # PEFT's input cast to the fp32 adapter weights: on for the reference, off for tuneforge's paths
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}  # --tiny: a CPU smoke run of this script


def build_model(qwen_dir: str, tiny: bool = False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(qwen_dir, **(TINY if tiny else {}))
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # a fresh adapter has B = 0; give it weight so that every gradient is non-trivial
            torch.nn.init.normal_(param, std=0.02)
        if param.requires_grad:
            param.data = param.data.float()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model.train()


def rows(total_tokens: int, vocab: int, cutoff: int = 1024, seed: int = 0) -> list[dict]:
    """Log-normal lengths (median ~300) until ``total_tokens``; the first ~30% of each row is prompt (-100)."""
    gen = torch.Generator().manual_seed(seed)
    out, used = [], 0
    while used < total_tokens:
        n = int(min(cutoff, max(16, torch.empty(1).log_normal_(5.7, 0.8, generator=gen).item())))
        n = min(n, total_tokens - used) if total_tokens - used >= 16 else n
        ids = torch.randint(100, vocab - 100, (n,), generator=gen).tolist()
        cut = max(1, int(0.3 * n))
        out.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
        used += n
    return out


def to_device(batch: dict) -> dict:
    return {k: v.to(DEVICE, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def peak_gib() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else 0.0


def forward_backward(model, batch: dict, n_items: int, use_liger: bool):
    """One fwd+bwd as the trainer runs it: bf16 autocast; PEFT's fp32 input cast off except for ``padded``."""
    from peft.helpers import disable_input_dtype_casting

    from tuneforge.losses.ce import causal_lm_loss

    model.zero_grad(set_to_none=True)
    with disable_input_dtype_casting(model, active=CAST_OFF[0]):  # backward too: checkpoints recompute inside it
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss, _ = causal_lm_loss(model, batch, num_items_in_batch=n_items, use_liger=use_liger)
        loss.backward()
    return loss


def step(model, batch: dict, n_items: int, use_liger: bool) -> tuple[float, dict]:
    loss = forward_backward(model, batch, n_items, use_liger)
    return loss.item(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def timed(model, batch: dict, n_items: int, use_liger: bool) -> float:
    times = []
    for i in range(8):
        sync()
        start = time.perf_counter()
        forward_backward(model, batch, n_items, use_liger)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(name: str, model, batch: dict, n_items: int, use_liger: bool, ref: tuple | None, tokens: int) -> dict:
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss, grads = step(model, batch, n_items, use_liger)
    seconds = timed(model, batch, n_items, use_liger)
    row = {"variant": name, "loss": round(loss, 5), "ms": round(seconds * 1e3, 1),
           "tok_s": round(tokens / seconds), "peak_gib": peak_gib()}
    if ref is not None:
        ref_loss, ref_grads = ref
        num = sum((grads[k] - ref_grads[k]).pow(2).sum() for k in ref_grads).sqrt()
        den = sum(g.pow(2).sum() for g in ref_grads.values()).sqrt()
        row.update(loss_rel=f"{abs(loss - ref_loss) / abs(ref_loss):.1e}", grad_rel=f"{(num / den).item():.1e}")
    print(json.dumps(row), flush=True)
    return row | {"_ref": (loss, grads)}


def profile(name: str, model, batch: dict, n_items: int, use_liger: bool, steps: int = 2) -> None:
    """Print where two fwd+bwd steps spend GPU time: busy time vs wall, and the top kernels (CUDA only)."""
    if DEVICE != "cuda":
        return
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    try:
        _profile(name, model, batch, n_items, use_liger, steps, torch_profile, ProfilerActivity)
    except Exception as err:  # a profiler problem must not lose the comparison rows
        print(f"profile {name} failed: {type(err).__name__}: {err}", flush=True)


def _profile(name, model, batch, n_items, use_liger, steps, torch_profile, ProfilerActivity) -> None:
    sync()
    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step(model, batch, n_items, use_liger)
        sync()
    wall = (time.perf_counter() - start) / steps
    events = prof.key_averages()
    busy = sum(e.self_device_time_total for e in events) / steps / 1e6
    kernels = sum(e.count for e in events if e.self_device_time_total > 0) / steps
    print(f"profile {name}: wall {wall * 1e3:.0f} ms/step (profiled), GPU busy {busy * 1e3:.0f} ms/step "
          f"({busy / wall:.0%}), {kernels:.0f} device ops/step", flush=True)
    print(events.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60), flush=True)


def run(args) -> list[dict]:
    from tuneforge.data.collator import PaddingCollator, PaddingFreeCollator
    from tuneforge.model.compile import decoder_layers
    from tuneforge.model.varlen import register

    model = build_model(args.qwen_dir, args.tiny)
    data = rows(args.tokens, model.config.vocab_size)
    tokens = sum(len(r["input_ids"]) for r in data)
    n_items = sum(sum(1 for t in r["labels"][1:] if t != -100) for r in data)
    padded = to_device(PaddingCollator(pad_token_id=0)(data))
    flat = to_device(PaddingFreeCollator(pad_token_id=0)(data))
    print(f"{len(data)} rows, {tokens} real tokens, padded to {padded['input_ids'].numel()}", flush=True)
    out = [compare("padded", model, padded, n_items, False, None, tokens)]
    ref = out[0]["_ref"]
    CAST_OFF[0] = True  # from here on as tuneforge's trainer runs (see TuneforgeTrainer._adapters_in_compute_dtype)
    out.append(compare("padded+nocast", model, padded, n_items, False, ref, tokens))
    model.set_attn_implementation(register())
    out.append(compare("varlen", model, flat, n_items, False, ref, tokens))
    profile("varlen", model, flat, n_items, False)
    if args.tiny:  # CPU: no Triton, so neither Liger nor inductor
        return out
    out.append(compare("varlen+flce", model, flat, n_items, True, ref, tokens))
    for layer in decoder_layers(model):
        layer.compile()
    out.append(compare("varlen+compile", model, flat, n_items, False, ref, tokens))
    out.append(compare("varlen+compile+flce", model, flat, n_items, True, ref, tokens))
    profile("varlen+compile+flce", model, flat, n_items, True)
    del model
    torch.cuda.empty_cache()
    from liger_kernel.transformers import apply_liger_kernel_to_qwen2

    apply_liger_kernel_to_qwen2(fused_linear_cross_entropy=False)  # before the model is built: classes patched
    model = build_model(args.qwen_dir)
    model.set_attn_implementation(register())
    out.append(compare("varlen+liger", model, flat, n_items, True, ref, tokens))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--qwen-dir", required=True)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--out", default="/tmp/fastpath_out")
    parser.add_argument("--tiny", action="store_true", help="2-layer model on the CPU (smoke run)")
    args = parser.parse_args()
    rows_out = []
    try:
        rows_out = run(args)
    finally:
        clean = [{k: v for k, v in r.items() if k != "_ref"} for r in rows_out]
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fastpath.json").write_text(json.dumps(clean, indent=2))
        print("\n| variant | loss | loss rel. diff | grad rel. diff | fwd+bwd ms | tok/s | peak alloc GiB |")
        print("|---|---|---|---|---|---|---|")
        for r in clean:
            print(f"| {r['variant']} | {r['loss']} | {r.get('loss_rel', '-')} | {r.get('grad_rel', '-')} | "
                  f"{r['ms']} | {r['tok_s']} | {r['peak_gib']} |")


if __name__ == "__main__":
    main()
