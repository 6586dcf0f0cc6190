"""A model folder without a tokenizer says which files it lacks (not "install sentencepiece")."""

from __future__ import annotations

import shutil

import pytest

from tuneforge.config.loader import resolve
from tuneforge.model import ModelLoadError, load_tokenizer


def test_folder_without_tokenizer_names_the_files(tiny_model_dir, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, folder / name)
    cfg = resolve({"model_name_or_path": str(folder)}, environ={}).config
    with pytest.raises(ModelLoadError, match=r"has no tokenizer: none of tokenizer\.json, tokenizer_config\.json"):
        load_tokenizer(cfg)
    shutil.copy(tiny_model_dir / "tokenizer.json", folder / "tokenizer.json")
    shutil.copy(tiny_model_dir / "tokenizer_config.json", folder / "tokenizer_config.json")
    assert load_tokenizer(cfg).pad_token is not None
