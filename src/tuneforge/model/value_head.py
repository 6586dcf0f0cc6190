"""A scalar value head on a causal LM: the reward model of stage ``rm``, read back by ``ppo``.

Layout and files follow LLaMA-Factory (TRL's ``AutoModelForCausalLMWithValueHead``): the head is
``v_head.summary = Linear(hidden_size, 1)`` on the last hidden state (after the final norm), a sequence's score is
its value at the last real token, and a saved reward model is the usual model folder (LoRA adapter, or full
weights + ``config.json``) plus ``value_head.safetensors`` holding ``v_head.summary.weight`` / ``.bias``.

Training attaches the head to the causal LM itself (:func:`attach_value_head`), so the trainer still holds a
``PeftModel`` / ``PreTrainedModel`` and saves it the usual way; :class:`ValueHeadCallback` adds
``value_head.safetensors`` to each checkpoint and restores it on resume. :func:`load_value_head_model` gives ppo
(or anyone) a frozen scorer: ``ValueHeadModel(**batch) -> [B]`` scores.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformers import TrainerCallback

from .errors import ModelLoadError
from .forward import forward_hidden, unwrap_causal_lm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ..config.schema import Config

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_HEAD_BIN = "value_head.bin"  # LLaMA-Factory's name without safe_serialization
WEIGHT, BIAS = "v_head.summary.weight", "v_head.summary.bias"
_SHORT_KEYS = {"v_head.weight": WEIGHT, "v_head.bias": BIAS}  # accepted on load


class ValueHead(nn.Module):
    """``summary = Linear(hidden_size, 1)``; maps ``[..., H]`` hidden states to ``[...]`` fp32 scores.

    The head keeps its own dtype (fp32 from :func:`attach_value_head`); hidden states are cast to it, so a bf16
    backbone still gets an fp32 score. No dropout (TRL's default 0.1 would make scores noisy for ranking).
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1).float()


def _outer(model: nn.Module) -> nn.Module:
    """The model inside DDP / DeepSpeed (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return _outer(inner)
    return model


def hidden_size_of(model: nn.Module) -> int:
    """The width of ``model``'s last hidden state (the text config's ``hidden_size``; PEFT/DDP wrappers allowed)."""
    config = unwrap_causal_lm(model).config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


def attach_value_head(model: nn.Module) -> ValueHead:
    """Register a new fp32 :class:`ValueHead` as ``model.v_head`` (trainable when the model is in training).

    Registered on the outer model (the ``PeftModel`` for LoRA), so the optimizer and DDP see its parameters while
    ``save_pretrained`` of a PEFT model still writes only the adapter.
    """
    device = next(model.parameters()).device
    head = ValueHead(hidden_size_of(model)).to(device=device, dtype=torch.float32)
    head.requires_grad_(model.training)
    model.v_head = head
    return head


def value_head_of(model: nn.Module) -> ValueHead:
    """The head :func:`attach_value_head` registered (through DDP / compile wrappers).

    Raises:
        AttributeError: the model has no value head.
    """
    head = getattr(_outer(model), "v_head", None)
    if not isinstance(head, ValueHead):
        raise AttributeError(f"{type(_outer(model)).__name__} has no value head: call attach_value_head first")
    return head


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last real token of each row (right or left padding): ``[[1, 1, 0], [1, 1, 1]] -> [1, 2]``."""
    width = attention_mask.shape[-1]
    return width - 1 - attention_mask.flip(-1).to(torch.int64).argmax(-1)


def score_last_tokens(lm: nn.Module, head: ValueHead, batch: Mapping[str, Any]) -> Tensor:
    """``[B]`` fp32 scores: ``head`` on ``lm``'s last hidden state at each row's last real token.

    ``lm`` is called through its outer wrapper (DDP gradient sync, PEFT) and never builds full-vocabulary logits
    (see :func:`tuneforge.model.forward.forward_hidden`). Rows without ``attention_mask`` score their last position.
    """
    hidden = forward_hidden(lm, batch).hidden  # [B, T, H]
    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2:
        index = torch.full((hidden.shape[0],), hidden.shape[1] - 1, device=hidden.device)
    else:
        index = last_token_index(mask.to(hidden.device))
    return head(hidden[torch.arange(hidden.shape[0], device=hidden.device), index])  # head on [B, H]


