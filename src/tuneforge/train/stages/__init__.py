"""One thin module per trainer-based stage (pt, sft, rm, dpo, kto), each exposing ``run(cfg) -> dict``."""
