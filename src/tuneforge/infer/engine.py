"""One generation engine behind ``chat``, ``api`` and ``predict``: same template, same stop ids, same settings.

The prompt is rendered by the training template (:meth:`Template.render_prompt`), so inference sees exactly the
tokens training saw. Generation stops on the template's stop ids (EOS plus its stop words, e.g. ``<|im_end|>``),
never on whatever ``generation_config`` the base model shipped, and on optional stop strings. Decoding defaults
come from ``cfg.generating``; a call may override max tokens, temperature, top-p and stop strings.

The engine holds no lock: several threads may generate at once (torch releases the GIL inside its kernels), each
with its own streamer and stopping criteria. Callers bound the concurrency (the API server's semaphore).

>>> engine = Engine.from_config(cfg)
>>> engine.complete([{"role": "user", "content": "Hi"}])[0].text
>>> for delta in engine.stream([{"role": "user", "content": "Hi"}]): print(delta, end="")
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .literal import encode_literal
from .streaming import IncrementalDecoder, QueueStreamer, StopCriteria, StopTrimmer, find_stop

logger = logging.getLogger(__name__)
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one call: ``cfg.generating`` plus a request's overrides.

    ``max_new_tokens == 0`` means "up to ``max_length`` tokens in all" (prompt included), as in LLaMA-Factory.
    """

    max_new_tokens: int = 1024
    max_length: int = 1024
    do_sample: bool = True
    temperature: float = 0.95
    top_p: float = 0.7
    top_k: int = 50
    num_beams: int = 1
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    stop: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, generating: Any) -> SamplingParams:
        """From the ``generating`` group of a resolved config."""
        names = [f.name for f in dataclasses.fields(cls) if f.name != "stop"]
        return cls(**{name: getattr(generating, name) for name in names})

    def override(self, *, max_tokens: int | None = None, temperature: float | None = None,
                 top_p: float | None = None, stop: Sequence[str] | None = None) -> SamplingParams:
        """A copy with a request's values; ``temperature == 0`` means greedy decoding (OpenAI semantics)."""
        changes: dict[str, Any] = {}
        if max_tokens is not None:
            changes["max_new_tokens"] = max_tokens
        if temperature is not None:
            if temperature == 0:
                changes["do_sample"] = False
            else:
                changes["temperature"] = temperature
        if top_p is not None:
            changes["top_p"] = top_p
        if stop is not None:
            changes["stop"] = tuple(stop)
        return dataclasses.replace(self, **changes)

    def new_tokens(self, prompt_len: int) -> int:
        """How many tokens a prompt of ``prompt_len`` tokens may get."""
        return self.max_new_tokens if self.max_new_tokens > 0 else max(1, self.max_length - prompt_len)


