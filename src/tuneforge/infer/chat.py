"""Terminal chat: streamed answers, history, a system prompt and a few commands.

Interactive (a terminal on stdin): prompts and help go to stderr, the answer streams to stdout.
Scripted (stdin is a pipe or file): every non-empty line is one message and every answer is printed on one line,
with backslashes, newlines and carriage returns escaped (``\\\\``, ``\\n``, ``\\r``) so line N of the output answers
message N; nothing else is written to stdout.

Commands (a line that is exactly one of them): ``clear`` or ``/clear`` forgets the history (LLaMA-Factory's
``clear``); ``exit``, ``quit`` or ``/exit`` ends the session; ``/system TEXT`` sets the system prompt (``/system``
alone restores the config's ``default_system`` / the template's own); ``/help`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TextIO

from .engine import Engine

EXIT_WORDS = ("exit", "quit", "/exit", "/quit")
CLEAR_WORDS = ("clear", "/clear")
HELP = ("commands: clear (forget the history) · exit · /system TEXT (set the system prompt; /system alone resets "
        "it) · /help")


def escape_line(text: str) -> str:
    """One-line form of an answer: ``escape_line("a\\\\b\\nc") == "a\\\\\\\\b\\\\nc"``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


@dataclass
class ChatSession:
    """The conversation so far and the system prompt (None = the template's default)."""

    history: list[dict[str, str]] = field(default_factory=list)
    system: str | None = None

    def command(self, line: str) -> str | None:
        """Apply a command line; returns a note for the user, ``"exit"`` to stop, or None if it is a message."""
        word = line.strip()
        if word in EXIT_WORDS:
            return "exit"
        if word in CLEAR_WORDS:
            self.history.clear()
            return "history cleared"
        if word == "/help":
            return HELP
        if word == "/system" or word.startswith("/system "):
            text = word[len("/system"):].strip()
            self.system = text or None
            return f"system prompt set to {text!r}" if text else "system prompt reset to the default"
        return None


def answer(engine: Engine, session: ChatSession, message: str, out: TextIO, *, escape: bool) -> str:
    """Stream the answer to ``message`` into ``out`` and record both turns; returns the answer."""
    messages = [*session.history, {"role": "user", "content": message}]
    parts: list[str] = []
    with engine.stream(messages, session.system) as stream:
        for delta in stream:
            parts.append(delta)
            out.write(escape_line(delta) if escape else delta)
            out.flush()
    out.write("\n")
    out.flush()
    reply = "".join(parts)
    session.history.extend([{"role": "user", "content": message}, {"role": "assistant", "content": reply}])
    return reply


def run_chat(engine: Engine, stdin: TextIO, stdout: TextIO, stderr: TextIO, *, interactive: bool) -> int:
    """The chat loop until ``exit`` or end of input; returns the exit code (0)."""
    session = ChatSession()
    if interactive:
        stderr.write(f"tuneforge chat · {HELP}\n")
    while True:
        line = _read(stdin, stderr, interactive)
        if line is None:
            return 0
        if not line.strip():
            continue
        note = session.command(line)
        if note == "exit":
            return 0
        if note is not None:
            if interactive:
                stderr.write(f"[{note}]\n")
            continue
        if not interactive:
            answer(engine, session, line.rstrip("\r\n"), stdout, escape=True)
            continue
        stdout.write("Assistant: ")
        try:
            answer(engine, session, line.rstrip("\r\n"), stdout, escape=False)
        except KeyboardInterrupt:  # Ctrl-C stops this answer (generation is cancelled), not the session
            stderr.write("\n[answer interrupted; not kept in the history]\n")


def _read(stdin: TextIO, stderr: TextIO, interactive: bool) -> str | None:
    if interactive:
        stderr.write("\nUser: ")
        stderr.flush()
    try:
        line = stdin.readline()
    except (EOFError, UnicodeDecodeError) as err:
        if isinstance(err, UnicodeDecodeError):
            stderr.write("error: input is not UTF-8\n")
        return None
    return line or None


def chat_from_config(cfg: Any, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Load the model of ``cfg`` and chat over the given streams (interactive when stdin is a terminal)."""
    engine = Engine.from_config(cfg)
    return run_chat(engine, stdin, stdout, stderr, interactive=stdin.isatty())
