"""What every stage shares: the trainer, its callbacks, checkpoints, run records, plots and the run lifecycle."""
