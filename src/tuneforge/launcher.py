"""Re-launch ``tuneforge train`` under torchrun when several processes are wanted (LLaMA-Factory's env variables).

``FORCE_TORCHRUN=1`` always re-launches; otherwise a machine with more than one visible GPU does, unless this
process already is a torchrun worker. The arguments are passed as a list (never through a shell), so values with
spaces survive (LLaMA-Factory re-joins them with spaces).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence

from .config.groups.env import EnvArgs


def _visible_gpus() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def should_relaunch(env: EnvArgs) -> bool:
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return False
    return env.FORCE_TORCHRUN or env.NNODES > 1 or _visible_gpus() > 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(env: EnvArgs, argv: Sequence[str]) -> list[str]:
    """The torchrun command line for ``tuneforge <argv>``."""
    nproc = env.NPROC_PER_NODE or max(1, _visible_gpus())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(env.NNODES),
           "--node_rank", str(env.NODE_RANK), "--nproc_per_node", str(nproc),
           "--master_addr", env.MASTER_ADDR, "--master_port", str(env.MASTER_PORT or _free_port())]
    if env.RDZV_ID:
        nodes = f"{env.MIN_NNODES or env.NNODES}:{env.MAX_NNODES or env.NNODES}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", nodes, "--nproc_per_node", str(nproc),
               "--rdzv_id", env.RDZV_ID, "--rdzv_backend", "c10d",
               "--rdzv_endpoint", f"{env.MASTER_ADDR}:{env.MASTER_PORT or 29500}",
               "--max_restarts", str(env.MAX_RESTARTS)]
    return [*cmd, "-m", "tuneforge", *argv]


def relaunch(env: EnvArgs, argv: Sequence[str]) -> int:
    """Run ``tuneforge <argv>`` under torchrun and return its exit code."""
    child_env = dict(os.environ)
    if env.OPTIM_TORCH:
        child_env.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        child_env.setdefault("TORCH_NCCL_AVOID_RECORD_STREAMS", "1")
    return subprocess.run(torchrun_command(env, argv), env=child_env, check=False).returncode
