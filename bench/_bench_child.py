"""One benchmark run in its own process: tuneforge, LLaMA-Factory or a plain HF+PEFT loop, timed identically.

Started by ``scenarios.py``, never by hand::

    python bench/_bench_child.py --framework tuneforge --config cfg.json --result res.json

``cfg.json``: ``{"train": {LLaMA-Factory-style keys}, "bench": {"warmup", "steps", "pad_id", "launch_ts",
"device"}}``. ``res.json`` is always written (also when the run fails): ``status`` ("ok" or "error: ..."), the
measured numbers, ``versions`` and ``device``; a provisional one ("finishing: ...") right after the last timed step,
so a run killed while saving or exiting keeps its numbers.

Measurement (benchmark instrumentation only, no product code is changed): ``transformers.Trainer.training_step`` is
wrapped for every Trainer-based run. Micro-batch ``i`` (0-based; gradient accumulation is 1, so it is step ``i+1``)
is counted when ``warmup <= i < steps``: real tokens ``(input_ids != pad_id).sum()`` and supervised tokens
``(labels != -100).sum()`` stay on the device, as does the returned loss. The clock (``torch.cuda.synchronize()``
then ``time.perf_counter()``) starts at the end of step ``warmup`` and stops at the end of step ``steps`` (a
``TrainerCallback.on_step_end`` added at the first ``training_step``), so the window holds exactly the timed steps
``warmup+1..steps``, data loading and optimizer steps included. The HF loop does the same in its own loop.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
import time
import traceback
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VERSIONED = ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "liger_kernel", "llamafactory",
             "tuneforge")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _acc(total, value):
    """Running sum of device tensors (no host sync)."""
    return value if total is None else total + value.to(total.device)


def real_tokens(inputs, pad_id: int):
    """Non-pad tokens of a batch: ``input_ids``, or every ``*input_ids`` column when there is none."""
    keys = ["input_ids"] if "input_ids" in inputs else [k for k in inputs if k.endswith("input_ids")]
    return sum((inputs[k] != pad_id).sum() for k in keys)


class Meter:
    """Counts, clock and memory of one run (see the module docstring)."""

    def __init__(self, warmup: int, steps: int, pad_id: int, launch_ts: float) -> None:
        self.warmup, self.steps, self.pad_id, self.launch_ts = warmup, steps, pad_id, launch_ts
        self.calls = 0
        self.tokens = self.supervised = self.loss = None
        self.t0 = self.t1 = self.startup_s = self.trainable = None
        self.memory: dict[str, float] = {}
        self.on_end = None  # called after the last timed step (writes a provisional result)

    def first_step(self, model) -> None:
        """At the first training step: start-up time since launch, trainable parameters."""
        self.startup_s = time.time() - self.launch_ts
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def count(self, inputs) -> bool:
        """Count one micro-batch; True when it belongs to the timed window."""
        index, self.calls = self.calls, self.calls + 1
        if not self.warmup <= index < self.steps:
            return False
        self.tokens = _acc(self.tokens, real_tokens(inputs, self.pad_id))
        if "labels" in inputs:
            self.supervised = _acc(self.supervised, (inputs["labels"] != -100).sum())
        return True

    def add_loss(self, loss) -> None:
        self.loss = _acc(self.loss, loss.detach().float())

    def mark_start(self) -> None:
        _sync()
        self.t0 = time.perf_counter()

    def mark_end(self) -> None:
        _sync()
        self.t1 = time.perf_counter()
        self.memory = _peak_memory()
        if self.on_end is not None:
            self.on_end()

    def summary(self) -> dict:
        """The measured numbers (host syncs happen only here)."""
        out = {"startup_s": self.startup_s, "trainable_params": self.trainable, "micro_batches": self.calls,
               **(self.memory or _peak_memory())}
        timed = self.steps - self.warmup
        if self.t0 is None or self.t1 is None or self.tokens is None:
            return out
        seconds = self.t1 - self.t0
        tokens = int(self.tokens)
        out.update(timed_steps=timed, timed_s=seconds, tokens_per_step=tokens / timed, tokens_per_s=tokens / seconds)
        if self.supervised is not None:
            out["supervised_tokens_per_s"] = int(self.supervised) / seconds
        if self.loss is not None:
            out["mean_loss"] = float(self.loss) / timed
        return out


def _peak_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def instrument_trainer(meter: Meter) -> None:
    """Wrap ``transformers.Trainer.training_step`` (class attribute, so every subclass not overriding it)."""
    from transformers import Trainer, TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == meter.warmup:
                meter.mark_start()
            elif state.global_step == meter.steps:
                meter.mark_end()

    original = Trainer.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        if meter.calls == 0:
            meter.first_step(self.model)
            self.add_callback(Clock())
        timed = meter.count(inputs)
        loss = original(self, model, inputs, *args, **kwargs)
        if timed:
            meter.add_loss(loss)
        return loss

    Trainer.training_step = training_step


def run_tuneforge(train: dict, bench: dict, meter: Meter) -> None:
    """tuneforge's train path: ``resolve`` then ``stage_runner(stage)(config)``; config errors raise."""
    from tuneforge.commands.common import setup_logging
    from tuneforge.config.loader import resolve
    from tuneforge.train import stage_runner

    setup_logging("INFO")  # as `tuneforge train` does: the start-up split and the kernels chosen are logged
    instrument_trainer(meter)
    res = resolve(train, environ={})
    if res.errors:
        raise RuntimeError("config errors: " + "; ".join(f"{d.key}: {d.message}" for d in res.errors))
    stage_runner(res.config.finetuning.stage)(res.config)


