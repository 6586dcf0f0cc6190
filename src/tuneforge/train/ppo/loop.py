"""One PPO step for RLHF: roll out, score, shape the rewards, then a few clipped epochs over the rollouts.

The step (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"; Schulman et al. 2017,
"Proximal Policy Optimization Algorithms"), as :func:`ppo_step` runs it:

1. **Roll out** ``R = per_device_train_batch_size × gradient_accumulation_steps × ppo_buffer_size`` prompts: the
   policy generates with the ``generating`` settings (left-padded prompts, stop at the template's stop ids), in
   chunks of ``per_device_train_batch_size``.
2. **Score** every prompt + response with the reward source (``score`` per rollout).
3. **Old log-probabilities and values** of the response tokens (policy + value head, one forward), and the
   reference's log-probabilities.
4. **Rewards** ``−β·(log π − log π_ref)`` per token plus the score on the last token (optionally normalised and
   whitened); **GAE** advantages (whitened) and returns.
5. ``ppo_epochs`` passes over the rollouts in a fresh random order; each optimizer step takes
   ``per_device_train_batch_size × gradient_accumulation_steps`` rollouts in mini-batches of
   ``per_device_train_batch_size``, minimising ``policy_loss + VALUE_COEF · value_loss`` (clipped surrogate and
   clipped value error).
6. The adaptive KL controller moves β towards ``ppo_target`` with this step's KL.

Every per-token tensor is ``[B, T]`` over the shifted positions of the right-padded prompt + response rows:
position t holds what the model predicts for token t+1, so ``mask`` is 1 exactly where token t+1 is a response
token. The value ``V_t`` is the value head on the hidden state of position t (the state before that token).

The constants below are TRL's legacy ``PPOConfig`` defaults, which LLaMA-Factory's PPO ran with.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ...data.collator import PaddingCollator
from ...data.validate import DataError
from ...losses import (
    AdaptiveKLController,
    RunningMoments,
    clip_fraction,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalty_rewards,
    masked_mean,
    model_token_logps,
    score_norm,
    whiten,
)
from ...losses.ce import IGNORE_INDEX
from ...model.forward import backbone_of, unwrap_causal_lm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ...config.schema import Config

VALUE_COEF = 0.1  # weight of the value loss in the optimised loss (TRL's vf_coef)
INIT_KL_COEF = 0.2  # β_0 of the adaptive controller
KL_HORIZON = 10000  # the controller's horizon (Ziegler et al. 2019 use K_β = 0.1)
GAMMA, LAM = 1.0, 0.95  # GAE discount and λ
CLIP, VALUE_CLIP = 0.2, 0.2  # ε of the policy ratio and of the value update

# (prompt ids, response ids) -> [B] fp32 scores; see tuneforge.train.ppo.rewards.
ScoreFn = Callable[[list[list[int]], list[list[int]]], Tensor]
# a right-padded prompt+response batch -> [B, T] reference log-probabilities of its labels
ReferenceFn = Callable[[dict[str, Tensor]], Tensor]


@dataclass(frozen=True)
class PPOSettings:
    """The batch geometry and switches of a PPO step (from the config: :meth:`from_cfg`)."""

    mini_batch: int
    grad_accum: int
    buffer: int
    epochs: int
    target_kl: float
    whiten_rewards: bool = False
    normalise_scores: bool = False
    max_grad_norm: float = 1.0

    @classmethod
    def from_cfg(cls, cfg: Config) -> PPOSettings:
        ft, tr = cfg.finetuning, cfg.training
        return cls(tr.per_device_train_batch_size, tr.gradient_accumulation_steps, ft.ppo_buffer_size,
                   ft.ppo_epochs, ft.ppo_target, ft.ppo_whiten_rewards, ft.ppo_score_norm, tr.max_grad_norm)

    @property
    def rollouts(self) -> int:
        """Rollouts per PPO step: mini-batch × gradient accumulation × buffer."""
        return self.mini_batch * self.grad_accum * self.buffer


@dataclass
class PPOState:
    """What a PPO run carries from step to step besides the weights: the KL controller and score moments."""

    kl: AdaptiveKLController
    moments: RunningMoments = field(default_factory=RunningMoments)
    skipped_steps: int = 0
    consecutive_skips: int = 0

    @classmethod
    def new(cls, target_kl: float) -> PPOState:
        return cls(AdaptiveKLController(INIT_KL_COEF, target_kl, KL_HORIZON))

    def to_dict(self) -> dict[str, Any]:
        return {"kl_coef": self.kl.value, "moments": dict(vars(self.moments)), "skipped_steps": self.skipped_steps}

    def load_dict(self, saved: dict[str, Any]) -> None:
        self.kl.value = float(saved["kl_coef"])
        vars(self.moments).update(saved["moments"])  # a plain object: its attributes are its whole state
        self.skipped_steps = int(saved["skipped_steps"])


@dataclass
class Policy:
    """The trained pieces: the causal LM (PEFT-wrapped or not), its value head (``[..., H] -> [...]`` fp32), and
    how to call them.

    ``autocast`` returns the mixed-precision context of the forward passes (a no-op context in fp32).
    """

    model: nn.Module
    v_head: nn.Module
    pad_id: int
    stop_ids: list[int]
    generation: Any  # transformers.GenerationConfig
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


@dataclass
class Rollouts:
    """A PPO step's experience; every tensor has the rollouts on its first axis (see the module docstring)."""

    batch: dict[str, Tensor]
    mask: Tensor
    logprobs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    scores: Tensor
    kl: Tensor  # [B] summed log-ratio per rollout

    def rows(self, index: Tensor) -> Rollouts:
        pick = {key: value[index] for key, value in self.batch.items()}
        return Rollouts(pick, *(getattr(self, name)[index] for name in
                                ("mask", "logprobs", "values", "advantages", "returns", "scores", "kl")))


