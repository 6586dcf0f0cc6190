"""The parameter groups; ``training``, ``monitoring`` and ``evaluation`` also take HF TrainingArguments keys."""
