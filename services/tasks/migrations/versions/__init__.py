"""Revisions of the tasks service, oldest first by down_revision."""
