"""A decoder's shape from its ``config.json`` alone (read with json: no torch, no transformers, no weights).

Where the config comes from, in order: a local model folder, the local Hugging Face cache of a hub id, then the
published shapes in ``shapes.yaml`` (instruct/chat variants share their base's shape). Example::

    arch = Arch.from_config({"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                             "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                             "tie_word_embeddings": True, "model_type": "qwen2"})
    arch.n_params  # 494_032_768, Qwen2.5-0.5B's count
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# Families whose q/k/v projections carry a bias when config.json does not say (Qwen2 has no attention_bias key).
_QKV_BIAS = frozenset({"qwen2", "qwen2_moe"})
# config.json key aliases of older families, mapped to the Llama names.
_ALIASES = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
            "n_inner": "intermediate_size", "num_layers": "num_hidden_layers", "ffn_hidden_size": "intermediate_size"}
_VARIANT = re.compile(r"-(instruct|chat|it|base|hf)(?=-|$)", re.IGNORECASE)
REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


class ArchError(ValueError):
    """The model's shape cannot be found or read; the message says where we looked and what to do."""


@dataclass(frozen=True)
class Arch:
    """The shape numbers every memory and FLOPs formula uses."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    experts: int = 0  # routed experts per MoE layer (0: dense MLP)
    experts_per_token: int = 0
    expert_intermediate: int = 0
    source: str = ""

    @classmethod
    def from_config(cls, raw: dict[str, Any], source: str = "") -> Arch:
        """Build from a ``config.json`` dict (multimodal configs: their ``text_config``)."""
        cfg = dict(raw.get("text_config") or raw)
        for old, new in _ALIASES.items():
            if old in cfg and new not in cfg:
                cfg[new] = cfg[old]
        missing = [k for k in REQUIRED if not isinstance(cfg.get(k), int)]
        if missing:
            raise ArchError(f"{source or 'config.json'} has no {', '.join(missing)}: not a decoder config "
                            "tuneforge estimate can read")
        hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
        experts = int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0)
        return cls(
            model_type=str(cfg.get("model_type", "")), hidden=hidden,
            intermediate=int(cfg.get("intermediate_size") or 4 * hidden), layers=cfg["num_hidden_layers"],
            heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads), vocab=cfg["vocab_size"],
            tied=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") in _QKV_BIAS)),
            experts=experts, experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
            expert_intermediate=int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or 0),
            source=source,
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of one decoder layer, by PEFT module name."""
        h, i = self.hidden, self.intermediate
        out = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
               "o_proj": (self.q_dim, h)}
        if not self.experts:
            out |= {"gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return out

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer: projections, biases, norms, experts and router."""
        n = sum(a * b for a, b in self.linears().values()) + 2 * self.hidden
        if self.qkv_bias:
            n += self.q_dim + 2 * self.kv_dim
        if self.model_type.startswith("qwen3"):
            n += 2 * self.head_dim  # q_norm, k_norm
        if self.experts:
            n += self.experts * 3 * self.hidden * self.expert_intermediate + self.hidden * self.experts
        return n

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def n_params(self) -> int:
        """All parameters, a tied output head counted once."""
        head = 0 if self.tied else self.embed_params
        return self.embed_params + self.layers * self.layer_params + self.hidden + head

    @property
    def n_matmul(self) -> int:
        """Matmul weights a token passes through: every layer's projections (active experts only) and the head."""
        per_layer = sum(a * b for a, b in self.linears().values())
        if self.experts:
            per_layer += self.experts_per_token * 3 * self.hidden * self.expert_intermediate
        return self.layers * per_layer + self.embed_params


@cache
def _shapes() -> dict[str, dict[str, Any]]:
    text = resources.files("tuneforge.estimate").joinpath("shapes.yaml").read_text(encoding="utf-8")
    return {k: v for k, v in yaml.safe_load(text).items() if not k.startswith("_")}


def _cached_config(name: str, cache_dir: str | None) -> Path | None:
    """config.json of hub id ``name`` in the local Hugging Face cache (the newest snapshot), or None."""
    roots = [Path(cache_dir)] if cache_dir else []
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    roots += [Path(os.environ["HF_HUB_CACHE"])] if os.environ.get("HF_HUB_CACHE") else []
    roots.append(hf_home / "hub")
    for root in roots:
        snaps = root / f"models--{name.replace('/', '--')}" / "snapshots"
        found = sorted(snaps.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snaps.is_dir() else []
        if found:
            return found[-1]
    return None


def _short(name: str) -> str:
    """``/models/Qwen2.5-7B-Instruct`` and ``Qwen/Qwen2.5-7B`` → ``qwen2.5-7b``: the model name, variant dropped."""
    return _VARIANT.sub("", name.rstrip("/").rsplit("/", 1)[-1]).lower()


def known_shape(name: str) -> dict[str, Any] | None:
    """The published shape of ``name`` or of its base model (``-Instruct``/``-Chat`` dropped); a path is matched
    by its last component, so the seed's ``/models/Qwen2.5-7B-Instruct`` finds Qwen2.5-7B."""
    shapes = _shapes()
    if name in shapes:
        return shapes[name]
    wanted = _short(name)
    return next((shape for key, shape in shapes.items() if _short(key) == wanted), None)


def load_arch(name: str, cache_dir: str | None = None) -> Arch:
    """The shape of ``model_name_or_path``: a folder, a cached hub id or a published shape; else ArchError."""
    path = Path(name).expanduser()
    if path.is_dir() or (path / "config.json").is_file():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise ArchError(f"{name} has no config.json: give the folder of a transformers model")
        return Arch.from_config(_read(cfg_file), str(cfg_file))
    cached = _cached_config(name, cache_dir)
    if cached is not None:
        return Arch.from_config(_read(cached), str(cached))
    shape = known_shape(name)
    if shape is not None:
        return Arch.from_config(shape, f"shapes.yaml:{name}")
    raise ArchError(f"cannot find the config.json of {name!r}: not a folder here, not in the Hugging Face cache, "
                    "and not a published shape tuneforge knows; download the model (or just its config.json) "
                    "and set model_name_or_path to that folder")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ArchError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ArchError(f"{path} is not a JSON object")
    return data
