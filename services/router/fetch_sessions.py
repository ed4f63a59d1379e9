"""Incremental fetch sessions (KIP-227) for aiokafka's fetcher.

aiokafka sends every fetch as a full one: each request names all the partitions the consumer
fetches from that broker, and each answer lists all of them, with or without records. The
router fetches its 24 input partitions once a batch, and at 1,000 completions/s a batch holds
3-4 records from as many partitions: the other twenty-odd entries were encoded, answered by the
broker, decoded and walked by aiokafka (`_proc_fetch_request`) for nothing, a few hundred
times a second.

In a session the broker remembers the partitions and their fetch offsets. A request then names
only the partitions added or whose offset moved since the last one, and the ones to drop; an
answer names only the partitions with news (records, a moved high watermark, an error).

`attach(fetcher)` makes one aiokafka `Fetcher` use sessions, one per broker:
- each `FetchRequest` aiokafka builds is wrapped in a `SessionFetchRequest`, which still shows
  aiokafka every partition it asked for (`topics`: it maps an answer's partitions to their
  fetch offsets by it) but encodes only the difference from the session (`build`);
- the session moves on only when the broker answers without an error: any other outcome (a
  send error, a cancelled fetch, a broker that lost or refused the session) drops it, and the
  next request is a full one that opens a new session. A broker that does not keep sessions
  (answers session id 0) is asked in full every time, as without this module.

A partition aiokafka leaves out of a request (it has records not yet consumed, it is paused,
its offset is being reset) leaves the session, and comes back with its offset when asked for
again: the broker never fetches a partition from an offset the consumer did not name.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

FIRST_VERSION = 7  # FetchRequest v7 added sessions
NEW_SESSION, NO_SESSION = 0, 0  # epoch 0 with session id 0: "open a session"
MAX_EPOCH = 2**31 - 1
# How often the partitions a session leaves out of answers are marked polled (faust warns when
# one was not for `stream_processing_timeout`, 300 s).
POLLED_EVERY = 1.0

Wanted = dict[tuple[str, int], tuple[int, int]]  # (topic, partition) -> (offset, max bytes)


@dataclass
class Session:
    """What one broker holds for this consumer: the session's id, next epoch, partitions."""

    node_id: int
    id: int = NO_SESSION
    epoch: int = NEW_SESSION
    partitions: Wanted = field(default_factory=dict)
    opened: int = 0  # sessions opened (for the tests and the log)
    incremental: int = 0  # requests sent as a difference

    def reset(self, why: str) -> None:
        if self.id != NO_SESSION:
            log.info("fetch session %d with broker %d dropped: %s", self.id, self.node_id, why)
        self.id, self.epoch, self.partitions = NO_SESSION, NEW_SESSION, {}

    def answered(self, request: SessionFetchRequest, response: Any) -> None:
        if response.API_VERSION < FIRST_VERSION:
            return
        if response.error_code:
            self.reset(f"error code {response.error_code}")
            return
        if request.sent_epoch == NEW_SESSION:
            self.id = response.session_id
            if self.id != NO_SESSION:
                self.opened += 1
            self.epoch = 1
        else:
            self.epoch = 1 if self.epoch >= MAX_EPOCH else self.epoch + 1
        self.partitions = request.wanted if self.id != NO_SESSION else {}


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request, encoded as the difference from a session."""

    def __init__(self, full: FetchRequest, session: Session) -> None:
        super().__init__(full._max_wait_ms, full._min_bytes, full._max_bytes,
                         full._isolation_level, full._topics, rack_id=full._rack_id)
        self.session = session
        self.wanted: Wanted = {(topic, partition): (offset, max_bytes)
                               for topic, partitions in full._topics
                               for partition, offset, max_bytes in partitions}
        self.sent_epoch = NEW_SESSION

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION < FIRST_VERSION:
            return super().build(request_struct_class)
        session = self.session
        self.sent_epoch = session.epoch
        if session.id == NO_SESSION:
            changed, forgotten = self.wanted, []
        else:
            had = session.partitions
            changed = {k: v for k, v in self.wanted.items() if had.get(k) != v}
            forgotten = [k for k in had if k not in self.wanted]
            session.incremental += 1
        return self._struct(request_struct_class, session.id, self.sent_epoch, changed,
                            forgotten)

    def _struct(self, cls: Any, session_id: int, epoch: int, changed: Wanted,
                forgotten: list[tuple[str, int]]) -> Any:
        leader_epoch = cls.API_VERSION >= 9
        topics: defaultdict[str, list[tuple[int, ...]]] = defaultdict(list)
        for (topic, partition), (offset, max_bytes) in changed.items():
            topics[topic].append((partition, -1, offset, -1, max_bytes) if leader_epoch
                                 else (partition, offset, -1, max_bytes))
        dropped: defaultdict[str, list[int]] = defaultdict(list)
        for topic, partition in forgotten:
            dropped[topic].append(partition)
        args: list[Any] = [-1, self._max_wait_ms, self._min_bytes, self._max_bytes,
                           self._isolation_level, session_id, epoch, list(topics.items()),
                           list(dropped.items())]
        if cls.API_VERSION >= 11:
            args.append(self._rack_id)
        return cls(*args)


class _SessionClient:
    """The fetcher's view of aiokafka's client: fetches go through their session."""

    def __init__(self, client: Any, fetcher: Any) -> None:
        self._client = client
        self._fetcher = fetcher
        self._polled_at = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, *args, **kwargs)
        session = request.session
        try:
            response = await self._client.send(node_id, request, *args, **kwargs)
        except BaseException as exc:  # a send error, or a fetch cancelled by a rebalance
            session.reset(f"{type(exc).__name__}: {exc}")
            raise
        session.answered(request, response)
        self._polled(request)
        return response

    def _polled(self, request: SessionFetchRequest) -> None:
        """Every partition asked for was polled now, named in the answer or not (faust's
        event-path check reads this time to tell a consumer that stopped fetching); once
        every `POLLED_EVERY` seconds is often enough."""
        now = time.monotonic()
        if now - self._polled_at < POLLED_EVERY:
            return
        self._polled_at = now
        subscription = self._fetcher._subscriptions.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None:
            return
        now_ms = int(1000 * time.time())
        for topic, partitions in request.topics:
            for partition, _, _ in partitions:
                state = assignment.state_value(TopicPartition(topic, partition))
                if state is not None:
                    state.timestamp = now_ms


def attach(fetcher: Any) -> dict[int, Session]:
    """Make `fetcher` (an aiokafka `Fetcher`) fetch in sessions; returns them, by broker."""
    sessions: dict[int, Session] = {}
    actions = fetcher._get_actions_per_node

    def with_sessions(assignment: Any) -> tuple[Any, ...]:
        requests, *rest = actions(assignment)
        wrapped = []
        for node_id, request in requests:
            session = sessions.get(node_id)
            if session is None:
                session = sessions[node_id] = Session(node_id)
            wrapped.append((node_id, SessionFetchRequest(request, session)))
        return (wrapped, *rest)

    fetcher._get_actions_per_node = with_sessions
    fetcher._client = _SessionClient(fetcher._client, fetcher)
    return sessions