@dataclass
class Completion:
    """One generated answer: its text, why it ended (``"stop"`` or ``"length"``) and token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def model_device(model: Any) -> torch.device:
    """The device inputs go to (the first parameter's; models spread by a device map take inputs there too)."""
    return next(model.parameters()).device


def place_for_inference(model: Any) -> Any:
    """Move a plain model to the GPU when there is one (quantized / device-mapped models are already placed)."""
    if torch.cuda.is_available() and not hasattr(model, "hf_device_map") and model_device(model).type == "cpu":
        model = model.to("cuda")
    return model


class Engine:
    """Generation with one model, tokenizer and chat template (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, template: Any, params: SamplingParams | None = None, *,
                 skip_special_tokens: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.params = params or SamplingParams()
        self.skip_special_tokens = skip_special_tokens
        self.stop_ids = list(template.stop_token_ids(tokenizer)) if template is not None else []
        if not self.stop_ids and tokenizer.eos_token_id is not None:
            self.stop_ids = [tokenizer.eos_token_id]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.stop_ids or [0])[0]
        # the template's stop words that are not single tokens can only be caught in the text
        single = {tokenizer.convert_ids_to_tokens(i) for i in self.stop_ids}
        self.text_stops = tuple(w for w in (template.stop_words() if template else []) if w not in single)

    @classmethod
    def from_config(cls, cfg: Any) -> Engine:
        """Tokenizer, template and model (base + every adapter merged, eval mode) of a resolved config."""
        from ..model import load_model, load_tokenizer

        tokenizer = load_tokenizer(cfg)
        template = config_template(cfg, tokenizer)
        model = place_for_inference(load_model(cfg, tokenizer, is_trainable=False))
        return cls(model, tokenizer, template, SamplingParams.from_config(cfg.generating),
                   skip_special_tokens=cfg.generating.skip_special_tokens)

    # ------------------------------------------------------------------ prompts
    def encode(self, messages: Messages, system: str | None = None, *, literal: bool = False) -> list[int]:
        """Generation-prompt ids of a conversation ending with a user turn (``TemplateError`` if malformed).

        ``literal``: control-token strings typed in the texts stay text (for untrusted clients, see ``literal.py``).
        """
        if literal:
            return encode_literal(self.template, self.tokenizer, messages, system)
        return list(self.template.render_prompt(self.tokenizer, messages, system))

    # ------------------------------------------------------------------ whole answers
    def complete(self, messages: Messages, system: str | None = None, params: SamplingParams | None = None,
                 n: int = 1) -> list[Completion]:
        """``n`` answers to one conversation (generated as one batch)."""
        prompt = self.encode(messages, system)
        return self.generate_batch([prompt] * n, params)

    def generate_batch(self, prompts: Sequence[Sequence[int]], params: SamplingParams | None = None,
                       cancel: threading.Event | None = None) -> list[Completion]:
        """One answer per prompt (token ids), generated together with left padding; order kept."""
        params = params or self.params
        ids, mask = left_pad(prompts, self.pad_id)
        width = ids.shape[1]
        config = self._generation_config(params, width)
        criteria = StopCriteria(self.tokenizer, width, params.stop + self.text_stops, cancel)
        device = model_device(self.model)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                      generation_config=config, stopping_criteria=[criteria])
        budget = config.max_new_tokens
        rows = zip(out.tolist(), prompts, strict=True)
        return [self._finish(row[width:], len(prompt), params, budget) for row, prompt in rows]

    # ------------------------------------------------------------------ streaming
    def stream(self, messages: Messages, system: str | None = None, params: SamplingParams | None = None) -> Stream:
        """A :class:`Stream` of text deltas for one answer; generation runs in a background thread."""
        params = params or self.params
        return Stream(self, self.encode(messages, system), params)

    # ------------------------------------------------------------------ internals
    def _generation_config(self, params: SamplingParams, prompt_len: int):
        from transformers import GenerationConfig

        kwargs: dict[str, Any] = {
            "max_new_tokens": params.new_tokens(prompt_len), "do_sample": params.do_sample,
            "num_beams": params.num_beams, "repetition_penalty": params.repetition_penalty,
            "eos_token_id": list(self.stop_ids), "pad_token_id": self.pad_id, "use_cache": True,
        }
        if params.num_beams > 1:
            kwargs["length_penalty"] = params.length_penalty
        if params.do_sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        return GenerationConfig(**kwargs)

    def _finish(self, ids: list[int], prompt_len: int, params: SamplingParams, budget: int) -> Completion:
        """Cut a generated row at its first stop id / stop string and decode it."""
        stops = set(self.stop_ids)
        end = next((i for i, token in enumerate(ids) if token in stops), None)
        if end is not None:
            ids, reason = ids[:end], "stop"
        else:
            while ids and ids[-1] == self.pad_id:  # rows that ended early (stop string) are padded by generate
                ids = ids[:-1]
            reason = "length" if len(ids) >= budget else "stop"
        text = self.decode(ids)
        cut = find_stop(text, params.stop + self.text_stops)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return Completion(text, reason, prompt_len, len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=self.skip_special_tokens)


class Stream:
    """Iterate for text deltas; afterwards ``finish_reason``, ``prompt_tokens`` and ``completion_tokens`` are set.

    ``close()`` (also on ``with`` exit or garbage) stops generation and joins the thread, so an abandoned stream
    (a client that went away) frees its worker. Beam search cannot stream: it yields the whole answer once.
    """

    def __init__(self, engine: Engine, prompt: list[int], params: SamplingParams) -> None:
        self.engine, self.prompt, self.params = engine, prompt, params
        self.prompt_tokens, self.completion_tokens = len(prompt), 0
        self.finish_reason: str | None = None
        self.cancel = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        if self.params.num_beams > 1:
            yield from self._whole()
            return
        streamer = QueueStreamer()
        self._thread = threading.Thread(target=self._run, args=(streamer,), daemon=True, name="tuneforge-generate")
        self._thread.start()
        yield from self._deltas(streamer)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self.cancel.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _whole(self) -> Iterator[str]:
        [done] = self.engine.generate_batch([self.prompt], self.params, self.cancel)
        self.finish_reason, self.completion_tokens = done.finish_reason, done.completion_tokens
        if done.text:
            yield done.text

    def _run(self, streamer: QueueStreamer) -> None:
        engine, params = self.engine, self.params
        ids = torch.tensor([self.prompt], device=model_device(engine.model))
        criteria = StopCriteria(engine.tokenizer, ids.shape[1], params.stop + engine.text_stops, self.cancel)
        try:
            with torch.inference_mode():
                engine.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                                      generation_config=engine._generation_config(params, ids.shape[1]),
                                      stopping_criteria=[criteria])
        except BaseException as err:  # re-raised in the consuming thread
            self._error = err
            streamer.end()

    def _deltas(self, streamer: QueueStreamer) -> Iterator[str]:
        decoder = IncrementalDecoder(self.engine.tokenizer, self.engine.skip_special_tokens)
        trimmer = StopTrimmer(self.params.stop + self.engine.text_stops)
        stops, budget = set(self.engine.stop_ids), self.params.new_tokens(len(self.prompt))
        self.finish_reason = "length"
        while (token := streamer.queue.get()) is not None:
            if token in stops or self.cancel.is_set() or trimmer.stopped:
                self.finish_reason = "stop"
                self.cancel.set()
                continue  # drain: generate still pushes until it notices the cancel
            self.completion_tokens += 1
            text = trimmer.feed(decoder.push(token))
            if trimmer.stopped:
                self.finish_reason = "stop"
                self.cancel.set()
            if text:
                yield text
        tail = trimmer.feed(decoder.flush()) + trimmer.flush()
        if tail:
            yield tail
        if self.finish_reason == "length" and self.completion_tokens < budget:
            self.finish_reason = "stop"


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with every prompt right-aligned: ``[[5, 6], [7]] -> [[5, 6], [pad, 7]]``."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def config_template(cfg: Any, tokenizer: Any) -> Any:
    """The chat template a config trained with (``template: null`` uses the tokenizer's own chat_template)."""
    from ..data.templates import resolve_template

    data = cfg.data
    return resolve_template(data.template, tokenizer, default_system=data.default_system,
                            enable_thinking=data.enable_thinking, tool_format=data.tool_format)
