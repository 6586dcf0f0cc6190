"""PPO: its own loop (generation between optimizer steps), on the shared run lifecycle of ``train.core``."""
