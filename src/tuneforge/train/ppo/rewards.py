"""Reward sources of stage ppo: where the score r(x, y) of each prompt + response comes from.

A source is a callable ``(prompt_ids, response_ids) -> Tensor`` of ``[B]`` fp32 scores. ``prompt_ids`` are the
rendered prompts without padding, ``response_ids`` the generated tokens up to and including the stop token.
:func:`build_reward` picks one:

* ``reward_model_type: lora`` - :class:`LoraReward`: the reward adapter (written by stage ``rm``) is loaded next
  to the policy's adapter on the same ``PeftModel`` as adapter ``"reward"``, and made active only while scoring,
  so no second copy of the base model exists (LLaMA-Factory's design);
* ``full`` - :class:`ModelReward`: a separate frozen reward model with its value head
  (:func:`tuneforge.model.value_head.load_value_head_model`, ``reward_model_adapters`` merged);
* ``api`` - :class:`ApiReward`: an HTTP endpoint (protocol in its docstring);
* a Python function - :class:`FunctionReward` (``run(cfg, reward=fn)``; tests, rule-based rewards).

Model scores are the value head at the last real token of prompt + response (InstructGPT's reward model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ...config.diagnostics import ConfigError
from ...model.errors import ModelLoadError
from ...model.value_head import ValueHead, hidden_size_of, load_value_head, load_value_head_model, score_last_tokens
from .loop import Policy, ScoreFn, assemble

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase as Tokenizer

    from ...config.schema import Config

logger = logging.getLogger(__name__)

REWARD_ADAPTER = "reward"
# fn(prompts=[str], completions=[str], completion_ids=[[int]]) -> one float per rollout (TRL's reward-function form)
RewardFn = Callable[..., Sequence[float]]


class RewardError(RuntimeError):
    """A reward source gave no usable scores (server error, wrong count, non-numbers); the message says which."""


def _checked(scores: Any, expected: int, source: str) -> Tensor:
    try:
        values = torch.as_tensor([float(s) for s in scores], dtype=torch.float32)
    except (TypeError, ValueError) as err:
        raise RewardError(f"{source}: scores must be numbers, got {scores!r:.200}") from err
    if values.numel() != expected:
        raise RewardError(f"{source}: {values.numel()} scores for {expected} rollouts")
    return values


class FunctionReward:
    """A Python reward function, called with keywords as TRL calls reward functions::

        fn(prompts=[...], completions=[...], completion_ids=[[...], ...]) -> one float per rollout

    ``prompts`` are the rendered prompts (special tokens kept, as the model saw them), ``completions`` the decoded
    responses without special tokens, ``completion_ids`` the generated ids (stop token included).
    """

    def __init__(self, fn: RewardFn, tokenizer: Tokenizer) -> None:
        self.fn, self.tokenizer = fn, tokenizer

    def __call__(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> Tensor:
        prompts = self.tokenizer.batch_decode(prompt_ids, skip_special_tokens=False)
        completions = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        scores = self.fn(prompts=prompts, completions=completions, completion_ids=response_ids)
        return _checked(scores, len(prompt_ids), f"reward function {getattr(self.fn, '__name__', self.fn)!r}")


class ApiReward:
    """Scores from an HTTP endpoint.

    Protocol: ``POST <reward_model>`` with ``Content-Type: application/json`` and the body
    ``{"model": "reward", "texts": [...], "messages": [...]}``, where each text is one rollout's prompt + response
    decoded with its special tokens (``messages`` repeats ``texts`` for servers written for LLaMA-Factory, which
    reads that key). The answer must be ``{"scores": [...]}``, one number per text, in order; any other status,
    body or count stops the run with :class:`RewardError`.
    """

    def __init__(self, url: str, tokenizer: Tokenizer, timeout: float = 300.0) -> None:
        self.url, self.tokenizer, self.timeout = url, tokenizer, timeout

    def _post(self, texts: list[str]) -> Any:
        body = json.dumps({"model": "reward", "texts": texts, "messages": texts}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise RewardError(f"reward API {self.url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as err:
            raise RewardError(f"reward API {self.url}: {err}") from err

    def __call__(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> Tensor:
        texts = self.tokenizer.batch_decode([p + r for p, r in zip(prompt_ids, response_ids, strict=True)],
                                            skip_special_tokens=False)
        answer = self._post(texts)
        if not isinstance(answer, dict) or "scores" not in answer:
            raise RewardError(f"reward API {self.url}: expected {{\"scores\": [...]}}, got {answer!r:.200}")
        return _checked(answer["scores"], len(texts), f"reward API {self.url}")


class ModelReward:
    """A frozen reward model: ``scorer(**batch) -> [B]`` (e.g. a ``ValueHeadModel``) on prompt + response rows."""

    def __init__(self, scorer: nn.Module, pad_id: int, batch_size: int,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        self.scorer, self.pad_id, self.batch_size, self.autocast = scorer, pad_id, batch_size, autocast

    def _context(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @torch.no_grad()
    def __call__(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> Tensor:
        device = next(self.scorer.parameters()).device
        scores = []
        for start in range(0, len(prompt_ids), self.batch_size):
            stop = start + self.batch_size
            batch = assemble(prompt_ids[start:stop], response_ids[start:stop], self.pad_id)
            batch = {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}
            with self._context(), self.autocast():
                scores.append(self.scorer(**batch).float().cpu())
        return torch.cat(scores)


class _AdapterScorer(nn.Module):
    """The policy's ``PeftModel`` with the reward adapter active and the reward value head."""

    def __init__(self, peft_model: nn.Module, head: ValueHead) -> None:
        super().__init__()
        self.peft_model, self.head = peft_model, head

    def forward(self, **batch: Tensor) -> Tensor:
        return score_last_tokens(self.peft_model, self.head, batch)


