"""Environment-variable group: launcher, server and hub facts that come from the shell, never from the YAML.

Booleans accept 1/true/yes/y/on (case-insensitive), as LLaMA-Factory does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..fields import opt


@dataclass
class EnvArgs:
    """Variables read from the environment at start-up."""

    FORCE_TORCHRUN: bool = opt(False, "Always launch `train` through torchrun (needed for DeepSpeed on 1 GPU).")
    NNODES: int = opt(1, "torchrun: number of nodes.", ge=1)
    NODE_RANK: int = opt(0, "torchrun: rank of this node.", ge=0)
    NPROC_PER_NODE: int | None = opt(None, "torchrun: processes per node (default: the number of GPUs).", ge=1)
    MASTER_ADDR: str = opt("127.0.0.1", "torchrun: address of the rank-0 node.")
    MASTER_PORT: int | None = opt(None, "torchrun: port of the rank-0 node (default: a free port).", ge=1, le=65535)
    RDZV_ID: str | None = opt(None, "torchrun: elastic rendezvous id (turns on elastic launch).")
    MIN_NNODES: int | None = opt(None, "torchrun: elastic minimum number of nodes.", ge=1)
    MAX_NNODES: int | None = opt(None, "torchrun: elastic maximum number of nodes.", ge=1)
    MAX_RESTARTS: int = opt(0, "torchrun: elastic restarts allowed.", ge=0)
    OPTIM_TORCH: bool = opt(True, "Set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True for training children.")
    API_HOST: str = opt("127.0.0.1", "Address the API server binds (loopback unless you open it on purpose).")
    API_PORT: int = opt(8000, "Port of the API server.", ge=1, le=65535)
    API_KEY: str | None = opt(None, "Bearer key every API route but /health requires when set.")
    API_CORS_ORIGINS: str | None = opt(None, "Comma list of origins allowed by CORS (none: CORS off).")
    API_MODEL_NAME: str = opt("gpt-3.5-turbo", "Model name the API reports.")
    API_VERBOSE: bool = opt(True, "Log each API request.")
    MAX_CONCURRENT: int = opt(8, "Requests the API serves at the same time.", ge=1)
    API_ALLOWED_HOSTS: str | None = opt(None, "Comma list of Host names the API answers ('*': any; default: any with "
                                              "API_KEY, else loopback names and API_HOST).")
    API_MAX_BODY_MB: float = opt(4.0, "Largest API request body in MiB (larger: 413).", gt=0)
    API_MAX_PROMPT_TOKENS: int | None = opt(None, "Longest API prompt in tokens (default: the model's context).", ge=1)
    API_MAX_TOTAL_TOKENS: int = opt(65536, "Most tokens one API request may ask for: max_tokens x n.", ge=1)
    USE_MODELSCOPE_HUB: bool = opt(False, "Download models and datasets from ModelScope.")
    USE_OPENMIND_HUB: bool = opt(False, "Download models and datasets from Modelers (not supported: an error).")
    RECORD_VRAM: bool = opt(False, "Add vram_allocated / vram_reserved (GiB) to trainer_log.jsonl.")
    ALLOW_EXTRA_ARGS: bool = opt(False, "Turn unknown config keys from errors into warnings.")
    DISABLE_VERSION_CHECK: bool = opt(False, "Accepted for LLaMA-Factory compatibility; tuneforge pins no versions.")
    TUNEFORGE_VERBOSITY: str = opt("INFO", "Log level of tuneforge.", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    WANDB_PROJECT: str = opt("tuneforge", "Weights & Biases project.")
    LOCAL_RANK: int = opt(0, "Rank of this process on its node (set by torchrun).", ge=0)
    HF_HUB_OFFLINE: bool = opt(False, "Never contact the Hugging Face hub.")