class PromptStream:
    """The prompts of step k: positions ``[k·R, (k+1)·R)`` of the epochs' seeded permutations laid end to end.

    The step number alone fixes the prompts, so a resumed run reads exactly what the interrupted one would have.
    ``rows`` is the tokenized dataset (``input_ids`` = the generation prompt); the order of epoch e is
    ``randperm(seed + e)``, or the file order with ``shuffle=False``.
    """

    def __init__(self, rows: Any, per_step: int, seed: int, shuffle: bool) -> None:
        if len(rows) == 0:
            raise DataError("stage ppo: the training set has no prompts")
        self.rows, self.per_step, self.seed, self.shuffle = rows, per_step, seed, shuffle
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            n = len(self.rows)
            gen = torch.Generator().manual_seed(self.seed + epoch)
            # one epoch's order is kept at a time: steps only move forward (a batch spans two epochs at most)
            self._orders = {epoch: torch.randperm(n, generator=gen).tolist() if self.shuffle else list(range(n))}
        return self._orders[epoch]

    def batch(self, step: int) -> list[list[int]]:
        n = len(self.rows)
        positions = range(step * self.per_step, (step + 1) * self.per_step)
        return [list(self.rows[self._order(pos // n)[pos % n]]["input_ids"]) for pos in positions]

    def epoch(self, steps_done: int) -> float:
        """Epochs of prompts read after ``steps_done`` steps."""
        return steps_done * self.per_step / len(self.rows)

    def steps(self, epochs: float) -> int:
        """PPO steps that read ``epochs`` epochs of prompts (at least 1)."""
        return max(1, math.ceil(epochs * len(self.rows) / self.per_step))


def generation_config(cfg: Config, tokenizer: Tokenizer, stop_ids: list[int]):
    """The rollout ``GenerationConfig``: the ``generating`` group, stopping at ``stop_ids``, KV cache on."""
    from transformers import GenerationConfig

    gen = cfg.generating
    length = {"max_new_tokens": gen.max_new_tokens} if gen.max_new_tokens else {"max_length": gen.max_length}
    sampling = {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k} if gen.do_sample else {}
    return GenerationConfig(do_sample=gen.do_sample, repetition_penalty=gen.repetition_penalty, num_beams=1,
                            eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, use_cache=True, **length,
                            **sampling)


# ---- rollout -------------------------------------------------------------------------------------------------------


def cut_at_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """The response up to and including its first stop token (all of it when none was generated)."""
    stops = set(stop_ids)
    for i, token in enumerate(tokens):
        if token in stops:
            return list(tokens[: i + 1])
    return list(tokens)


@torch.no_grad()
def generate(policy: Policy, prompts: list[list[int]]) -> list[list[int]]:
    """Sample one response per prompt (left-padded batch, eval mode, KV cache on), cut at the first stop id."""
    batch = PaddingCollator(policy.pad_id, padding_side="left")([{"input_ids": p} for p in prompts])
    device = next(policy.model.parameters()).device
    was_training = policy.model.training
    policy.model.eval()  # activation checkpointing would switch the KV cache off in train mode
    try:
        with policy.autocast():
            out = policy.model.generate(input_ids=batch["input_ids"].to(device),
                                        attention_mask=batch["attention_mask"].to(device),
                                        generation_config=policy.generation)
    finally:
        policy.model.train(was_training)
    width = batch["input_ids"].shape[1]
    return [cut_at_stop(row, policy.stop_ids) for row in out[:, width:].tolist()]


def assemble(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``prompt + response`` rows; ``labels`` are the response tokens (the prompt is -100)."""
    rows = [{"input_ids": p + r, "labels": [IGNORE_INDEX] * len(p) + r} for p, r in zip(prompts, responses,
                                                                                         strict=True)]
    return PaddingCollator(pad_id)(rows)


def forward(policy: Policy, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``(logprobs, values, mask)`` of a right-padded batch, from one forward of the policy.

    Log-probabilities come chunked through :func:`tuneforge.losses.model_token_logps`; the value head reads the
    same forward's last hidden state (a hook on the backbone), in fp32.
    """
    captured: list[Tensor] = []

    def keep_hidden(_module, _args, output):
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = backbone_of(unwrap_causal_lm(policy.model)).register_forward_hook(keep_hidden)
    try:
        with policy.autocast():
            logprobs, labels = model_token_logps(policy.model, batch)
    finally:
        handle.remove()
    return logprobs, policy.v_head(captured[-1]), labels != IGNORE_INDEX


def _chunks(batch: dict[str, Tensor], size: int) -> Iterator[dict[str, Tensor]]:
    total = batch["input_ids"].shape[0]
    for start in range(0, total, size):
        yield {key: value[start : start + size] for key, value in batch.items()}


@torch.no_grad()
def _evaluate(policy: Policy, reference: ReferenceFn, batch: dict[str, Tensor], size: int
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    parts = []
    for chunk in _chunks(batch, size):
        logprobs, values, mask = forward(policy, chunk)
        with policy.autocast():
            ref = reference(chunk)
        parts.append((logprobs, values, mask, ref.to(logprobs.device)))
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def shape_rewards(scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, values: Tensor, mask: Tensor,
                  settings: PPOSettings, state: PPOState) -> tuple[Tensor, Tensor, Tensor]:
    """``(advantages, returns, kl per rollout)``: score norm → KL-penalised rewards → whitening → GAE.

    Score normalisation uses the running moments of every score so far (updated with this batch first, as TRL's
    ``use_score_norm``); rewards are whitened without shifting their mean; advantages are whitened.
    """
    if settings.normalise_scores:
        mean, std = state.moments.update(scores)
        scores = score_norm(scores, mean, std)
    rewards, kl = kl_penalty_rewards(scores, logprobs, ref_logprobs, mask, kl_coef=state.kl.value)
    if settings.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = gae(rewards, values, mask, gamma=GAMMA, lam=LAM)
    return whiten(advantages, mask), returns, kl.sum(-1)


def collect(policy: Policy, prompts: list[list[int]], score: ScoreFn, reference: ReferenceFn,
            settings: PPOSettings, state: PPOState) -> Rollouts:
    """Steps 1-4 of the module docstring for ``prompts``; nothing here has a gradient."""
    responses: list[list[int]] = []
    for start in range(0, len(prompts), settings.mini_batch):
        responses += generate(policy, prompts[start : start + settings.mini_batch])
    device = next(policy.model.parameters()).device
    batch = {key: value.to(device) for key, value in assemble(prompts, responses, policy.pad_id).items()}
    scores = torch.as_tensor(score(prompts, responses), dtype=torch.float32).to(device)
    logprobs, values, mask, ref = _evaluate(policy, reference, batch, settings.mini_batch)
    advantages, returns, kl = shape_rewards(scores, logprobs, ref, values, mask, settings, state)
    return Rollouts(batch, mask, logprobs, values, advantages, returns, scores, kl)


# ---- update --------------------------------------------------------------------------------------------------------


def minibatch_loss(policy: Policy, rollouts: Rollouts) -> tuple[Tensor, dict[str, Tensor]]:
    """``policy_loss + VALUE_COEF · value_loss`` of one mini-batch, each a mean over its response tokens."""
    logprobs, values, _ = forward(policy, rollouts.batch)
    mask = rollouts.mask
    policy_loss = masked_mean(clipped_policy_loss(logprobs, rollouts.logprobs, rollouts.advantages, mask,
                                                  clip=CLIP), mask)
    value_loss = masked_mean(clipped_value_loss(values, rollouts.values, rollouts.returns, mask,
                                                clip=VALUE_CLIP), mask)
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
             "clipfrac": clip_fraction(logprobs, rollouts.logprobs, mask, clip=CLIP)}
    return policy_loss + VALUE_COEF * value_loss, stats


def _optimizer_step(optimizer: torch.optim.Optimizer, settings: PPOSettings) -> bool:
    """Clip and apply the gradients; a non-finite gradient norm skips the update (the gradients are dropped)."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    max_norm = settings.max_grad_norm if settings.max_grad_norm and settings.max_grad_norm > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
    finite = bool(torch.isfinite(norm))
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return finite


def optimise(policy: Policy, optimizer: torch.optim.Optimizer, rollouts: Rollouts, settings: PPOSettings,
             state: PPOState) -> dict[str, float]:
    """Step 5: ``ppo_epochs`` shuffled passes; returns the mean of each mini-batch statistic.

    A non-finite gradient skips that optimizer update (counted in ``state.skipped_steps``); the caller decides
    when a streak of them ends the run.
    """
    total = rollouts.scores.shape[0]
    per_update = settings.mini_batch * settings.grad_accum
    sums: dict[str, float] = {}
    count = 0
    for _ in range(settings.epochs):
        order = torch.randperm(total, device=rollouts.scores.device)
        for start in range(0, total, per_update):
            parts = order[start : start + per_update].split(settings.mini_batch)
            for index in parts:
                loss, stats = minibatch_loss(policy, rollouts.rows(index))
                (loss / len(parts)).backward()
                for key, value in stats.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                count += 1
            finite = _optimizer_step(optimizer, settings)
            state.skipped_steps += not finite
            state.consecutive_skips = 0 if finite else state.consecutive_skips + 1
    return {key: value / max(count, 1) for key, value in sums.items()}


def ppo_step(policy: Policy, optimizer: torch.optim.Optimizer, prompts: list[list[int]], score: ScoreFn,
             reference: ReferenceFn, settings: PPOSettings, state: PPOState) -> dict[str, float]:
    """One PPO step on ``prompts`` (see the module docstring); returns its statistics.

    Keys: ``reward`` (mean raw score), ``kl`` (mean summed log-ratio per rollout), ``kl_coef`` (β used this
    step), ``policy_loss``, ``value_loss``, ``loss`` (= policy_loss + VALUE_COEF · value_loss), ``clipfrac``,
    ``response_length`` (mean generated tokens) and ``tokens`` (real tokens of the rollouts).
    """
    beta = state.kl.value
    rollouts = collect(policy, prompts, score, reference, settings, state)
    stats = optimise(policy, optimizer, rollouts, settings, state)
    kl = float(rollouts.kl.mean())
    state.kl.update(kl, len(prompts))
    stats["loss"] = stats["policy_loss"] + VALUE_COEF * stats["value_loss"]
    stats.update(reward=float(rollouts.scores.mean()), kl=kl, kl_coef=beta,
                 response_length=float(rollouts.mask.sum(-1).float().mean()),
                 tokens=float(rollouts.batch["attention_mask"].sum()))
    return stats
