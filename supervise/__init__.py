"""supervise: restarts one Procfile entry's process after a crash (standard library only).

`python -m supervise [options] -- COMMAND...`; the loop is in `supervise.supervisor`.
"""

from __future__ import annotations

from supervise.supervisor import RespawnConfig, Supervisor, describe_exit, next_backoff

__all__ = ["RespawnConfig", "Supervisor", "describe_exit", "next_backoff"]
