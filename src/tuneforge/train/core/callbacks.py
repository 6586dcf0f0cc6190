"""Callbacks every tuneforge run carries: the non-finite guard, the run meter, ``trainer_log.jsonl`` and the bar.

All of them use only the public ``TrainerCallback`` events of transformers; none touches the Trainer's internals.

* :class:`NonFiniteGuard` - a non-finite loss or gradient skips that optimizer update (``on_pre_optimizer_step``
  drops the gradients, so ``optimizer.step()`` leaves parameters and optimizer state alone); after
  :data:`MAX_NONFINITE_STEPS` such steps in a row the run stops with :class:`TrainingError`.
* :class:`RunMeter` - real (non-padding) tokens, tokens/s, stage metrics and eval token accuracy.
* :class:`TrainerLogWriter` - one JSON line per log event, with LLaMA-Factory's ``trainer_log.jsonl`` fields.
* :class:`TokenProgressBar` - a tqdm bar with ETA, loss, learning rate and tokens/s (replaces HF's bar).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# Consecutive non-finite optimizer steps tolerated before the run is stopped (the one place this number lives).
MAX_NONFINITE_STEPS = 5
TRAINER_LOG = "trainer_log.jsonl"

ReduceFn = Callable[[torch.Tensor], torch.Tensor]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps); the message names the step."""


def _no_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _first_nonfinite_grad(model: torch.nn.Module | None) -> str | None:
    """Name of the first parameter whose gradient holds NaN/inf (only computed on the error path)."""
    if model is None:
        return None
    for name, param in model.named_parameters():
        if param.grad is not None and not torch.isfinite(param.grad).all():
            return name
    return None


