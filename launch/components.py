"""TorchX components for bigrec.

Local (this host, one process per rank)::

    torchx run -s local_cwd launch/components.py:train --config configs/ranking/deepfm_ml100k.yaml -j 1x2
    torchx run -s local_cwd launch/components.py:train --config configs/ranking/deepfm_ml100k.yaml -j 2x1 --cpu 1

Extra arguments after the options are dotted config overrides
(``... -j 1x2 trainer.epochs=3``). ``local_cwd`` calls ``torchrun`` from PATH, so
put the virtual environment's ``bin/`` on PATH (the Makefile does).

Slurm (one task per node, ``-j NODESxGPUS``; the image is the job's working
directory with bigrec installed)::

    torchx run -s slurm --scheduler_args partition=gpu,time=120 \\
        launch/components.py:train --config configs/ranking/dcnv2_criteo1tb.yaml -j 16x8 --gpu 8 --cpu 64 --memMB 480000

Kubernetes (Volcano; the image must contain bigrec and its data path)::

    torchx run -s kubernetes --scheduler_args namespace=ml,queue=default \\
        launch/components.py:train --image registry.example.com/bigrec:latest \\
        --config configs/ranking/dcnv2_criteo1tb.yaml -j 16x8 --gpu 8 --cpu 64 --memMB 480000

The entry point also runs under plain torchrun:
``torchrun --nproc_per_node 2 -m bigrec.cli train CONFIG [overrides]``.
"""

from typing import Dict, Optional

import torchx
from torchx import specs
from torchx.components import dist


def train(
    *overrides: str,
    config: str,
    j: str = "1x2",
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    image: str = torchx.IMAGE,
    name: str = "bigrec-train",
    env: Optional[Dict[str, str]] = None,
    omp_threads: int = 0,
    max_retries: int = 0,
    max_restarts: int = 0,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Train a bigrec model on ``j`` = NODESxPROCS ranks (torchrun under the hood).

    Args:
        overrides: dotted config overrides, e.g. trainer.epochs=3
        config: YAML run config, e.g. configs/ranking/deepfm_ml100k.yaml
        j: nodes x processes per node, e.g. 1x2 or 2x1 (ranks = product)
        cpu: CPUs per node (also sets OpenMP threads per rank)
        gpu: GPUs per node (0 trains on CPU with gloo; >0 uses NCCL)
        memMB: memory per node in MB
        h: a named resource of the scheduler instead of cpu/gpu/memMB
        image: image or working directory holding bigrec (local_cwd ignores it)
        name: job name
        env: extra environment variables, e.g. LOGLEVEL=INFO
        omp_threads: OpenMP threads per rank; 0 = cpu // processes per node
        max_retries: whole-job retries done by the scheduler (not by local_cwd)
        max_restarts: restarts of all ranks by torchrun when a rank dies
        rdzv_port: rendezvous port for multi-node jobs

    Returns:
        the TorchX application
    """
    nproc_per_node = int(j.split("x")[-1]) if "x" in j else 1
    threads = omp_threads or max(1, cpu // nproc_per_node)
    job_env = {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1", **(env or {})}
    app = dist.ddp(
        "train", config, *overrides,
        m="bigrec.cli", image=image, name=name, h=h, cpu=cpu, gpu=gpu, memMB=memMB, j=j,
        env=job_env, max_retries=max_retries, rdzv_port=rdzv_port,
    )
    if max_restarts:
        role = app.roles[0]
        role.args = [role.args[0], role.args[1].replace("torchrun ", f"torchrun --max-restarts {max_restarts} ", 1)]
    return app


__all__ = ["train"]
