"""``bigrec plan``: dry-run TorchRec's sharding planner for a cluster described in a topology file.

* :mod:`bigrec.plan.topology` — topology files (``configs/topology/*.yaml``);
* :mod:`bigrec.plan.planner` — the dry run on meta-device models, and why a model does not fit;
* :mod:`bigrec.plan.report` — the per-table / per-rank report as text, JSON and a PNG chart;
* :mod:`bigrec.plan.schemas` — the committed schemas of the planning-only models;
* :mod:`bigrec.plan.cli` — the command.
"""