class NonFiniteGuard(TrainerCallback):
    """Skip optimizer updates whose loss or gradient is NaN/inf; stop after ``max_consecutive`` in a row.

    The trainer reports each micro-batch loss with :meth:`observe_loss`. Just before ``optimizer.step()`` the
    guard checks those losses and the gradient norm of every parameter the optimizer owns; if anything is
    non-finite (on any rank: the flag is summed across processes so all ranks decide alike) it sets the gradients
    to ``None``, which every torch optimizer treats as "no update" (moments and step counts unchanged too).

    What still advances on a skipped step: the global step and the learning-rate schedule (the batch was
    consumed, and keeping the step counter tied to the data keeps resume positions exact).

    Under fp16 mixed precision the GradScaler owns overflow handling (inf gradients are routine while it
    calibrates), so only the loss is checked and the scaler is left to skip the update.

    While a streak of skipped steps lasts, scheduled checkpoint saves are withheld (``on_step_end``): such a
    checkpoint would be resumed straight back into the failure. A save requested by SIGTERM still happens.
    Under DeepSpeed, which keeps gradients to itself, only the loss is checked.

    Raises:
        TrainingError: from ``on_pre_optimizer_step`` when ``max_consecutive`` consecutive steps were non-finite;
            it is raised before the save of that step, so no checkpoint is written from the bad region.
    """

    def __init__(self, reduce_sum: ReduceFn = _no_reduce, max_consecutive: int = MAX_NONFINITE_STEPS) -> None:
        self.reduce_sum = reduce_sum
        self.max_consecutive = max_consecutive
        self.skipped_steps = 0
        self.consecutive = 0
        self._loss_bad: torch.Tensor | None = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Remember whether this micro-batch loss is finite (no host sync; checked once per optimizer step)."""
        bad = (~torch.isfinite(loss.detach())).any()
        self._loss_bad = bad if self._loss_bad is None else self._loss_bad | bad

    def _grads_bad(self, optimizer: Any) -> torch.Tensor | None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return None
        total = torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False)
        return ~torch.isfinite(total)

    def _step_is_bad(self, args: Any, optimizer: Any) -> tuple[bool, bool]:
        flags = torch.zeros(2, dtype=torch.int64, device=args.device)
        if self._loss_bad is not None:
            flags[0] = self._loss_bad.to(args.device)
        grads_bad = None if args.fp16 or optimizer is None else self._grads_bad(optimizer)
        if grads_bad is not None:
            flags[1] = grads_bad.to(args.device)
        loss_bad, grads_bad = self.reduce_sum(flags).tolist()  # one host sync per optimizer step
        return loss_bad > 0, grads_bad > 0

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        loss_bad, grads_bad = self._step_is_bad(args, optimizer)
        self._loss_bad = None
        if not (loss_bad or grads_bad):
            self.consecutive = 0
            return
        self.skipped_steps += 1
        self.consecutive += 1
        step = state.global_step + 1
        if self.consecutive >= self.max_consecutive:
            raise TrainingError(self._message(step, args, model, loss_bad))
        if optimizer is not None and not args.fp16:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        # A checkpoint taken inside a non-finite streak would be resumed straight back into it; wait for a finite
        # step. (A stop requested by SIGTERM still saves: CheckpointCallback runs after this callback.)
        if self.consecutive and control.should_save:
            logger.warning("not saving checkpoint-%d: the last %d step(s) were non-finite and skipped",
                           state.global_step, self.consecutive)
            control.should_save = False

    def _message(self, step: int, args: Any, model: Any, loss_bad: bool) -> str:
        what = "the loss" if loss_bad else "a gradient"
        where = _first_nonfinite_grad(model)
        detail = f"; first non-finite gradient: {where}" if where else ""
        return (
            f"training stopped at step {step} on rank {args.process_index}: {self.consecutive} consecutive optimizer "
            f"steps had a non-finite loss or gradient (this one: {what}{detail}). Parameters are those of the last "
            "finite step. Lower learning_rate, check the data of these steps, or use bf16 instead of fp16."
        )


class RunMeter(TrainerCallback):
    """Counts what the trainer saw and turns it into log fields.

    * real tokens: the 0/1 ``attention_mask`` sum; every position of an unpadded stream (``cu_seq_lens_q``);
      else ``input_ids != pad_token_id`` (packed rows carry no 2-D mask), else every position. Kept in
      ``state.num_input_tokens_seen`` so the total survives resume.
    * stage metrics: scalars a stage's loss returns, averaged over the micro-batches since the last log; a value
      made by :func:`ratio` ``(total, count)`` is logged as Σtotal / Σcount over the micro-batches and ranks, and
      left out when the count is 0 (KTO's ``rewards/chosen`` averages over desirable examples, which a micro-batch
      may not hold). ``derive(metrics)`` adds metrics computed from the logged ones (``rewards/margins``).
    * eval token accuracy: correct / trained tokens, summed over the whole evaluation (all ranks).

    Device tensors accumulate without host syncs; they are folded when the trainer logs, saves, evaluates or stops.
    """

    def __init__(self, reduce_sum: ReduceFn = _no_reduce, pad_token_id: int | None = None,
                 derive: Callable[[dict[str, float]], dict[str, float]] | None = None) -> None:
        self.reduce_sum = reduce_sum
        self.pad_token_id = pad_token_id
        self.derive = derive
        self._tokens: torch.Tensor | None = None
        self._pending: torch.Tensor | None = None
        self._sums: dict[bool, dict[str, torch.Tensor]] = {True: {}, False: {}}
        self._counts: dict[bool, int] = {True: 0, False: 0}
        self._accuracy: torch.Tensor | None = None
        self.session_start = time.time()
        self.session_tokens_start = 0

    def real_tokens(self, batch: Mapping[str, Any]) -> torch.Tensor:
        mask = batch.get("attention_mask")
        ids = batch["input_ids"]
        if torch.is_tensor(mask) and mask.dim() == 2:
            return mask.sum()
        if "cu_seq_lens_q" in batch:  # an unpadded stream: every position is a token, pad-id tokens (EOS) included
            return torch.tensor(ids.numel(), device=ids.device)
        if self.pad_token_id is not None:
            return (ids != self.pad_token_id).sum()
        return torch.tensor(ids.numel(), device=ids.device)

    def add_batch(self, batch: Mapping[str, Any]) -> None:
        count = self.real_tokens(batch)
        self._tokens = count if self._tokens is None else self._tokens + count

    def add_metrics(self, metrics: Mapping[str, Any], training: bool) -> None:
        sums = self._sums[training]
        for key, value in _flatten_ratios(metrics).items():
            value = torch.as_tensor(value).detach().float().mean()
            sums[key] = value if key not in sums else sums[key] + value.to(sums[key].device)
        self._counts[training] += 1

    def add_accuracy(self, correct: torch.Tensor, total: torch.Tensor) -> None:
        pair = torch.stack([correct.detach().float(), total.detach().float()])
        self._accuracy = pair if self._accuracy is None else self._accuracy + pair

    def on_train_begin(self, args, state, control, **kwargs):
        self.session_start = time.time()
        self.session_tokens_start = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        # The token count stays on the device between logs, saves and evaluations: a host sync every step would
        # stall the GPU at each step boundary. The control flags are the same on every rank, so the collective
        # calls pair up. Run after the callbacks that request saves (SIGTERM) so that no save misses the count.
        if self._tokens is not None:
            self._pending = self._tokens if self._pending is None else self._pending + self._tokens
            self._tokens = None
        flush = control.should_log or control.should_save or control.should_evaluate or control.should_training_stop
        if flush or state.global_step >= state.max_steps:
            pending = torch.zeros((), dtype=torch.int64) if self._pending is None else self._pending
            state.num_input_tokens_seen += int(self.reduce_sum(pending.to(args.device)).item())
            self._pending = None

    def tokens_per_second(self, state: Any) -> float:
        elapsed = max(time.time() - self.session_start, 1e-9)
        return round((state.num_input_tokens_seen - self.session_tokens_start) / elapsed, 2)

    def pop_metrics(self, training: bool) -> dict[str, float]:
        """Each stage metric since the last call (mean, or exact ratio), over all ranks (all ranks must call)."""
        sums, count = self._sums[training], self._counts[training]
        self._sums[training], self._counts[training] = {}, 0
        if not sums:
            return {}
        keys = sorted(sums)
        device = sums[keys[0]].device
        packed = torch.stack([sums[k].to(device) for k in keys] + [torch.tensor(float(count), device=device)])
        packed = self.reduce_sum(packed).tolist()
        out = _fold_ratios({k: v / max(packed[-1], 1.0) for k, v in zip(keys, packed[:-1], strict=True)})
        if self.derive is not None:
            out.update(self.derive(out))
        return out

    def pop_accuracy(self) -> float | None:
        """Token accuracy of the evaluation just finished, or None when it was not measured."""
        if self._accuracy is None:
            return None
        correct, total = self.reduce_sum(self._accuracy).tolist()
        self._accuracy = None
        return correct / total if total else None


_NUM, _DEN = "::sum", "::count"


def ratio(total: torch.Tensor, count: torch.Tensor | int) -> dict[str, torch.Tensor]:
    """A stage metric that :class:`RunMeter` logs as Σtotal / Σcount over the log window and all ranks."""
    return {_NUM: total.detach().float(), _DEN: torch.as_tensor(count, dtype=torch.float32)}


def _flatten_ratios(metrics: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update({key + part: value[part] for part in (_NUM, _DEN)})
        else:
            flat[key] = value
    return flat


def _fold_ratios(logged: dict[str, float]) -> dict[str, float]:
    # Both sums were divided by the same micro-batch count, so their quotient is the exact ratio.
    out = {k: v for k, v in logged.items() if not k.endswith((_NUM, _DEN))}
    for key in (k[: -len(_NUM)] for k in logged if k.endswith(_NUM)):
        if logged[key + _DEN] > 0:
            out[key] = logged[key + _NUM] / logged[key + _DEN]
    return out


def _vram_fields() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    gib = 1024**3
    return {
        "vram_allocated": round(torch.cuda.memory_allocated() / gib, 2),
        "vram_reserved": round(torch.cuda.memory_reserved() / gib, 2),
    }


class TrainerLogWriter(TrainerCallback):
    """Append one JSON line per log event to ``<output_dir>/trainer_log.jsonl`` (world process zero only).

    Fields follow LLaMA-Factory's LogCallback: ``current_steps, total_steps, loss, eval_loss, predict_loss,
    reward, accuracy (= rewards/accuracies), lr, epoch, percentage, elapsed_time, remaining_time`` plus
    ``throughput`` (real tokens/s of this session), ``total_tokens``, ``skipped_steps``, any ``extra_keys`` and,
    with ``record_vram``, ``vram_allocated``/``vram_reserved`` (GiB). As in LLaMA-Factory, fields without a value
    are left out of a line, so a training line has no ``eval_loss`` and an evaluation line no ``loss``.

    Times are ``H:MM:SS``; the remaining time extrapolates the pace of this session (not of resumed steps).
    On resume, lines past the resumed step (written after the checkpoint by the interrupted run) are dropped.
    """

    def __init__(self, record_vram: bool = False, extra_keys: tuple[str, ...] = ()) -> None:
        self.record_vram = record_vram
        self.extra_keys = extra_keys  # more log keys to copy into each line (PPO's statistics)
        self.start_time = time.time()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = time.time()
        self.start_step = state.global_step
        if state.is_world_process_zero and state.global_step > 0:
            _truncate_log(Path(args.output_dir) / TRAINER_LOG, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = {key: value for key, value in self._fields(state, logs).items() if value is not None}
        path = Path(args.output_dir) / TRAINER_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    def _fields(self, state: Any, logs: Mapping[str, Any]) -> dict[str, Any]:
        elapsed = time.time() - self.start_time
        done = state.global_step - self.start_step
        total = state.max_steps or 0
        remaining = elapsed / done * (total - state.global_step) if done > 0 else 0.0
        fields = {
            "current_steps": state.global_step,
            "total_steps": total,
            "loss": logs.get("loss"),
            "eval_loss": logs.get("eval_loss"),
            "predict_loss": logs.get("predict_loss"),
            "reward": logs.get("reward"),
            "accuracy": logs.get("rewards/accuracies"),
            "lr": logs.get("learning_rate"),
            "epoch": logs.get("epoch", state.epoch),
            "percentage": round(state.global_step / total * 100, 2) if total else 100.0,
            "elapsed_time": str(timedelta(seconds=int(elapsed))),
            "remaining_time": str(timedelta(seconds=int(max(remaining, 0.0)))),
            "throughput": logs.get("throughput"),
            "total_tokens": logs.get("total_tokens"),
            "skipped_steps": logs.get("skipped_steps"),
        }
        fields.update({key: logs.get(key) for key in self.extra_keys if key not in fields})
        if self.record_vram:
            fields.update(_vram_fields())
        return fields


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop lines logged after ``last_step``: the resumed run logs those steps again."""
    if not path.is_file():
        return
    kept = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(raw).get("current_steps", 0) <= last_step:
                kept.append(raw)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _short(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return value


class TokenProgressBar(TrainerCallback):
    """tqdm bar over optimizer steps with ETA, loss, learning rate and real tokens/s; log lines printed above it.

    Starts at the resumed step, so the ETA covers only what is left. Evaluation gets its own transient bar.
    """

    def __init__(self) -> None:
        self.bar = None
        self.eval_bar = None
        self.postfix: dict[str, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        from tqdm.auto import tqdm

        if not state.is_world_process_zero or eval_dataloader is None or not hasattr(eval_dataloader, "__len__"):
            return
        if self.eval_bar is None:
            self.eval_bar = tqdm(total=len(eval_dataloader), leave=self.bar is None, dynamic_ncols=True, desc="eval")
        self.eval_bar.update(1)

    def _close_eval(self) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None

    def on_evaluate(self, args, state, control, **kwargs):
        self._close_eval()

    def on_predict(self, args, state, control, **kwargs):
        self._close_eval()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = {key: _short(value) for key, value in logs.items() if key != "total_flos"}
        if self.bar is None:
            print(shown)
            return
        if "loss" in logs:
            self.postfix = {"loss": shown["loss"], "lr": _short(logs.get("learning_rate")),
                            "tok/s": logs.get("throughput")}
            self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.write(str(shown))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
