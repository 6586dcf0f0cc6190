"""Stage ppo end to end on the tiny model: lora / freeze / full, a reward that PPO learns, the reward sources
(function, HTTP API, LoRA and full reward models written like stage rm's), and kill-and-resume equivalence."""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.config.loader import resolve
from tuneforge.train import stage_runner
from tuneforge.train.core.checkpoints import is_complete
from tuneforge.train.ppo.loop import VALUE_COEF, PromptStream, cut_at_stop
from tuneforge.train.ppo.rewards import ApiReward, RewardError

pytestmark = pytest.mark.slow  # end-to-end runs: make test-fast skips them

REPO = Path(__file__).resolve().parents[2]
COMMON_FILES = {"trainer_log.jsonl", "all_results.json", "train_results.json", "trainer_state.json",
                "tuneforge_config.yaml", "tuneforge_run.json", "tokenizer.json", "tokenizer_config.json",
                "value_head.safetensors"}
CHECKPOINT_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "ppo_state.json", "trainer_state.json",
                    "value_head.safetensors", "tuneforge_complete.json", "tuneforge_config.yaml"}
WEIGHTS = {"lora": {"adapter_model.safetensors", "adapter_config.json"},
           "freeze": {"model.safetensors", "config.json"}, "full": {"model.safetensors", "config.json"}}


def _config(model_dir: Path, out: Path, **extra) -> dict:
    base = {
        "model_name_or_path": str(model_dir), "do_train": True, "stage": "ppo", "finetuning_type": "lora",
        # a reward function replaces it in most tests; the config still needs a (never contacted) reward model
        "reward_model": "http://127.0.0.1:9/unused", "reward_model_type": "api",
        "dataset": "quickstart_task", "dataset_dir": str(REPO / "data"), "template": "chatml", "cutoff_len": 64,
        "max_samples": 16, "output_dir": str(out), "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2,
        "ppo_epochs": 2, "max_steps": 2, "max_new_tokens": 4, "logging_steps": 1, "save_strategy": "no",
        "learning_rate": 1e-3, "report_to": "none", "disable_tqdm": True, "seed": 0, "use_cpu": True,
    }
    return {**base, **extra}


def _train(config: dict, reward=None) -> dict:
    res = resolve(config, environ={})
    assert res.errors == [], res.errors
    return stage_runner("ppo")(res.config, reward=reward)


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


def shorter(completion_ids, **_):
    """Reward −(response length): the logged reward is then minus the logged response length."""
    return [-float(len(ids)) for ids in completion_ids]


def even_tokens(completion_ids, **_):
    """+1 per generated token with an even id (0 to max_new_tokens per rollout)."""
    return [float(sum(token % 2 == 0 for token in ids)) for ids in completion_ids]


# ---- end to end ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "freeze", "full"])
def test_ppo_method_end_to_end(method, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    metrics = _train(_config(tiny_model_dir, out, finetuning_type=method, freeze_trainable_layers=1,
                             save_strategy="steps", save_steps=1, plot_loss=True), reward=shorter)
    files = {p.name for p in out.iterdir()}
    assert COMMON_FILES | WEIGHTS[method] | {"training_loss.png", "training_reward.png"} <= files, files
    for step in (1, 2):
        checkpoint = out / f"checkpoint-{step}"
        assert is_complete(checkpoint) and CHECKPOINT_FILES | WEIGHTS[method] <= {p.name for p in
                                                                                checkpoint.iterdir()}
    log = _log(out)
    assert [row["current_steps"] for row in log] == [1, 2]
    assert {"loss", "reward", "lr", "epoch", "percentage", "elapsed_time", "remaining_time", "kl", "policy_loss",
            "value_loss"} <= set(log[0])
    for row in log:
        assert row["reward"] == pytest.approx(-row["response_length"])
        assert row["loss"] == pytest.approx(row["policy_loss"] + VALUE_COEF * row["value_loss"])
    assert log[0]["epoch"] == pytest.approx(0.25)  # 4 rollouts of 16 prompts
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history] == [1, 2] and "reward" in history[0]
    assert metrics["train_reward"] == pytest.approx(statistics.mean(row["reward"] for row in log))
    _assert_trained(method, tiny_model_dir, out)


