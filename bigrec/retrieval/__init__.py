"""Retrieval: the ``retrieval`` task (losses, full-ranking metrics), export and retrieve.

Importing :mod:`bigrec.retrieval.task` registers the task; recall models import it.
"""
