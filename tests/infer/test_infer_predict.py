"""``tuneforge predict`` / ``predict_dataset``: batched answers in dataset order, the jsonl fields and the scores."""

from __future__ import annotations

import json

import pytest
from infer_kit import make_cfg

from tuneforge.infer.engine import Engine
from tuneforge.infer.predict import PREDICTIONS_FILE, RESULTS_FILE, predict_dataset, run_predict

QUESTIONS = ["Say hi", "Count to three, please", "Name a colour", "What is two plus two?", "Spell cat"]
ANSWERS = ["hello there", "one two three", "blue", "four", "c a t"]
METRICS = {"predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_exact_match",
           "predict_samples", "predict_runtime", "predict_samples_per_second"}


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"instruction": q, "input": "", "output": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    (folder / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "dataset_info.json").write_text(json.dumps({"tiny_eval": {"file_name": "tiny.jsonl"}}))
    return folder


def test_predict_writes_predictions_and_scores(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    cfg = make_cfg(tiny_model_dir, dataset_dir=str(data_dir), eval_dataset="tiny_eval", output_dir=str(out),
                   per_device_eval_batch_size=2, max_new_tokens=6, disable_tqdm=True)
    metrics = run_predict(cfg)
    assert set(metrics) == METRICS and metrics["predict_samples"] == 5
    rows = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [set(r) for r in rows] == [{"prompt", "predict", "label"}] * 5
    assert [r["label"] for r in rows] == ANSWERS
    assert all(r["prompt"].startswith("<|im_start|>user\n" + q) for r, q in zip(rows, QUESTIONS, strict=True))
    assert json.loads((out / RESULTS_FILE).read_text()) == metrics
    # batched (longest first, left padded) = one by one, in dataset order
    engine = Engine.from_config(cfg)
    for row, question in zip(rows, QUESTIONS, strict=True):
        assert row["predict"] == engine.complete([{"role": "user", "content": question}])[0].text.strip()


def test_predict_dataset_takes_processed_rows_and_restores_train_mode(tiny_model_dir, data_dir):
    from tuneforge.data.loader import load_aligned
    from tuneforge.data.processors import PREDICT, process

    cfg = make_cfg(tiny_model_dir, dataset_dir=str(data_dir), dataset="tiny_eval", max_new_tokens=4)
    engine = Engine.from_config(cfg)
    processed = process(load_aligned(cfg).train, cfg, engine.tokenizer, engine.template, key=PREDICT)
    engine.model.train()
    rows = predict_dataset(cfg, engine.model, engine.tokenizer, engine.template, {"a": processed})
    assert engine.model.training
    assert [r["label"] for r in rows] == ANSWERS


def test_cli_predict(tiny_model_dir, data_dir, tmp_path, capsys):
    from tuneforge.cli import main

    config = tmp_path / "predict.yaml"
    config.write_text(f"model_name_or_path: {tiny_model_dir}\ntemplate: chatml\ncutoff_len: 512\n"
                      f"dataset_dir: {data_dir}\neval_dataset: tiny_eval\noutput_dir: {tmp_path / 'o'}\n"
                      "max_new_tokens: 3\ndo_sample: false\n")
    assert main(["predict", str(config)]) == 0
    assert set(json.loads(capsys.readouterr().out)) == METRICS
    assert (tmp_path / "o" / PREDICTIONS_FILE).is_file()
    assert main(["predict", str(config), "eval_dataset=null"]) == 2
    assert "predict needs data" in capsys.readouterr().err