def _assert_trained(method: str, base_dir: Path, out: Path) -> None:
    if method == "lora":
        adapter = load_file(str(out / "adapter_model.safetensors"))
        assert any(key.endswith("lora_B.weight") and value.abs().sum() > 0 for key, value in adapter.items())
        return
    base, after = load_file(str(base_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert not any(key.startswith("v_head") for key in after)  # the head lives in value_head.safetensors only
    changed = {key for key in base if not torch.equal(base[key], after[key])}
    assert changed
    if method == "freeze":
        assert all(key.startswith("model.layers.1.") for key in changed), changed


def test_ppo_raises_a_toy_reward(tiny_model_dir, tmp_path):
    """+1 per even token id: sampling among the top 8 tokens, the policy must move its mass to even ids."""
    out = tmp_path / "out"
    _train(_config(tiny_model_dir, out, max_steps=8, per_device_train_batch_size=4, ppo_epochs=4,
                   learning_rate=1e-2, lr_scheduler_type="constant", temperature=1.0, top_p=1.0, top_k=8,
                   max_samples=32, disable_gradient_checkpointing=True), reward=even_tokens)
    rewards = [row["reward"] for row in _log(out)]
    assert len(rewards) == 8
    assert statistics.mean(rewards[-3:]) > statistics.mean(rewards[:3]) + 0.75, rewards  # out of 4


# ---- reward sources ------------------------------------------------------------------------------------------


class _ScoreServer:
    """A local reward API: ``{"texts": [...]}`` → ``{"scores": [len(text) ...]}``; ``mode`` breaks it on purpose."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.mode = "ok"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                scores = [float(len(text)) for text in body["texts"]]
                status, answer = {"ok": (200, {"scores": scores}), "short": (200, {"scores": scores[:-1]}),
                                  "error": (500, {"detail": "boom"})}[owner.mode]
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/score"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def score_server():
    server = _ScoreServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_api_reward_protocol_and_errors(score_server, tiny_tokenizer):
    reward = ApiReward(score_server.url, tiny_tokenizer, timeout=10)
    prompts, responses = [[72, 105], [72]], [[33, 4], [104]]
    scores = reward(prompts, responses)
    texts = tiny_tokenizer.batch_decode([p + r for p, r in zip(prompts, responses, strict=True)],
                                        skip_special_tokens=False)
    assert score_server.requests[-1]["texts"] == texts == score_server.requests[-1]["messages"]
    assert scores.tolist() == [float(len(t)) for t in texts] and scores.dtype == torch.float32
    score_server.mode = "short"
    with pytest.raises(RewardError, match="1 scores for 2 rollouts"):
        reward(prompts, responses)
    score_server.mode = "error"
    with pytest.raises(RewardError, match="HTTP 500"):
        reward(prompts, responses)


def test_api_reward_model_drives_a_run(score_server, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    _train(_config(tiny_model_dir, out, reward_model=score_server.url, max_steps=1))
    assert len(score_server.requests) == 1 and len(score_server.requests[0]["texts"]) == 4
    expected = statistics.mean(len(text) for text in score_server.requests[0]["texts"])
    assert _log(out)[0]["reward"] == pytest.approx(expected)


def _save_reward_model(model_dir: Path, folder: Path, lora: bool) -> Path:
    """A reward model as stage rm writes it: a LoRA adapter or full weights, plus value_head.safetensors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.model.value_head import attach_value_head, save_value_head, strip_value_head

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if lora:  # random B: an adapter that really changes the scores
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    head = attach_value_head(model)
    torch.nn.init.normal_(head.summary.weight, std=0.5)
    model.save_pretrained(str(folder))
    if not lora:
        strip_value_head(folder)
    save_value_head(model, folder)
    return folder


def test_lora_reward_adapter_scores_like_the_saved_reward_model(tiny_model_dir, tmp_path):
    from tuneforge.model.value_head import load_value_head_model
    from tuneforge.train.core.trainer import build_training_args
    from tuneforge.train.core.workflow import prepare
    from tuneforge.train.ppo import run as ppo
    from tuneforge.train.ppo.rewards import REWARD_ADAPTER, LoraReward

    folder = _save_reward_model(tiny_model_dir, tmp_path / "rm", lora=True)
    cfg = resolve(_config(tiny_model_dir, tmp_path / "out", reward_model=str(folder), reward_model_type="lora"),
                  environ={}).config
    policy = ppo.build_policy(cfg, prepare(cfg), build_training_args(cfg))
    trainable = {name for name, p in policy.model.named_parameters() if p.requires_grad}
    reward = LoraReward(policy.model, str(folder), policy.pad_id, batch_size=2)
    prompts, responses = [[3, 72, 105, 4], [3, 72]], [[33, 44, 4], [104]]
    got = reward(prompts, responses)
    standalone = load_value_head_model(str(folder), base_model=str(tiny_model_dir))
    batch = {"input_ids": torch.tensor([[3, 72, 105, 4, 33, 44, 4], [3, 72, 104, 0, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0]])}
    with torch.no_grad():
        torch.testing.assert_close(got, standalone(**batch), atol=1e-5, rtol=1e-5)
    assert policy.model.active_adapter == "default"  # the policy's adapter is active again after scoring
    assert policy.model.training
    assert {name for name, p in policy.model.named_parameters() if p.requires_grad} == trainable
    assert any(REWARD_ADAPTER in name for name, _ in policy.model.named_parameters())


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_reward_model_from_stage_rm_drives_a_run(kind, tiny_model_dir, tmp_path):
    folder = _save_reward_model(tiny_model_dir, tmp_path / "rm", lora=kind == "lora")
    out = tmp_path / "out"
    method = "lora" if kind == "lora" else "freeze"
    metrics = _train(_config(tiny_model_dir, out, reward_model=str(folder), reward_model_type=kind,
                             finetuning_type=method, max_steps=1))
    assert metrics["train_reward"] is not None and abs(metrics["train_reward"]) < 1e3
    if kind == "lora":  # only the policy's adapter is saved, not the loaded reward adapter
        assert not (out / "reward").exists()
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 8  # the policy's (rm's r is 4)


# ---- resume ---------------------------------------------------------------------------------------------------


class SigtermOnCall:
    """:func:`shorter`, sending SIGTERM to this process during its ``call``-th call (inside PPO step ``call``)."""

    def __init__(self, call: int) -> None:
        self.call, self.calls = call, 0

    def __call__(self, completion_ids, **kwargs):
        self.calls += 1
        if self.calls == self.call:
            os.kill(os.getpid(), signal.SIGTERM)
        return shorter(completion_ids)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sigterm_then_resume_continues_like_an_uninterrupted_run(method, tiny_model_dir, tmp_path):
    run = {"finetuning_type": method, "max_steps": 4, "save_strategy": "steps", "save_steps": 2,
           "lr_scheduler_type": "cosine", "ppo_score_norm": True, "ppo_whiten_rewards": True}
    _train(_config(tiny_model_dir, tmp_path / "ref", **run), reward=shorter)
    out = tmp_path / "run"
    first = _train(_config(tiny_model_dir, out, **run), reward=SigtermOnCall(3))
    assert first["interrupted_by"] == "SIGTERM"
    assert is_complete(out / "checkpoint-2") and is_complete(out / "checkpoint-3")
    assert not (out / ("adapter_model.safetensors" if method == "lora" else "model.safetensors")).exists()
    assert json.loads((out / "tuneforge_run.json").read_text())["status"] == "interrupted by SIGTERM"

    _train(_config(tiny_model_dir, out, resume_from_checkpoint=True, **run), reward=shorter)
    ref, got = _log(tmp_path / "ref"), _log(out)
    assert [row["current_steps"] for row in got] == [1, 2, 3, 4]
    for want, have in zip(ref, got, strict=True):
        for key in ("loss", "reward", "kl", "kl_coef", "lr"):
            assert have[key] == pytest.approx(want[key], abs=1e-5), (have["current_steps"], key)
    run_record = json.loads((out / "tuneforge_run.json").read_text())
    assert run_record["status"] == "completed" and run_record["resumed_from"].endswith("checkpoint-3")


# ---- pieces ------------------------------------------------------------------------------------------------------


def test_cut_at_stop_keeps_the_first_stop_token():
    assert cut_at_stop([5, 6, 4, 7, 4], [4, 2]) == [5, 6, 4]
    assert cut_at_stop([5, 6], [4]) == [5, 6]


def test_prompt_stream_reads_each_epoch_once_in_a_seeded_order():
    rows = [{"input_ids": [i]} for i in range(6)]
    stream = PromptStream(rows, per_step=4, seed=1, shuffle=True)
    first_epoch = stream.batch(0) + stream.batch(1)[:2]
    assert sorted(first_epoch) == [[i] for i in range(6)]
    assert stream.batch(1) == PromptStream(rows, 4, 1, True).batch(1)  # the step alone fixes the prompts
    assert stream.steps(1.0) == 2 and stream.epoch(3) == 2.0
