"""Serving artefacts of trained recall models: ``bigrec export`` (user/item vectors) and ``bigrec retrieve``.

Separate from training: this package reads checkpoints and never imports the trainer.
"""
