"""The ``retrieval`` task: losses for training, full-ranking metrics for evaluation."""

from bigrec.tasks.retrieval.task import RetrievalModule, RetrievalOptions, RetrievalStep, RetrievalTask

__all__ = ["RetrievalModule", "RetrievalOptions", "RetrievalStep", "RetrievalTask"]
