"""The daily sweep runs in one worker's shard while other workers serve the customers it reads (PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text, update

from agent.inbound import submit
from agent.runtime import Runtime
from knowledge.clock import SimClock, as_utc
from knowledge.settings import Settings
from knowledge.tables import Customer
from tests.conftest import MONDAY_15_SHANGHAI

_C = Customer.__table__.c


def _lock_waiters(runtime: Runtime) -> int:
    with runtime.deps.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()")).scalar() or 0


def test_the_sweep_leaves_a_customer_whose_message_commits_while_it_runs_as_they_are(
        tmp_path: Path, postgres_database) -> None:
    runtime = Runtime.build(Settings(home=tmp_path / "home", embedder="hash", database_url=postgres_database()),
                            clock=SimClock(MONDAY_15_SHANGHAI))
    runtime.load_demo_shop()
    submit(runtime.deps, key="add-c1", customer_id="c1", kind="customer_added", payload={"name": "小林"},
           at=runtime.deps.clock.now())
    runtime.tick()
    now = as_utc(runtime.deps.clock.now())
    quiet_since = now - timedelta(days=runtime.deps.settings.silent_after_days, hours=1)
    with runtime.deps.engine.begin() as conn:
        conn.execute(update(Customer.__table__).where(_C.id == "c1").values(added_at=quiet_since, stage="new"))
    engine = runtime.deps.engine
    turn = engine.connect()  # another worker handling c1's message: written, not yet committed
    turn.begin()
    turn.execute(update(Customer.__table__).where(_C.id == "c1").values(last_inbound_at=now, stage="active"))
    sweep = threading.Thread(target=runtime.worker._sweep, args=({"due_at": now, "payload": {}},))
    sweep.start()
    deadline = time.monotonic() + 60
    while _lock_waiters(runtime) == 0 and sweep.is_alive():  # the sweep reaches c1's row and waits for the turn
        assert time.monotonic() < deadline, "the sweep never waited for the turn's row"
        time.sleep(0.01)
    turn.commit()
    turn.close()
    sweep.join(60)
    with engine.connect() as conn:
        assert conn.execute(select(_C.stage).where(_C.id == "c1")).scalar() == "active"
