"""Model group: what to load and how (LLaMA-Factory's ModelArguments keys and defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..fields import opt


@dataclass
class ModelArgs:
    """Where the model comes from, its dtype, attention kernel, quantization and export."""

    model_name_or_path: str | None = opt(None, "Local folder or hub id of the base model (required).")
    adapter_name_or_path: list[str] | None = opt(
        None, "Comma list of LoRA adapters: all but the last are merged, the last is trained on.", listy=True
    )
    adapter_folder: str | None = opt(None, "Sub-folder of the adapter repository that holds the adapter.")
    cache_dir: str | None = opt(None, "Where downloaded models are cached.")
    use_fast_tokenizer: bool = opt(True, "Use the fast (tokenizers) tokenizer.")
    resize_vocab: bool = opt(False, "Resize the embeddings to the tokenizer size (padded to a multiple of 64).")
    split_special_tokens: bool = opt(False, "Let the tokenizer split special tokens as plain text.")
    add_tokens: list[str] | None = opt(None, "Comma list of normal tokens to add to the tokenizer.", listy=True)
    add_special_tokens: list[str] | None = opt(
        None, "Comma list of special tokens to add to the tokenizer.", listy=True
    )
    model_revision: str = opt("main", "Branch, tag or commit of the model on the hub.")
    low_cpu_mem_usage: bool = opt(True, "Load weights lazily to save host memory.")
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = opt(
        None, "RoPE scaling used to extend the context beyond the model's length."
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2", "fa3"] = opt(
        "auto", "Attention kernel: auto (transformers' default), disabled (eager), sdpa, fa2, fa3."
    )
    shift_attn: bool = opt(False, "LongLoRA shift short attention (S^2-Attn).")
    use_unsloth: bool = opt(False, "Use Unsloth's optimised LoRA path (needs the unsloth package).")
    use_unsloth_gc: bool = opt(False, "Use Unsloth-style gradient checkpointing that offloads activations to CPU.")
    enable_liger_kernel: bool = opt(False, "Use Liger's fused Triton kernels (GPU only).")
    moe_aux_loss_coef: float | None = opt(None, "Coefficient of the MoE router auxiliary loss.", ge=0)
    disable_gradient_checkpointing: bool = opt(False, "Turn off gradient checkpointing (it is on by default).")
    ignore_memory_estimate: bool = opt(
        False, "tuneforge: train even when `tuneforge estimate` predicts more memory than the GPU has free."
    )
    use_reentrant_gc: bool = opt(True, "Use reentrant activation checkpointing.")
    upcast_layernorm: bool = opt(False, "Keep the normalisation weights in fp32.")
    upcast_lmhead_output: bool = opt(False, "Compute the lm_head output in fp32.")
    train_from_scratch: bool = opt(False, "Initialise the weights randomly from the model config.")
    infer_backend: Literal["huggingface", "vllm", "sglang"] = opt(
        "huggingface", "Inference engine for chat, api and predict."
    )
    offload_folder: str = opt("offload", "Folder for weights offloaded to disk.")
    use_kv_cache: bool = opt(True, "Use the KV cache during generation.")
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = opt(
        "auto", "Dtype of the model for inference and export."
    )
    hf_hub_token: str | None = opt(None, "Token for the Hugging Face hub.")
    ms_hub_token: str | None = opt(None, "Token for the ModelScope hub.")
    trust_remote_code: bool = opt(False, "Allow code from the model repository to run.")
    print_param_status: bool = opt(False, "Print dtype, device and trainability of every parameter.")
    quantization_method: Literal["bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"] = opt(
        "bnb", "Method for on-the-fly quantization."
    )
    quantization_bit: Literal[4, 8] | None = opt(None, "Quantize the base model to this many bits (QLoRA).")
    quantization_type: Literal["fp4", "nf4"] = opt("nf4", "4-bit data type of bitsandbytes.")
    double_quantization: bool = opt(True, "Quantize the quantization constants too (bitsandbytes 4-bit).")
    quantization_device_map: Literal["auto"] | None = opt(
        None, "Device map for a 4-bit model at inference ('auto' spreads it)."
    )
    export_dir: str | None = opt(None, "Folder `tuneforge export` writes the merged model to.")
    export_size: int = opt(5, "Largest safetensors shard of an export, in GB.", ge=1)
    export_device: Literal["cpu", "auto"] = opt("cpu", "Device used to merge during export.")
    export_quantization_bit: int | None = opt(None, "Bits for GPTQ quantization at export.")
    export_quantization_dataset: str | None = opt(None, "Calibration data for GPTQ export.")
    export_quantization_nsamples: int = opt(128, "Number of calibration samples.", ge=1)
    export_quantization_maxlen: int = opt(1024, "Length of calibration samples.", ge=1)
    export_legacy_format: bool = opt(False, "Write .bin instead of .safetensors (refused: safetensors only).")
    export_hub_model_id: str | None = opt(None, "Hub repository to push the export to.")
