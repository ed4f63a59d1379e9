"""Alembic environment of the definitions service; shared logic: services.common.migrate."""

from services.common.migrate import run_env
from services.definitions.models import Base

run_env(Base.metadata, "definitions")
