"""Flowline's wire contract: pydantic models for graphs and messages, and the topic table."""
