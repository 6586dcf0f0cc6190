"""Diagnostics: what ``check`` and every command report about a configuration.

Levels: ``error`` (cannot work; exit code 2), ``warning`` (works, probably not what you want),
``notice`` (set but has no effect here, or translated).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ..errors import TuneforgeError

Level = Literal["error", "warning", "notice"]
LEVELS: tuple[Level, ...] = ("error", "warning", "notice")


@dataclass(frozen=True)
class Diagnostic:
    level: Level
    key: str
    message: str
    rule: str = ""

    def to_json(self) -> dict:
        out = asdict(self)
        if not self.rule:
            out.pop("rule")
        return out


class ConfigError(TuneforgeError, ValueError):
    """A configuration with errors; carries every diagnostic so all can be shown at once.

    Code that finds one config problem late (at run time) raises ``ConfigError.of("fp16", "stage ppo ...")``.
    """

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.level == "error"]
        super().__init__("\n".join(f"{d.key}: {d.message}" for d in errors))

    @classmethod
    def of(cls, key: str, message: str) -> ConfigError:
        """One error about one key: ``raise ConfigError.of("reward_model", "stage ppo needs reward_model")``."""
        return cls([Diagnostic("error", key, message)])


def sort_key(d: Diagnostic) -> tuple[int, str]:
    return LEVELS.index(d.level), d.key
