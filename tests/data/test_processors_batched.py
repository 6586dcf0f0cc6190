"""sft's batched path (one tokenizer call per map batch) gives exactly the rows of the per-row path."""

from __future__ import annotations

import random

import pytest

from shared_models import require_shared
from tuneforge.data.processors import supervised
from tuneforge.data.processors.common import DROP, TRUNCATED, Context, probe_guard
from tuneforge.data.templates import get_template

WORDS = ["the", "model", "answers", "quickly", "数据", "训练", "def f(x):", "  return x", "- item", "1.", "ok?",
         "<b>", "naïve", "émoji 🙂", "\t", "end.", "  ", "\n"]


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def text(rng: random.Random, long: bool = False) -> str:
    n = rng.randint(60, 200) if long else rng.choice([0, 1, 2, 5, 12, 30])
    out = " ".join(rng.choice(WORDS) for _ in range(n))
    return ("\n" + out) if rng.random() < 0.1 else out


def conversations(seed: int = 0, n: int = 200) -> dict[str, list]:
    """~200 varied rows: 1-4 turns, system prompts, long messages, observation turns and malformed rows."""
    rng = random.Random(seed)
    batch: dict[str, list] = {"_prompt": [], "_response": [], "_system": [], "_tools": []}
    for i in range(n):
        turns = rng.randint(1, 4)
        prompt = []
        for t in range(turns):
            user_role = "observation" if t and rng.random() < 0.1 else "user"
            prompt.append(msg(user_role, text(rng, long=rng.random() < 0.15)))
            if t < turns - 1:
                prompt.append(msg("assistant", text(rng, long=rng.random() < 0.15)))
        response = [msg("assistant", text(rng, long=rng.random() < 0.15))]
        kind = i % 23
        if kind == 1:
            prompt = prompt[:-1] or [msg("assistant", "x")]  # even prompt (or wrong first role)
        elif kind == 2:
            prompt[0] = msg("assistant", prompt[0]["content"])  # the template refuses the role order
        elif kind == 3:
            response = response * 2  # two responses
        elif kind == 4:
            response = []
        batch["_prompt"].append(prompt)
        batch["_response"].append(response)
        batch["_system"].append(rng.choice(["", "", "You are helpful.", text(rng), None]))
        batch["_tools"].append("")
    return batch


def context(tokenizer, template, cutoff_len: int, **flags) -> Context:
    return Context(tokenizer=tokenizer, template=template, cutoff_len=cutoff_len,
                   guard=probe_guard(template, tokenizer), **flags)


def assert_same(batch: dict[str, list], ctx: Context) -> dict[str, list]:
    batched = supervised.process_batch(batch, ctx)
    per_row = supervised.process_rows(batch, ctx)
    assert set(batched) == set(per_row)
    for column in per_row:
        assert len(batched[column]) == len(batch["_prompt"]), column
        for i, (got, want) in enumerate(zip(batched[column], per_row[column], strict=True)):
            assert got == want, (column, i)
    return per_row


SETTINGS = [
    (2048, {}),
    (96, {}),  # many rows cut
    (24, {}),
    (6, {}),  # some rows do not fit at all
    (96, {"mask_history": True}),
    (96, {"train_on_prompt": True}),
]


def check_all(tokenizer, template):
    batch = conversations()
    seen_drops, seen_cut = set(), False
    for cutoff_len, flags in SETTINGS:
        out = assert_same(batch, context(tokenizer, template, cutoff_len, **flags))
        seen_drops |= set(out[DROP])
        seen_cut |= any(out[TRUNCATED])
    assert {"", "invalid", "too_long"} <= seen_drops and seen_cut  # the data exercises drops and truncation
    # map batches of other sizes (and one with no valid row) give the same rows too
    ctx = context(tokenizer, template, 96)
    for size in (1, 7, 64):
        assert_same({k: v[:size] for k, v in batch.items()}, ctx)
    assert_same({k: v[1:2] for k, v in batch.items()}, ctx)  # only a malformed row
    assert_same({k: [] for k in batch}, ctx)


@pytest.fixture(scope="module")
def qwen_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(require_shared("Qwen2.5-0.5B-Instruct")))


def test_batched_equals_per_row_qwen(qwen_tok):
    check_all(qwen_tok, get_template("qwen", qwen_tok))


def test_batched_equals_per_row_tiny_chatml():
    from tuneforge.testing import load_tiny_tokenizer

    tok = load_tiny_tokenizer()
    check_all(tok, get_template("chatml", tok))


def test_batched_equals_per_row_jinja(qwen_tok):
    from tuneforge.data.templates.jinja import JinjaTemplate

    batch = {k: v[:60] for k, v in conversations(seed=1).items()}
    assert_same(batch, context(qwen_tok, JinjaTemplate.from_tokenizer(qwen_tok), 96))


def test_template_without_batch_api_keeps_per_row_path(qwen_tok):
    class RowOnly:  # a template exposing only encode_multiturn / encode_oneturn
        def __init__(self, template):
            self.template = template

        def encode_multiturn(self, *args):
            return self.template.encode_multiturn(*args)

        def encode_oneturn(self, *args):
            return self.template.encode_oneturn(*args)

    qwen = get_template("qwen", qwen_tok)
    batch = {k: v[:40] for k, v in conversations(seed=2).items()}
    ctx = context(qwen_tok, qwen, 96)
    row_only = context(qwen_tok, RowOnly(qwen), 96)
    assert supervised.process_batch(batch, row_only) == supervised.process_batch(batch, ctx)