def run_llamafactory(train: dict, bench: dict, meter: Meter) -> None:
    """LLaMA-Factory 0.9.5's ``run_exp`` with the same dict (``DISABLE_VERSION_CHECK=1``)."""
    os.environ["DISABLE_VERSION_CHECK"] = "1"
    instrument_trainer(meter)
    from llamafactory.train.tuner import run_exp

    run_exp(dict(train))


def hf_batches(tokenizer, train: dict, n_batches: int) -> list[dict]:
    """Padded batches from the scenario's sharegpt JSON: chat template, cut to cutoff_len, labels = ids (pad → -100).

    Rows are taken in file order and reused cyclically when the file has fewer than ``n_batches`` batches.
    """
    import torch

    info = json.loads((Path(train["dataset_dir"]) / "dataset_info.json").read_text())[train["dataset"]]
    rows = json.loads((Path(train["dataset_dir"]) / info["file_name"]).read_text())
    roles = {"human": "user", "gpt": "assistant"}
    size, cutoff, pad = train["per_device_train_batch_size"], train["cutoff_len"], tokenizer.pad_token_id
    batches = []
    for b in range(n_batches):
        chunk = [rows[(b * size + j) % len(rows)] for j in range(size)]
        seqs = []
        for row in chunk:
            msgs = [{"role": roles[t["from"]], "content": t["value"]} for t in row["conversations"]]
            ids = tokenizer.apply_chat_template(msgs, tokenize=True)
            seqs.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids)[:cutoff])
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return batches


def hf_model(train: dict, device: str):
    """Base model (bf16 when ``train["bf16"]``, SDPA), checkpointing, LoRA r/α on all seven projections or full."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if train.get("bf16") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(train["model_name_or_path"], dtype=dtype,
                                                 attn_implementation="sdpa", device_map=device)
    model.config.use_cache = False
    if not train.get("disable_gradient_checkpointing"):
        model.gradient_checkpointing_enable()
    if train.get("finetuning_type", "lora") == "lora":
        from peft import LoraConfig, get_peft_model

        model.enable_input_require_grads()
        lora = LoraConfig(r=train["lora_rank"], lora_alpha=train["lora_alpha"], lora_dropout=0.0,
                          target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def run_hf(train: dict, bench: dict, meter: Meter) -> None:
    """Plain loop: ``model(**batch).loss.backward(); opt.step(); opt.zero_grad()`` with AdamW (fused on CUDA)."""
    import torch
    from transformers import AutoTokenizer

    device, steps = bench["device"], train["max_steps"]
    tokenizer = AutoTokenizer.from_pretrained(train["model_name_or_path"])
    batches = hf_batches(tokenizer, train, steps)
    model = hf_model(train, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=train["learning_rate"], fused=device == "cuda")
    model.train()
    meter.first_step(model)
    for i in range(steps):
        if i == meter.warmup:
            meter.mark_start()
        batch = {k: v.to(device, non_blocking=True) for k, v in batches[i].items()}
        timed = meter.count(batch)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if timed:
            meter.add_loss(loss)
    meter.mark_end()


RUNNERS = {"tuneforge": run_tuneforge, "lf": run_llamafactory, "hf": run_hf}


def versions() -> dict[str, str]:
    """Versions of the packages this process sees, plus where tuneforge / llamafactory were imported from."""
    out = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            continue
    for name in ("tuneforge", "llamafactory"):
        if name in sys.modules:
            module = sys.modules[name]
            out[name] = getattr(module, "__version__", out.get(name, "?"))
            out[f"{name}_from"] = str(Path(module.__file__).parent)
    return out


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", required=True, help="tuneforge, lf_default, lf_tuned or hf")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.config.read_text())
    bench = spec["bench"]
    meter = Meter(bench["warmup"], bench["steps"], bench["pad_id"], bench.get("launch_ts", time.time()))
    result: dict = {"framework": args.framework}

    def write(status: str) -> None:
        result.update(meter.summary(), status=status, device=_device_name(), versions=versions())
        args.result.write_text(json.dumps(result, indent=1))

    meter.on_end = lambda: write("finishing: killed after the timed steps")
    try:
        RUNNERS[args.framework.split("_")[0]](spec["train"], bench, meter)
        status = "ok" if meter.t1 is not None else f"error: timing window not reached ({meter.calls} steps)"
    except BaseException as err:  # SystemExit from a framework's CLI path must become a result too
        traceback.print_exc()
        status = f"error: {type(err).__name__}: {str(err).strip()[:300]}"
    write(status)
    print(f"bench result: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
