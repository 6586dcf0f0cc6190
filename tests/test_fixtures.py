"""The tiny offline assets: shipped tokenizer, model configs, and tuneforge.testing's builders and fixtures."""

from __future__ import annotations

import importlib.util
import string
from pathlib import Path

import pytest
import torch

from tuneforge import testing
from tuneforge.testing import build_tiny_model, count_parameters, tiny_tokenizer_path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_tiny_assets.py"
ROUND_TRIP = [
    "Hello world!",
    " leading space, double  space, trailing space ",
    "tabs\tand\nnewlines\r\n\n",
    "12+345=357 and 0.5e-3",
    "café naïve Größe 日本語 привет 🙂👍🏽 — π ≈ 3.14",
    "def f(x):\n    return {'a': [1, 2]}\n",
    "literal specials: <|im_start|>user\nHi<|im_end|>\n<|endoftext|>",
    "\x00\x07 control bytes \u200b zero width",
]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_tiny_assets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- tokenizer -------------------------------------------------------------------------------------------------


def test_script_regenerates_shipped_assets_byte_for_byte(tmp_path):
    """Running the generator again gives exactly the committed files (tokenizer, template, configs)."""
    _load_script().main([str(tmp_path)])
    shipped = sorted(p.name for p in tiny_tokenizer_path().iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (tiny_tokenizer_path() / name).read_bytes(), name


def test_tokenizer_specials_and_size(tiny_tokenizer):
    tok = tiny_tokenizer
    assert len(tok) == 1024
    specials = ["<|pad|>", "<|bos|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tok.convert_tokens_to_ids(specials) == [0, 1, 2, 3, 4]
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<|pad|>", "<|bos|>", "<|im_end|>")
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 4)
    assert tok.unk_token is None
    assert tok("hi there").input_ids[0] != tok.bos_token_id  # no automatic bos (Qwen style)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_tokenizer_round_trips_exactly(tiny_tokenizer, text):
    ids = tiny_tokenizer(text).input_ids
    assert tiny_tokenizer.decode(ids) == text


def test_every_byte_is_a_token(tiny_tokenizer):
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(ByteLevel.alphabet()) <= set(tiny_tokenizer.get_vocab())


def test_digits_and_letters_are_single_tokens(tiny_tokenizer):
    for ch in string.digits + string.ascii_lowercase:
        ids = tiny_tokenizer(ch).input_ids
        assert len(ids) == 1 and tiny_tokenizer.convert_ids_to_tokens(ids) == [ch], ch
    assert tiny_tokenizer.tokenize("123") == ["1", "2", "3"]
    assert tiny_tokenizer.tokenize("x 2024") == ["x", "Ġ", "2", "0", "2", "4"]
    # No merge in the vocabulary contains a digit: numbers are always read digit by digit.
    assert not [t for t in tiny_tokenizer.get_vocab() if len(t) > 1 and any(c in string.digits for c in t)]


def test_chat_template_generation_prompt(tiny_tokenizer):
    msgs = [{"role": "user", "content": "Hi"}]
    text = tiny_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_system_and_assistant_mask(tiny_tokenizer):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hi there."},
    ]
    text = tiny_tokenizer.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHi there.<|im_end|>\n"
    )
    out = tiny_tokenizer.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tiny_tokenizer.decode(kept) == "Hi there.<|im_end|>"


# --- models ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        # embed 1024*64 = 65,536; per layer q 4,096 + k 2,048 + v 2,048 + o 4,096 + mlp 3*64*128 = 24,576
        # + 2 norms 128 = 36,992; final norm 64. llama: 2*65,536 + 2*36,992 + 64 (untied head).
        ("llama", 205_120),
        # qwen2: one tied 65,536 matrix, plus q/k/v biases 64+32+32 = 128 per layer.
        ("qwen2", 139_840),
        # embed 1024*128 = 131,072 (x2, untied); per layer 4*16,384 attn + 3*128*256 mlp + 256 norms = 164,096.
        ("quickstart", 918_656),
    ],
)
def test_parameter_counts(arch, expected):
    model = build_tiny_model(arch)
    assert count_parameters(model) == expected
    assert model.config.vocab_size == 1024
    assert model.config.tie_word_embeddings is (arch == "qwen2")


def test_build_is_deterministic_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a, b = build_tiny_model("llama", seed=0).state_dict(), build_tiny_model("llama", seed=0).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = build_tiny_model("llama", seed=1).state_dict()
    assert not torch.equal(a["model.embed_tokens.weight"], other["model.embed_tokens.weight"])


def test_dtype_is_a_cast_of_the_float32_weights():
    fp32 = build_tiny_model("qwen2", seed=3).state_dict()
    bf16 = build_tiny_model("qwen2", seed=3, dtype=torch.bfloat16).state_dict()
    assert all(bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], fp32[k].to(torch.bfloat16)) for k in fp32)


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="choose one of llama, qwen2, quickstart"):
        build_tiny_model("gpt2")


@pytest.mark.parametrize(("fixture", "arch"), [("tiny_model_dir", "llama"), ("tiny_qwen2_model_dir", "qwen2")])
def test_saved_folder_reloads_with_plain_transformers(request, fixture, arch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = request.getfixturevalue(fixture)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", *testing.TOKENIZER_FILES} <= names
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    assert model.config.model_type == arch and list(model.generation_config.eos_token_id) == [4, 2]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = build_tiny_model(arch, seed=0)(ids).logits
        assert torch.equal(model(ids).logits, expected)
        generated = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 3) or generated[0, -1].item() in (2, 4)


def test_shared_models_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEFORGE_SHARED", str(tmp_path))
    assert testing.shared_models_dir() == tmp_path / "models"
    with pytest.raises(FileNotFoundError, match="TUNEFORGE_SHARED"):
        testing.load_shared_tokenizer("nope")
    monkeypatch.delenv("TUNEFORGE_SHARED")
    assert testing.shared_models_dir() == testing.repo_root().parent / "shared" / "models"


def test_load_shared_tokenizer():
    from shared_models import require_shared

    require_shared("SmolLM2-135M-Instruct")
    assert len(testing.load_shared_tokenizer("SmolLM2-135M-Instruct")) == 49152
