"""``tuneforge chat``: scripted (piped) sessions print one answer per line; history, clear, /system and exit."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from infer_kit import make_cfg

from tuneforge.data.templates import resolve_template
from tuneforge.infer.chat import ChatSession, escape_line, run_chat
from tuneforge.infer.engine import Engine, SamplingParams
from tuneforge.testing import build_tiny_model, load_tiny_tokenizer, repo_root


class RecordingEngine(Engine):
    """The real engine, remembering the conversations it was asked to answer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[list, str | None]] = []

    def stream(self, messages, system=None, params=None):
        self.asked.append((list(messages), system))
        return super().stream(messages, system, params)


@pytest.fixture(scope="module")
def engine():
    tokenizer = load_tiny_tokenizer()
    return RecordingEngine(build_tiny_model("llama"), tokenizer, resolve_template("chatml", tokenizer),
                           SamplingParams(max_new_tokens=12, do_sample=False))


def test_piped_session_keeps_history_until_clear(engine):
    engine.asked.clear()
    stdout, stderr = io.StringIO(), io.StringIO()
    stdin = io.StringIO("hi\nhow are you\n\nclear\n/system Be terse.\nhello\nexit\nnever read\n")
    assert run_chat(engine, stdin, stdout, stderr, interactive=False) == 0
    lines = stdout.getvalue().split("\n")
    assert len(lines) == 4 and lines[-1] == ""  # three answers, one per line
    assert stderr.getvalue() == ""
    (first, _), (second, _), (third, system) = engine.asked
    assert [m["content"] for m in first] == ["hi"]
    assert [m["content"] for m in second][:1] == ["hi"] and len(second) == 3  # history carried over
    assert [m["content"] for m in third] == ["hello"] and system == "Be terse."  # cleared, system set
    assert lines[0] == escape_line(second[1]["content"])


def test_session_commands():
    session = ChatSession(history=[{"role": "user", "content": "x"}])
    assert session.command("hello") is None
    assert session.command("/system  Pirate talk ") == "system prompt set to 'Pirate talk'"
    assert session.system == "Pirate talk"
    assert session.command("/system") == "system prompt reset to the default" and session.system is None
    assert session.command("clear") == "history cleared" and session.history == []
    assert session.command("exit") == "exit" and session.command("/exit") == "exit"
    assert escape_line("a\\b\nc\r") == "a\\\\b\\nc\\r"


@pytest.mark.slow  # a whole CLI process
def test_cli_chat_with_piped_stdin(tiny_model_dir, tmp_path):
    cfg_file = tmp_path / "chat.yaml"
    cfg_file.write_text(f"model_name_or_path: {tiny_model_dir}\ntemplate: chatml\ncutoff_len: 512\n"
                        "do_sample: false\nmax_new_tokens: 8\n")
    make_cfg(tiny_model_dir)  # the same keys resolve without errors
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, "-m", "tuneforge", "chat", str(cfg_file)], input="hi\nclear\nhello\nexit\n",
                          capture_output=True, text=True, env=env, cwd=repo_root(), timeout=180)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.split("\n")
    assert len(answers) == 3 and answers[-1] == "", done.stdout
    assert "User:" not in done.stdout and "tuneforge chat" not in done.stdout
