"""Which worker this process is in a multi-worker job, read from ``TF_CONFIG`` (no TensorFlow here).

``__main__`` needs the answer before it binds anything: only the chief (task 0 of ``worker``, or
the ``chief`` task when the cluster names one) binds the control and metrics sockets and writes
the connection file, checkpoints and the run's logs; the other workers run the same loop without
sockets and learn every command from the chief through the strategy's collectives
(``trainer.peers``). ``TF_CONFIG`` is what TensorFlow itself reads::

    {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TF_CONFIG = "TF_CONFIG"
WORKERS_DIR = "workers"  # a non-chief worker's own logs: <run_dir>/workers/<index>/


@dataclass(frozen=True)
class WorkerRole:
    index: int = 0
    num_workers: int = 1
    is_chief: bool = True

    @property
    def name(self) -> str:
        return f"worker {self.index}"

    def log_dir(self, run_dir: Path) -> Path:
        """Where this worker's own JSONL log goes: the run dir for the chief."""
        return Path(run_dir) if self.is_chief else Path(run_dir) / WORKERS_DIR / str(self.index)


CHIEF = WorkerRole()  # the one process of a job without workers (frozen: safe to share)


def worker_role(strategy: str, environ: Mapping[str, str]) -> WorkerRole:
    """This process's role; ValueError (a configuration error) for a missing or bad ``TF_CONFIG``."""
    if strategy != "multiworker":
        return CHIEF
    raw = environ.get(TF_CONFIG)
    if not raw:
        raise ValueError("--strategy multiworker needs TF_CONFIG (the cluster and this task)")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = str(task["type"]), int(task["index"])
        workers = list(cluster.get("worker", []))
        chiefs = list(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"TF_CONFIG is not a cluster and task ({type(exc).__name__}: {exc})") from None
    if kind not in ("worker", "chief"):
        raise ValueError(f"TF_CONFIG task type must be worker or chief, got {kind!r}")
    members = chiefs if kind == "chief" else workers
    if not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG task index {index} is not in its {len(members)} {kind} address(es)")
    total = len(workers) + len(chiefs)
    if chiefs:  # the chief task is the chief; workers count after it
        return WorkerRole(
            index=0 if kind == "chief" else index + 1, num_workers=total, is_chief=kind == "chief"
        )
    return WorkerRole(index=index, num_workers=total, is_chief=index == 0)
