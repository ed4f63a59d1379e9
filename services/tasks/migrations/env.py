"""Alembic environment of the tasks service; shared logic: services.common.migrate."""

from services.common.migrate import run_env
from services.tasks.models import Base

run_env(Base.metadata, "tasks")
