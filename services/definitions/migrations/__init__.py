"""Alembic migrations of the definitions service (run by services.common.migrate.upgrade)."""
