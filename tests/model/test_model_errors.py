"""Clear errors instead of silent fallbacks: kernels that cannot run here, packages that are missing, hub ids that
cannot be reached. Each fails before any weight is read."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from model_helpers import load, make_cfg

from tuneforge.config.loader import resolve
from tuneforge.model import ModelLoadError, load_model, load_tokenizer


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


@pytest.mark.skipif(not _missing("flash_attn"), reason="flash-attn is installed here")
def test_fa2_without_flash_attn(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="flash_attn: fa2 needs the flash-attn package, which is not installed"):
        load(tiny_model_dir, flash_attn="fa2")


@pytest.mark.skipif(not _missing("flash_attn_interface"), reason="flash-attn 3 is installed here")
def test_fa3_without_flash_attn_3(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="flash_attn: fa3 needs the flash-attn-3 package"):
        load(tiny_model_dir, flash_attn="fa3", is_trainable=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_liger_cannot_run_on_cpu(tiny_model_dir):
    reason = "not installed" if _missing("liger_kernel") else "no CUDA GPU"
    with pytest.raises(ModelLoadError, match=f"enable_liger_kernel.*{reason}"):
        load(tiny_model_dir, enable_liger_kernel=True)


@pytest.mark.skipif(not _missing("unsloth"), reason="unsloth is installed here")
def test_unsloth_missing(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="use_unsloth needs the unsloth package"):
        load(tiny_model_dir, use_unsloth=True)


def test_offline_hub_id_names_the_model():
    cfg = make_cfg("tuneforge-test/no-such-model")
    with pytest.raises(ModelLoadError, match=r"cannot load model 'tuneforge-test/no-such-model'.*HF_HUB_OFFLINE"):
        load_model(cfg, None, is_trainable=True)
    with pytest.raises(ModelLoadError, match=r"tokenizer of 'tuneforge-test/no-such-model'.*HF_HUB_OFFLINE"):
        load_tokenizer(cfg)


def test_missing_local_folder():
    res = resolve({"model_name_or_path": "./models/nowhere"}, environ={})  # check refuses it first
    assert [d.message for d in res.errors] == ["./models/nowhere does not exist"]
    with pytest.raises(ModelLoadError, match=r"model_name_or_path '\./models/nowhere': no such folder"):
        load_tokenizer(res.config)


@pytest.mark.skipif(not _missing("modelscope"), reason="modelscope is installed here")
def test_modelscope_requested_but_not_installed():
    from tuneforge.config.loader import resolve

    cfg = resolve({"model_name_or_path": "qwen/Qwen2.5-0.5B"}, environ={"USE_MODELSCOPE_HUB": "1"}).config
    with pytest.raises(ModelLoadError, match="USE_MODELSCOPE_HUB is set but the modelscope package is not installed"):
        load_tokenizer(cfg)


def test_model_load_error_is_a_value_error():
    assert issubclass(ModelLoadError, ValueError)
