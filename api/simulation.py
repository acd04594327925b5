"""Simulated time across processes: several pump processes on one PostgreSQL follow one simulated clock.

A single process simulates with ``Runtime.run_until``. To run (and measure, and crash) the deployment's real
shape — N worker processes, each a :class:`~api.service.Service` pumping the shards it claims — one process
conducts: :func:`conduct` moves the clock through the same due moments ``run_until`` would, publishes each moment
in the ``WorkerState`` row named ``clock``, and waits until the workers have done everything due by then (nothing
pending at or before that moment) before it moves on. Each worker (:func:`follow`, or
``python -m api.simulation follow``) reads the published moment before every pump pass. Workers come and go
freely: a killed worker's shards are claimed by the others, and a restarted one joins at the current moment.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from agent.runtime import Runtime
from api.service import Service
from knowledge.clock import SimClock, as_utc
from knowledge.settings import Settings
from sop_graphs.tables import WorkerState

READY = "follower/"  # WorkerState rows "follower/<pid>" = clock name: the followers that have started
STOP = "stop"  # a WorkerState row of this name, with the clock's name as its value, stops the followers
POLL_SECONDS = 0.01  # how often an idle follower or a waiting conductor looks at the database again
CONDUCTOR_POLL_MAX_SECONDS = 0.08  # the conductor's looks back off to this while one moment's work goes on

_W = WorkerState.__table__.c


def published(runtime: Runtime, name: str) -> datetime | None:
    """The moment the conductor published under ``name``, if any."""
    return runtime.saved_clock(name)


def _stopped(runtime: Runtime, name: str) -> bool:
    with runtime.deps.engine.connect() as conn:
        return conn.execute(select(_W.value).where(_W.name == STOP)).scalar() == name


def conduct(runtime: Runtime, until: datetime, *, name: str = "clock", patience: float = 600.0,
            on_moment: Callable[[datetime], None] | None = None) -> None:
    """Move the shared clock ``name`` to ``until`` through every due moment, waiting at each for the followers.

    ``patience`` (seconds) bounds the wait at one moment: work still due then (a row that keeps failing) is left
    behind as a lone worker would leave it, and the clock moves on. ``on_moment`` is called as each moment is
    done (a benchmark's progress)."""
    clock = runtime.deps.clock
    if not isinstance(clock, SimClock):
        raise TypeError("conduct needs a simulated clock")

    def wait_for_workers() -> int:
        now = clock.now()
        runtime._persist(name)  # noqa: SLF001 — the same row run_until persists its clock in
        give_up = time.monotonic() + patience
        pause = POLL_SECONDS
        while time.monotonic() < give_up:
            nxt = runtime.next_wakeup()
            if nxt is None or as_utc(nxt) > as_utc(now):
                break
            time.sleep(pause)
            # a long moment is looked at less often: each look is four queries the followers' server also runs
            pause = min(pause * 2, CONDUCTOR_POLL_MAX_SECONDS)
        if on_moment is not None:
            on_moment(now)
        return 0

    runtime.run_until(until, persist_as=name, tick=wait_for_workers)


def wait_for_followers(runtime: Runtime, count: int, *, name: str = "clock", patience: float = 300.0) -> None:
    """Return once ``count`` followers of ``name`` have started (raise after ``patience`` seconds)."""
    give_up = time.monotonic() + patience
    while True:
        with runtime.deps.engine.connect() as conn:
            ready = conn.execute(select(func.count()).where(_W.name.startswith(READY), _W.value == name)).scalar()
        if ready >= count:
            return
        if time.monotonic() > give_up:
            raise TimeoutError(f"{ready} of {count} followers started within {patience:g} s")
        time.sleep(POLL_SECONDS)


def stop_followers(runtime: Runtime, name: str = "clock") -> None:
    with runtime.deps.engine.begin() as conn:
        conn.execute(WorkerState.__table__.delete().where(_W.name == STOP))
        conn.execute(WorkerState.__table__.insert().values(name=STOP, value=name))


def follow(settings: Settings, start: datetime, *, name: str = "clock") -> None:
    """Pump on the shared clock ``name`` until the conductor says stop (a worker process of a simulation)."""
    clock = SimClock(start)
    service = Service.build(settings, clock=clock)
    runtime = service.runtime
    with runtime.deps.engine.begin() as conn:  # built and ready: a conductor may wait for its followers
        conn.execute(WorkerState.__table__.delete().where(_W.name == f"{READY}{os.getpid()}"))
        conn.execute(WorkerState.__table__.insert().values(name=f"{READY}{os.getpid()}", value=name))
    try:
        while not _stopped(runtime, name):
            moment = published(runtime, name)
            if moment is not None and moment > clock.now():
                clock.set(moment)
            if moment is None or service.pump_once() == 0:
                time.sleep(POLL_SECONDS)
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["follow"])
    parser.add_argument("home", type=Path)
    parser.add_argument("start", type=datetime.fromisoformat)
    parser.add_argument("--name", default="clock")
    args = parser.parse_args()
    follow(Settings(home=args.home, embedder="hash"), args.start, name=args.name)


if __name__ == "__main__":
    main()
