"""The ``tuneforge`` command line. Imports nothing heavy until a command runs, so ``--help`` is instant.

Exit codes: 0 success, 2 a bad config or bad input (no traceback), 1 a failure of the run itself.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import TuneforgeError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# command -> (module under tuneforge.commands, one-line help). Modules are imported only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model as the config says (stages pt, sft, rm, dpo, kto, ppo)"),
    "check": ("check", "resolve a config, show every value's source and all errors, warnings and notices"),
    "estimate": ("estimate", "predict peak GPU memory per device, tokens/s and time; --fit finds a config that fits"),
    "lengths": ("lengths", "token-length percentiles and histogram of the processed training data"),
    "preview": ("preview", "the first processed examples with the trained tokens highlighted"),
    "chat": ("chat", "chat in the terminal with the model and adapters of a config (piped stdin: one line each)"),
    "export": ("export", "merge the adapters into the base and write a plain model folder to export_dir"),
    "api": ("api", "serve an OpenAI-compatible API (API_HOST, API_PORT, API_KEY, MAX_CONCURRENT)"),
    "predict": ("predict", "generate answers for eval_dataset and score them (BLEU-4, ROUGE)"),
    "env": ("env", "print library versions and the devices this machine has"),
    "version": ("version", "print the tuneforge version"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneforge",
        description="Fine-tune large language models from one YAML file (LLaMA-Factory keys).",
        epilog="Config overrides follow the file: `tuneforge check cfg.yaml lora_rank=16 --learning_rate 1e-4`.",
    )
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        _command_args(name, cmd)
    return parser


# Each command's own options: name -> (takes a value, help). Everything else after the config is an override.
OPTIONS: dict[str, dict[str, tuple[bool, str]]] = {
    "check": {"--json": (False, "print one JSON object instead of text"),
              "--all": (False, "show every key, also those at their defaults")},
    "lengths": {"--json": (False, "print one JSON object instead of text"),
                "--png": (True, "also draw the histogram into this PNG file")},
    "preview": {"--json": (False, "print one JSON object per example"),
                "--n": (True, "number of examples (default 3)")},
    "export": {"--force": (False, "replace a non-empty export_dir")},
    "estimate": {"--json": (False, "print one JSON object"), "--gpu": (True, "GPU name or profile (1x24gb...)"),
                 "--gpu-memory": (True, "memory per GPU, e.g. 24GiB"), "--gpus": (True, "number of GPUs"),
                 "--fit": (False, "find the fastest config predicted to fit"),
                 "--write": (True, "with --fit: save the YAML overlay here"),
                 "--lengths": (True, "`tuneforge lengths CONFIG --json` output: real row lengths"),
                 "--data": (False, "measure the real row lengths (loads the tokenizer and the data: slower)")},
}


def _command_args(name: str, cmd: argparse.ArgumentParser) -> None:
    if name in ("version", "env"):
        return
    cmd.add_argument("config", nargs="?", help="YAML or JSON config file (LLaMA-Factory keys)")
    cmd.add_argument("overrides", nargs=argparse.REMAINDER, help="key=value or --key value, applied after the file")
    for flag, (takes_value, help_text) in OPTIONS.get(name, {}).items():
        if takes_value:
            cmd.add_argument(flag, type=int if flag == "--n" else str, default=3 if flag == "--n" else None,
                             help=help_text)
        else:
            cmd.add_argument(flag, action="store_true", help=help_text)


def _split_known(command: str, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Keep the command's own options (and --help) apart from config overrides like --lora_rank 8."""
    own = OPTIONS.get(command, {})
    mine: list[str] = []
    rest: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag = arg.split("=", 1)[0]
        if arg in ("-h", "--help"):
            mine.append(arg)
        elif flag in own:
            mine.append(arg)
            if own[flag][0] and "=" not in arg and args:
                mine.append(args.pop(0))
        else:
            rest.append(arg)
    return mine, rest


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv or ["--help"])
        return EXIT_BAD_INPUT
    command, rest = argv[0], argv[1:]
    mine, rest = _split_known(command, rest)
    positional = [] if not rest or rest[0].startswith("-") or "=" in rest[0] else [rest.pop(0)]
    args = _parser().parse_args([command, *mine, *positional])
    args.overrides = rest
    module = importlib.import_module(f"tuneforge.commands.{COMMANDS[command][0]}")
    run: Callable[[argparse.Namespace], int] = module.run
    try:
        return run(args)
    except TuneforgeError as err:  # a command that does not guard itself still never shows a traceback for these
        from .commands.common import print_user_error

        print_user_error(err)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
