"""Claims on runs: who works on a run, and how the others know it is still working.

A claim records the host, the pid, a random token and a heartbeat, a time on the
database's clock that the working process refreshes every ``heartbeat`` seconds
from a thread of its own. Another worker may take the run when the claim is
*stale*: its heartbeat is older than ``expiry`` seconds, whatever host it came from
(a container's hostname or a reused pid can never block a run forever), or, on the
same host, its process is gone (freed at once).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from .store_backends import env_seconds

HEARTBEAT_ENV = "TRANSFERLAB_HEARTBEAT_SECONDS"
EXPIRY_ENV = "TRANSFERLAB_CLAIM_EXPIRY_SECONDS"
DEFAULT_HEARTBEAT_S = 30.0
DEFAULT_EXPIRY_S = 180.0
DAY_S = 86_400.0  # the longest heartbeat or expiry accepted

log = logging.getLogger(__name__)
_HELD: set[str] = set()  # tokens of the claims this process holds now (its earlier, interrupted ones are stale)


@dataclass(frozen=True)
class ClaimPolicy:
    """How often a worker proves it is alive, and how long a silent claim is trusted."""

    heartbeat: float = DEFAULT_HEARTBEAT_S
    expiry: float = DEFAULT_EXPIRY_S

    def __post_init__(self):
        if not 0 < self.heartbeat < self.expiry:
            raise UserError(f"the claim expiry ({self.expiry:g} s) must be longer than the heartbeat interval "
                            f"({self.heartbeat:g} s); see {HEARTBEAT_ENV} and {EXPIRY_ENV}")

    @classmethod
    def from_env(cls) -> "ClaimPolicy":
        """``$TRANSFERLAB_HEARTBEAT_SECONDS`` (default 30) and ``$TRANSFERLAB_CLAIM_EXPIRY_SECONDS`` (default 180)."""
        return cls(env_seconds(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S, DAY_S),
                   env_seconds(EXPIRY_ENV, DEFAULT_EXPIRY_S, DAY_S))


@dataclass(frozen=True)
class Claim:
    """This process's hold on one run."""

    run_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def hold(self) -> "Claim":
        _HELD.add(self.token)
        return self

    def drop(self) -> None:
        _HELD.discard(self.token)


def claim_is_stale(status: str | None, pid: int | None, host: str | None, heartbeat: float | None,
                   now: float, expiry: float, token: str | None = None) -> bool:
    """Whether a ``running`` row's claim may be taken (see the module docstring)."""
    if status != "running":
        return False
    if host == socket.gethostname() and pid is not None:
        if pid == os.getpid():
            return token not in _HELD  # not held now: left by an earlier, interrupted attempt of this process
        if not _pid_exists(pid):
            return True
    if heartbeat is None:  # a claim from before heartbeats: only its pid could tell, and that is above
        return host != socket.gethostname() or pid is None
    return now - heartbeat > expiry


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """A thread refreshing one claim's heartbeat every ``interval`` seconds on its own connection."""

    def __init__(self, beat: Callable[[], bool], interval: float, close: Callable[[], None] = lambda: None):
        self._beat, self._close, self.interval = beat, close, interval
        self._stop = threading.Event()
        self.lost = False  # another worker took the run (it found the claim stale)
        self._thread = threading.Thread(target=self._loop, name="transferlab-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    if not self._beat():
                        self.lost = True
                        log.warning("the claim on this run was taken by another worker (no heartbeat for too long)")
                        return
                except Exception as exc:  # a store that fails now fails the run's own writes too
                    log.warning("heartbeat not written: %s", exc)
        finally:
            self._close()
