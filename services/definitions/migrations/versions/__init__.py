"""Revisions of the definitions service, oldest first by down_revision."""