def sequence_scores(model: nn.Module, batch: Mapping[str, Any]) -> Tensor:
    """:func:`score_last_tokens` with the head :func:`attach_value_head` registered on ``model``."""
    return score_last_tokens(model, value_head_of(model), batch)


# ---- files -------------------------------------------------------------------------------------------------------


def save_value_head(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``value_head.safetensors`` (``v_head.summary.weight`` [1, H], ``.bias`` [1]) into ``folder``."""
    from safetensors.torch import save_file

    head = value_head_of(model).summary
    tensors = {WEIGHT: head.weight.detach().float().cpu().contiguous(),
               BIAS: head.bias.detach().float().cpu().contiguous()}
    path = Path(folder) / VALUE_HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def read_value_head(folder: str | os.PathLike) -> dict[str, Tensor] | None:
    """The head tensors of ``folder`` (``value_head.safetensors``, else ``value_head.bin``), keys normalised to
    ``v_head.summary.*``; None when the folder has neither file."""
    folder = Path(folder)
    if (folder / VALUE_HEAD_FILE).is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / VALUE_HEAD_FILE))
    elif (folder / VALUE_HEAD_BIN).is_file():
        state = torch.load(folder / VALUE_HEAD_BIN, map_location="cpu", weights_only=True)
    else:
        return None
    return {_SHORT_KEYS.get(key, key): value for key, value in state.items()}


def load_value_head(target: nn.Module, folder: str | os.PathLike) -> bool:
    """Copy ``folder``'s head into ``target`` (a :class:`ValueHead`, or a model carrying ``v_head``) in place.

    Returns False, changing nothing, when the folder has no head file.

    Raises:
        ValueError: the file lacks the weight/bias or their shape does not match the model's hidden size.
    """
    state = read_value_head(folder)
    if state is None:
        return False
    head = (target if isinstance(target, ValueHead) else value_head_of(target)).summary
    if WEIGHT not in state or BIAS not in state or state[WEIGHT].shape != head.weight.shape:
        found = {key: tuple(value.shape) for key, value in state.items()}
        raise ModelLoadError(f"{folder}: value head {found} does not fit a hidden size of {head.in_features}")
    with torch.no_grad():
        head.weight.copy_(state[WEIGHT])
        head.bias.copy_(state[BIAS])
    return True


def strip_value_head(folder: str | os.PathLike) -> None:
    """Remove ``v_head.*`` tensors from the transformers weights in ``folder`` (single file or shards + index).

    A full/freeze reward model carries its head as a submodule, so ``save_pretrained`` writes it into the model
    weights too; LLaMA-Factory keeps it only in ``value_head.safetensors`` (``fix_valuehead_checkpoint``), so a
    plain ``from_pretrained`` of the folder loads without unexpected keys. Only the shards holding head tensors
    are rewritten.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else None
    if index is not None:
        shards = {index["weight_map"][key] for key in index["weight_map"] if key.startswith("v_head.")}
    else:
        shards = {"model.safetensors"} if (folder / "model.safetensors").is_file() else set()
    for shard in shards:
        tensors = load_file(str(folder / shard))
        kept = {key: value for key, value in tensors.items() if not key.startswith("v_head.")}
        if len(kept) != len(tensors):
            save_file(kept, str(folder / shard), metadata={"format": "pt"})
    if index is not None and shards:
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("v_head.")}
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


