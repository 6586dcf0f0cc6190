"""``tuneforge export``: merged weights equal base + adapter, a folder plain transformers loads, stop ids and the
chat template travel with it, shards get an index, and nothing is overwritten or merged into a quantized base."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from infer_kit import chatml_prompt, make_cfg, train_eot_adapter

from tuneforge.data.templates import resolve_template
from tuneforge.infer.errors import InferError
from tuneforge.infer.export import MANIFEST, export_dtype, export_model, file_sha256
from tuneforge.testing import IM_END_ID, IM_START_ID

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "bye"}]


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    return train_eot_adapter(tiny_model_dir, tmp_path_factory.mktemp("eot-adapter"))


@pytest.fixture(scope="module")
def exported(tiny_model_dir, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "merged"
    cfg = make_cfg(tiny_model_dir, adapter_name_or_path=str(adapter), export_dir=str(out), infer_dtype="float32")
    return export_model(cfg)


def reference_logits(model_dir, adapter, ids):
    """Base + adapter through PEFT, unmerged (the oracle)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_export_matches_base_plus_adapter(tiny_model_dir, adapter, exported):
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 300, 42, 8, 99, 512, 7, 3, 4]])
    merged = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    with torch.no_grad():
        got, plain = merged(input_ids=ids).logits, base(input_ids=ids).logits
    want = reference_logits(tiny_model_dir, adapter, ids)
    assert (want - plain).abs().max() > 1e-2  # the adapter matters
    assert (got - want).abs().max() <= 1e-4
    assert merged.dtype == torch.float32


def test_export_folder_is_complete(exported, adapter):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            MANIFEST} <= names
    assert not any(n.startswith(".") for n in os.listdir(exported.parent))  # no staging leftovers
    umask = os.umask(0o022)
    os.umask(umask)
    assert (exported / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, not 0600
    manifest = json.loads((exported / MANIFEST).read_text())
    assert manifest["adapters"][0]["sha256"]["adapter_model.safetensors"] == \
        file_sha256(adapter / "adapter_model.safetensors")
    assert manifest["template"]["name"] == "chatml"
    assert manifest["stop_token_ids"] == [IM_END_ID, IM_START_ID]
    assert manifest["dtype"] == "float32"


def test_generation_config_holds_the_stop_ids(exported):
    from transformers import GenerationConfig

    assert GenerationConfig.from_pretrained(str(exported)).eos_token_id == [IM_END_ID, IM_START_ID]


def test_tokenizer_chat_template_renders_like_the_template(exported):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    template = resolve_template("chatml", tokenizer)
    got = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert got == template.prompt_text_for(tokenizer, MESSAGES)
    full = [*MESSAGES, {"role": "assistant", "content": "Bye."}]
    assert tokenizer.apply_chat_template(full, tokenize=False) == "".join(template.pieces_for(tokenizer, full))
    assert tokenizer.padding_side == "left"


def test_greedy_generation_of_the_export_stops_at_end_of_turn(exported):
    """Plain transformers with the exported generation_config: the trained adapter answers <|im_end|> at once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(exported))
    for question in ("hi", "bye"):
        ids = tokenizer(chatml_prompt(question), return_tensors="pt")["input_ids"]
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False)
        new = out[0, ids.shape[1]:].tolist()
        assert new[-1] == IM_END_ID and len(new) < 32, new


def test_sharded_export_writes_an_index(tiny_model_dir, adapter, tmp_path):
    cfg = make_cfg(tiny_model_dir, adapter_name_or_path=str(adapter), export_dir=str(tmp_path / "sharded"),
                   infer_dtype="float32")
    out = export_model(cfg, max_shard_size=200_000)  # the tiny model is ~0.8 MB in fp32
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 2
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(str(out)) is not None


def test_auto_dtype_turns_float32_into_bfloat16(tiny_model_dir, tmp_path):
    export_model(make_cfg(tiny_model_dir, export_dir=str(tmp_path / "bf16")))
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    assert export_dtype("auto", torch.float16) == torch.float16


def test_template_null_keeps_the_tokenizers_own_chat_template(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    out = export_model(make_cfg(tiny_model_dir, template=None, export_dir=str(tmp_path / "own")))
    original = AutoTokenizer.from_pretrained(str(tiny_model_dir)).chat_template
    assert AutoTokenizer.from_pretrained(str(out)).chat_template == original


def test_a_greedy_base_config_with_sampling_flags_still_exports(tiny_model_dir, tmp_path):
    """Published configs may say do_sample: false next to a temperature; transformers refuses to save such a
    config once changed, so the ignored flags are dropped."""
    from transformers import GenerationConfig

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "generation_config.json").write_text(json.dumps({"do_sample": False, "temperature": 0.7, "top_p": 0.8,
                                                             "eos_token_id": 2}))
    out = export_model(make_cfg(base, export_dir=str(tmp_path / "greedy")))
    config = GenerationConfig.from_pretrained(str(out))
    assert config.eos_token_id == [IM_END_ID, IM_START_ID] and config.temperature is None


def test_non_empty_export_dir_is_refused_unless_forced(tiny_model_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    cfg = make_cfg(tiny_model_dir, export_dir=str(out), infer_dtype="float32")
    with pytest.raises(InferError, match="not empty"):
        export_model(cfg)
    assert (out / "notes.txt").read_text() == "keep me"
    export_model(cfg, force=True)
    assert not (out / "notes.txt").exists() and (out / "config.json").is_file()


def test_export_refuses_to_replace_its_own_source(tiny_model_dir):
    cfg = make_cfg(tiny_model_dir, export_dir=str(tiny_model_dir), infer_dtype="float32")
    with pytest.raises(InferError, match="base model"):
        export_model(cfg, force=True)


def test_merge_into_a_quantized_base_is_refused(tiny_model_dir, adapter, tmp_path):
    cfg = make_cfg(tiny_model_dir, adapter_name_or_path=str(adapter), export_dir=str(tmp_path / "q"),
                   quantization_bit=4)
    with pytest.raises(InferError, match="quantized base"):
        export_model(cfg)
    assert not (tmp_path / "q").exists()


def test_cli_exit_codes(tiny_model_dir, tmp_path, capsys):
    from tuneforge.cli import main

    out = tmp_path / "cli"
    out.mkdir()
    (out / "x").write_text("x")
    config = tmp_path / "export.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\ntemplate: chatml\ncutoff_len: 512\n"
                      f"export_dir: {out}\ninfer_dtype: float32\n")
    assert main(["export", str(config)]) == 2
    refused = capsys.readouterr()
    assert "not empty" in refused.err and "Traceback" not in refused.err
    assert main(["export", str(config), "--force"]) == 0
    assert capsys.readouterr().out.strip() == str(out.resolve())
    assert (out / "config.json").is_file()
