"""The run history: every run attempt, claimed atomically so nothing runs twice.

The only part of AutoFlow that speaks SQL (SQLAlchemy, Alembic migrations in ``migrations/``).
"""

from autoflow.store.attempts import Attempt, RunKey
from autoflow.store.owners import owner_id
from autoflow.store.run_store import RunStore

__all__ = ["Attempt", "RunKey", "RunStore", "owner_id"]
