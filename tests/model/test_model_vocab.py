"""Tokenizer loading and vocabulary growth: padding side, pad token, added tokens, mean-initialised rows."""

from __future__ import annotations

import torch
from model_helpers import load, make_cfg

from tuneforge.model import load_model, load_tokenizer
from tuneforge.testing import load_tiny_tokenizer, save_tiny_model


def test_tokenizer_defaults(tiny_model_dir):
    tokenizer = load_tokenizer(make_cfg(tiny_model_dir, cutoff_len=4096))
    assert tokenizer.padding_side == "right"
    assert tokenizer.pad_token == "<|pad|>"
    assert tokenizer.model_max_length >= 4096


def test_pad_token_falls_back_to_eos(tmp_path):
    folder = save_tiny_model(tmp_path / "nopad")
    tokenizer = load_tiny_tokenizer()
    tokenizer.pad_token = None
    tokenizer.save_pretrained(str(folder))
    loaded = load_tokenizer(make_cfg(folder))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"


def _mean_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    return weight[:rows].float().mean(dim=0)


def test_added_special_tokens_grow_the_embeddings(tiny_model_dir):
    cfg = make_cfg(tiny_model_dir, add_special_tokens="<tool>,<obs>", add_tokens="hello_world")
    tokenizer = load_tokenizer(cfg)
    assert len(tokenizer) == 1027 and "<tool>" in tokenizer.all_special_tokens
    model = load_model(cfg, tokenizer, is_trainable=True)
    base = model.get_base_model()
    embed, head = base.get_input_embeddings(), base.get_output_embeddings()
    for module in (embed, head):
        weight = module.original_module.weight  # the frozen base rows (modules_to_save keeps a copy)
        assert weight.shape == (1088, 64)  # 1027 padded to a multiple of 64
        assert torch.equal(weight[1024:], _mean_rows(weight, 1024).expand(64, 64))
    # new tokens need trained embeddings: LoRA trains the embeddings and the head fully
    saved = {n for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n}
    assert saved == {"base_model.model.model.embed_tokens.modules_to_save.default.weight",
                     "base_model.model.lm_head.modules_to_save.default.weight"}


def test_resize_vocab_flag_with_a_fitting_tokenizer_changes_nothing(tiny_model_dir):
    model = load(tiny_model_dir, finetuning_type="full", resize_vocab=True)
    assert model.get_input_embeddings().weight.shape == (1024, 64)


def test_tied_embeddings_stay_tied_with_one_trained_copy(tiny_qwen2_model_dir):
    cfg = make_cfg(tiny_qwen2_model_dir, add_special_tokens="<tool>")
    model = load_model(cfg, load_tokenizer(cfg), is_trainable=True)
    base = model.get_base_model()
    assert base.get_input_embeddings().weight.shape[0] == 1088
    saved = [n for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    assert saved == ["base_model.model.model.embed_tokens.modules_to_save.default.weight"]
    ids = torch.tensor([[5, 1024, 9]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert base.get_input_embeddings().modules_to_save["default"].weight.grad[1024].abs().sum() > 0