class LoraReward(ModelReward):
    """The reward adapter on the policy's own base: :class:`ModelReward` that swaps the active adapter.

    While scoring, adapter ``"reward"`` is active and the policy's adapter is not; afterwards the policy's adapter
    is active again, and every parameter has its former ``requires_grad`` and the model its former train/eval mode
    (PEFT's ``load_adapter`` and ``set_adapter`` change both).
    """

    def __init__(self, peft_model: nn.Module, folder: str, pad_id: int, batch_size: int,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        was_training = peft_model.training
        with _trainable_kept(peft_model):
            peft_model.load_adapter(folder, adapter_name=REWARD_ADAPTER, is_trainable=False)
        peft_model.train(was_training)  # PEFT puts the whole model in eval mode after loading a frozen adapter
        device = next(peft_model.parameters()).device
        head = ValueHead(hidden_size_of(peft_model)).to(device).requires_grad_(False)
        if not load_value_head(head, folder):
            raise ModelLoadError(f"reward_model {folder}: no value_head.safetensors (is it a stage rm adapter?)")
        super().__init__(_AdapterScorer(peft_model, head), pad_id, batch_size, autocast)
        self.peft_model = peft_model

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        with _trainable_kept(self.peft_model):
            policy_adapter = self.peft_model.active_adapter
            was_training = self.peft_model.training
            self.peft_model.set_adapter(REWARD_ADAPTER)
            self.peft_model.eval()
            try:
                yield
            finally:
                self.peft_model.set_adapter(policy_adapter)
                self.peft_model.train(was_training)


@contextlib.contextmanager
def _trainable_kept(model: nn.Module) -> Iterator[None]:
    """Restore every parameter's ``requires_grad`` on exit (PEFT adapter loading and switching change them)."""
    flags = {name: param.requires_grad for name, param in model.named_parameters()}
    try:
        yield
    finally:
        for name, param in model.named_parameters():
            if name in flags:
                param.requires_grad_(flags[name])


def on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model.to(device)``, except for bitsandbytes models, which were placed when loaded and cannot move."""
    from ...model.forward import unwrap_causal_lm
    from ...model.quantization import is_quantized

    return model if is_quantized(unwrap_causal_lm(model)) else model.to(device)


def build_reward(cfg: Config, tokenizer: Tokenizer, policy: Policy, reward: RewardFn | None = None) -> ScoreFn:
    """The run's reward source: ``reward`` if given (a function, see :class:`FunctionReward`), else by
    ``reward_model_type`` (see the module docstring).

    Raises:
        ValueError: ``reward_model_type: lora`` on a policy that is not a LoRA ``PeftModel``, or no reward at all.
    """
    ft = cfg.finetuning
    if reward is not None:
        if ft.reward_model:
            logger.info("stage ppo: using the given reward function; reward_model %s is not loaded", ft.reward_model)
        return FunctionReward(reward, tokenizer)
    if not ft.reward_model:
        raise ConfigError.of("reward_model", "stage ppo needs reward_model (a stage rm output folder, or an "
                                             "http(s) URL with reward_model_type: api)")
    if ft.reward_model_type == "api":
        return ApiReward(ft.reward_model, tokenizer)
    batch_size = cfg.training.per_device_train_batch_size
    if ft.reward_model_type == "lora":
        if not hasattr(policy.model, "load_adapter") or not hasattr(policy.model, "peft_config"):
            raise ConfigError.of("reward_model_type", "reward_model_type: lora loads the reward adapter onto the "
                                                      "policy's LoRA model, which needs finetuning_type: lora; use "
                                                      "reward_model_type: full")
        return LoraReward(policy.model, ft.reward_model, policy.pad_id, batch_size, policy.autocast)
    device = next(policy.model.parameters()).device
    scorer = load_value_head_model(cfg, tokenizer=tokenizer)
    scorer.lm = on_device(scorer.lm, device)
    scorer.v_head.to(device)
    return ModelReward(scorer, policy.pad_id, batch_size, policy.autocast)
