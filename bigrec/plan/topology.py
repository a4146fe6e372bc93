"""Cluster topology files for the planner.

A topology file describes the cluster a job will run on, whether or not it exists yet::

    name: 16x8_h100
    hosts: 16
    devices_per_host: 8
    device: cuda                  # cuda | cpu
    device_kind: NVIDIA H100 SXM 80GB
    hbm_gb: 80                    # accelerator memory per device (GiB); 0 for CPU ranks
    ddr_gb: 224                   # host memory per device / rank (GiB)
    intra_host_bw_gbs: 450        # per-device bandwidth inside a host (NVLink), GB/s
    inter_host_bw_gbs: 50         # per-device bandwidth between hosts (InfiniBand / RoCE), GB/s
    batch_size_per_rank: 512
    uvm_caching: null             # e.g. 0.2: tables may live in host memory with 20% of rows cached in HBM

Sizes are GiB (2**30 bytes) and bandwidths GiB/s, the units TorchRec's planner reports in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


from bigrec.config import read_yaml
from bigrec.errors import ConfigError

GIB = 1024**3


@dataclass(frozen=True)
class TopologySpec:
    """One cluster shape; :meth:`to_torchrec` gives the planner's ``Topology``."""

    name: str = "custom"
    hosts: int = 1
    devices_per_host: int = 1
    device: str = "cpu"
    device_kind: str = "CPU"
    hbm_gb: float = 0.0
    ddr_gb: float = 128.0
    intra_host_bw_gbs: Optional[float] = None  # None: TorchRec's default
    inter_host_bw_gbs: Optional[float] = None
    hbm_mem_bw_gbs: Optional[float] = None
    ddr_mem_bw_gbs: Optional[float] = None
    batch_size_per_rank: int = 512
    uvm_caching: Optional[float] = None

    def __post_init__(self) -> None:
        where = f"topology '{self.name}'"
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"{where}: device must be cpu or cuda, got '{self.device}'")
        for key in ("hosts", "devices_per_host", "batch_size_per_rank"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{where}: {key} must be >= 1, got {getattr(self, key)}")
        if self.device == "cuda" and self.hbm_gb <= 0:
            raise ConfigError(f"{where}: a cuda topology needs hbm_gb > 0")
        if self.ddr_gb < 0:
            raise ConfigError(f"{where}: ddr_gb must be >= 0")
        if self.uvm_caching is not None:
            if self.device != "cuda":
                raise ConfigError(f"{where}: uvm_caching needs device cuda (it caches host-memory tables in HBM)")
            if not 0.0 < self.uvm_caching <= 1.0:
                raise ConfigError(f"{where}: uvm_caching must be in (0, 1], got {self.uvm_caching}")

    @property
    def world_size(self) -> int:
        return self.hosts * self.devices_per_host

    @property
    def shape(self) -> str:
        return f"{self.hosts}x{self.devices_per_host} {self.device_kind}"

    def replace(self, **changes) -> "TopologySpec":
        return dataclasses.replace(self, **changes)

    def to_torchrec(self):
        """The ``torchrec.distributed.planner.Topology`` of this cluster."""
        from torchrec.distributed.planner import Topology

        bandwidths = {key: value * GIB / 1000 for key, value in (  # TorchRec counts bytes per ms
            ("intra_host_bw", self.intra_host_bw_gbs), ("inter_host_bw", self.inter_host_bw_gbs),
            ("hbm_mem_bw", self.hbm_mem_bw_gbs), ("ddr_mem_bw", self.ddr_mem_bw_gbs)) if value is not None}
        return Topology(world_size=self.world_size, local_world_size=self.devices_per_host,
                        compute_device=self.device, hbm_cap=int(self.hbm_gb * GIB), ddr_cap=int(self.ddr_gb * GIB),
                        **bandwidths)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_topology(path: str | Path) -> TopologySpec:
    """Read a topology YAML file (unknown keys are errors that list the valid ones)."""
    raw = read_yaml(path, "topology")
    fields = {f.name for f in dataclasses.fields(TopologySpec)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    raw.setdefault("name", Path(path).stem)
    try:
        return TopologySpec(**raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def cpu_topology(world_size: int, batch_size_per_rank: int = 512, ddr_gb: float = 16.0) -> TopologySpec:
    """``world_size`` CPU ranks on one host (what ``--world-size N --device cpu`` plans for)."""
    return TopologySpec(name=f"{world_size}xcpu", hosts=1, devices_per_host=world_size, device="cpu",
                        device_kind="CPU", hbm_gb=0.0, ddr_gb=ddr_gb, batch_size_per_rank=batch_size_per_rank)
