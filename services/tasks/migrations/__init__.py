"""Alembic migrations of the tasks service (run by services.common.migrate.upgrade)."""