class ValueHeadCallback(TrainerCallback):
    """``value_head.safetensors`` in every checkpoint, and back into the model when a run resumes.

    HF resumes a LoRA run by reloading only the adapter, so the head is restored here, at ``on_train_begin`` (after
    HF loaded the checkpoint). ``resume`` is the run's ``resume_from_checkpoint``: a folder, or true/None, which
    means ``<output_dir>/checkpoint-<resumed step>``. Register it before the checkpoint-completion callback so the
    completion marker covers the head.
    """

    def __init__(self, resume: bool | str | os.PathLike | None = None) -> None:
        self.resume = resume

    def on_save(self, args, state, control, model=None, **kwargs):
        if args.should_save and model is not None:
            save_value_head(model, Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0 or model is None:
            return
        folder = self.resume if isinstance(self.resume, str | os.PathLike) and self.resume else None
        folder = Path(folder) if folder else Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not load_value_head(model, folder):
            logger.warning("resuming from %s: it has no %s; the value head starts untrained", folder, VALUE_HEAD_FILE)


# ---- a frozen scorer for ppo ----------------------------------------------------------------------------------------


class ValueHeadModel(nn.Module):
    """A causal LM (plain or PEFT) and its :class:`ValueHead`: ``forward(**batch) -> [B]`` fp32 sequence scores.

    ``batch`` holds ``input_ids`` and ``attention_mask`` (either padding side); the score is the head's value at each
    row's last real token. Built by :func:`load_value_head_model`.
    """

    def __init__(self, lm: nn.Module, v_head: ValueHead) -> None:
        super().__init__()
        self.lm = lm
        self.v_head = v_head

    def forward(self, **batch: Any) -> Tensor:
        return score_last_tokens(self.lm, self.v_head, batch)


def _reward_cfg(cfg: Config) -> tuple[Any, Path]:
    """The config that loads ppo's reward model, and the folder holding its value head (LLaMA-Factory's rule:
    the last adapter for ``full`` with adapters, the reward model path otherwise)."""
    from dataclasses import replace

    ft = cfg.finetuning
    if ft.reward_model_type == "lora":  # a LoRA reward adapter on the policy's base model
        model = replace(cfg.model, adapter_name_or_path=[ft.reward_model])
        head = Path(ft.reward_model)
    else:
        adapters = list(ft.reward_model_adapters or [])
        model = replace(cfg.model, model_name_or_path=ft.reward_model, adapter_name_or_path=adapters or None,
                        quantization_bit=ft.reward_model_quantization_bit)
        head = Path(adapters[-1] if adapters else ft.reward_model)
    return replace(cfg, model=model, finetuning=replace(ft, finetuning_type="lora")), head


def _load_lm(source: str | os.PathLike, base_model: str | None, dtype: torch.dtype | None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    folder = Path(source)
    adapter_config = folder / "adapter_config.json"
    if not adapter_config.is_file():
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    from peft import PeftModel

    base = base_model or json.loads(adapter_config.read_text())["base_model_name_or_path"]
    lm = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    return PeftModel.from_pretrained(lm, str(folder)).merge_and_unload()


def load_value_head_model(
    source: Any, *, tokenizer: Tokenizer | None = None, base_model: str | None = None, dtype: torch.dtype | None = None
) -> ValueHeadModel:
    """A frozen reward model in eval mode: the causal LM with its value head from ``value_head.safetensors``.

    Args:
        source: a folder written by stage ``rm`` (LoRA adapter or full model, plus ``value_head.safetensors``),
            or a resolved ppo config (``reward_model``, ``reward_model_type`` ``lora``/``full``,
            ``reward_model_adapters``, ``reward_model_quantization_bit``), loaded with :func:`load_model`.
        tokenizer: with a config, the run's tokenizer (so resized vocabularies match).
        base_model: for a LoRA folder, the base model (default: the adapter config's ``base_model_name_or_path``).
        dtype: for a folder, the weights' dtype (default: the checkpoint's).

    Raises:
        FileNotFoundError: the folder holds no value head (it is not a reward model).
    """
    if isinstance(source, str | os.PathLike):
        lm, head_dir = _load_lm(source, base_model, dtype), Path(source)
    else:
        from .loader import load_model

        reward_cfg, head_dir = _reward_cfg(source)
        lm = load_model(reward_cfg, tokenizer, is_trainable=False)
    head = ValueHead(hidden_size_of(lm)).to(next(lm.parameters()).device)
    if not load_value_head(head, head_dir):
        raise ModelLoadError(f"{head_dir} has no {VALUE_HEAD_FILE}: it is not a reward model written by stage rm")
    return ValueHeadModel(lm, head).requires_grad_(False).eval()
