"""Training: the shared trainer (``trainer``), its callbacks, checkpoints, run records and plots.

Stage modules use ``tuneforge.train.trainer.build_trainer`` and ``run_training``; nothing is imported here so that
``import tuneforge.train.<stage>`` stays cheap.
"""
