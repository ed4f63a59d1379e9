"""`flowline worker`: processes that run registered Python handlers for automated steps.

A worker claims jobs from the tasks service over HTTP with a lease, runs the handler, heartbeats
while it runs, ships its step logs and progress, and completes or fails the job. See
`services.workers.registry` to register a handler and `services.workers.analysis` for the
built-in manufacturing-analysis handlers (seed 003).
"""
