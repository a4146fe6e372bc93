"""Regenerate docs/models.md: every model family's quality on MovieLens-100k and synthetic data.

    python tools/bench/models.py [--epochs N]

Runs the ranking/multi-task table (``models_ranking.py quality``: DeepFM, DIN, MMoE,
SharedBottom), the behaviour-sequence table (``models_sequence.py``: DIEN, BST against DIN
on order data; 3 seeds), the recall table (``models_recall.py quality``: SASRec, DSSM, most-popular), each
with the real trainer on one rank, and the multi-task section (``models_multitask.py``:
SharedBottom, ESMM, MMoE, PLE, loss weighting; 3 seeds), and rewrites those sections.
Needs the MovieLens files (``make data``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models_multitask  # noqa: E402
import models_ranking  # noqa: E402
import models_sequence  # noqa: E402
import models_recall  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for every model (default: each config's own; recall: 10)")
    args = parser.parse_args()
    from bigrec.logs import quiet_third_party

    quiet_third_party()
    target = models_recall.ROOT / "docs/models.md"
    models_recall.replace_section(target, models_ranking.HEADING, models_ranking.quality(args.epochs))
    models_recall.replace_section(target, models_sequence.HEADING, models_sequence.quality(3, args.epochs))
    models_recall.replace_section(target, "Recall", models_recall.quality(args.epochs or 10))
    models_recall.replace_section(target, models_multitask.HEADING, models_multitask.quality(3, args.epochs))


if __name__ == "__main__":
    main()
