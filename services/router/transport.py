"""faust's aiokafka transport, with corrections. Registered as the `flowline://` scheme.

1. A configurable fetch wait. faust hardcodes `fetch_max_wait_ms=1500`; Apache Kafka answers a
   fetch as soon as data arrives, but the local Tansu broker polls, so each hop through the
   router took ~0.75 s (measured 2026-11-22). `Settings.fetch_max_wait_ms` sets it: 500 ms
   for Apache Kafka, 20 ms for Tansu (`LocalBroker.fetch_max_wait_ms`).

2. Commits that never skip a record. faust's own commit bookkeeping loses records around a
   restart (`offsets.py` says how); here the commit point comes from `offsets.commit_point`,
   and a partition with nothing committed yet is sought to the start of its log after each
   rebalance, since aiokafka leaves it wherever the fetcher had got to. faust's own "gap"
   detection is ignored: holes are confirmed empty only by reading the log (`stall.py`).

3. End offsets read from the log. The local Tansu broker answers ListOffsets(latest) with the
   base offset of the last record *batch* + 1, not the last record's offset + 1 (measured
   2026-11-22: 3 records at offsets 1..3 in one batch -> end offset 2). faust recovers a
   table's changelog up to that end, so once the router wrote its states in batches, the
   trailing states of each changelog partition were lost at every restart on Tansu. Here an
   end offset is checked by fetching the batch that holds its last offset: on Apache Kafka
   that batch ends there; on Tansu it shows the records after it.

4. Static membership, when `FLOWLINE_ROUTER_INSTANCE_ID` names this worker: a restarted worker
   rejoins as the same member and keeps its partitions, without waiting for its old session
   to expire and a rebalance (Apache Kafka; see `Settings.router_instance_id`).

5. Transactions that hold exactly one input partition's work (`exactly_once`, Apache Kafka).
   faust keeps one transactional producer per input partition and commits each partition's
   offsets in its transaction, but in 0.15.3 (measured 2026-11-22):
   - it hands aiokafka's `send_offsets_to_transaction` its own `TP` tuples, which aiokafka
     refuses, so no transaction ever committed;
   - it picks a record's transaction from the *output* record's partition, so a record keyed
     otherwise than its input (a dead letter, a child's start) landed in another partition's
     transaction, which this input's offset commit does not close;
   - it commits on its own timer, which may fall between a batch's outputs and the write of
     its states: a crash then replays the batch against the old states and its outputs come
     out a second time, committed;
   - its table writes wait in a producer buffer that a task of faust's publishes, and a
     transaction commits without waiting for that task: a commit could take a batch's
     offsets but not its states (measured: states lost across a clean stop).
   Here every record goes into the transaction of the input partition it comes from (the
   router names it; a changelog write's partition is its input's), the router publishes its
   table writes itself before it acks a batch (`_Producer.publish_held`), and a commit waits
   for the batch in progress (`batch_guard`).

6. Records handed to the streams without a task pair each. faust's fetch loop delivers every
   record inside `wait_first(delivery, suspend_flow.wait())`: two tasks and an `asyncio.wait`
   per record, and the router's agent woke between records, so under a backlog its batches
   averaged 12 records and each batch paid its own produce request and ack wait (measured
   2026-11-22). A delivery that nothing can hold up is made directly (`_Consumer.
   _drain_messages`); routed completions per second roughly doubled. Delivered that fast,
   records would pile up for the agent, so delivery holds while `QUEUED_MAX` wait.

7. Seeks on the consumer's thread. faust's `seek` acts on aiokafka's consumer from this loop
   while the consumer thread may be inside its fetcher (its other seeks already go to the
   thread); a stall-healer seek under load crashed the fetcher (a KeyError in
   `fetched_records`, measured 2026-11-22) and the worker with it.

8. Rebalances that keep transactions whole (`exactly_once`). faust forgets the acked offsets
   of revoked partitions before its own commit at a revoke, so that commit never happened
   (`_Consumer.on_partitions_revoked`); and it reads a changelog's end from the fetch state,
   which holds none for a partition not fetched since it was assigned (`_fill_unfetched`).

9. Fetches that do not queue behind other calls. Everything the event loop asks of the
   consumer thread (each fetch, commits, end offsets for the lag gauges and the stall
   healer, seeks) is run by mode's method-queue workers, two by default. A fetch long-polls
   in one of them, so any two other calls at once (a commit while the gauges read end
   offsets) left the next fetch waiting for a worker: with a throwaway log, 142 waits over 3
   ms (1.27 s in all) in one latency run at ~880/s. With four workers: 81 (0.81 s); at
   50/s, 65 (340 ms) against 18 (97 ms). The p50 at 1,000/s asked was lower in 4 of 5
   alternating pairs (session 10, bench/results/NOTES.md).

10. A flush that covers the table writes the router sends itself. Without transactions the
   router writes its table's changelog in record batches of its own (`Router._store`,
   `sending.py`), not through faust's buffer; faust flushes the producer before a commit, at
   a rebalance and at a stop, and `_Producer.flush` then also waits for those writes, sending
   again any the broker refused, so no committed offset is ahead of its states.

11. The consumer on the worker's own event loop, not a thread of its own. faust runs
   aiokafka's consumer in a thread with a second event loop and hands each fetch's records
   over through mode's method queue; the router's loop, busy routing, took them 3-4 ms after
   the thread had them (session 11's trace), and the thread's loop competed with it for the
   GIL. Here `_ConsumerThread` is a service on the worker's loop: the same calls, through the
   same method queue, without the thread (so points 7 and 9 still hold, on this loop). At
   1,000/s asked, in alternating pairs against the thread (session 16, bench/results/
   NOTES.md): with one worker the p50 was lower in 5 of 5 (e.g. 59 / 113 ms against 73 /
   558), with two in 1 of 3; the p99 was lower in 7 of 8. Throughput did not move.
   aiokafka's heartbeats then share the loop with routing, whose longest step (a batch of
   `app.BATCH_MAX`) is a fraction of a second against the 6 s session timeout.

12. Protocol structs encoded and decoded by compiled code (`wire.py`): each fetch request for
   the 24 input partitions and its answer took ~150 µs through aiokafka's generic field-by-
   field codec, ~30 µs compiled; the produce requests and answers likewise.

13. Incremental fetch sessions (KIP-227, `fetch_sessions.py`): aiokafka names all 24 input
   partitions in every fetch and the broker answers for all of them, though a batch at
   1,000/s has records from 3 or 4; in a session both name only what changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport import drivers
from faust.transport.consumer import CONSUMER_FETCHING, TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.threads import MethodQueue

from services.common.settings import Settings
from services.router import fetch_sessions, sending, wire
from services.router.offsets import commit_point
from services.router.sending import Sent

log = logging.getLogger(__name__)
# Records delivered to the streams between two yields to the event loop (faust's own figure is
# 100): also the largest batch the router's agent finds waiting, up to `app.BATCH_MAX`.
YIELD_EVERY = 500
QUEUED_MAX = 1_000  # records waiting for the agent before delivery holds (2 × app.BATCH_MAX)
BUFFER_MAX = 2_000  # table writes that may wait in faust's producer buffer (its default: 100)
CHANGELOG_RETRY_MAX_DELAY = 5.0  # seconds between attempts to deliver refused table writes
METHOD_WORKERS = 4  # calls the consumer thread runs at once (mode's default: 2)


def fetch_max_wait_ms() -> int:
    """`Settings.fetch_max_wait_ms` of this worker (faust builds the consumers, not us)."""
    return Settings().fetch_max_wait_ms


def static_member_id() -> str | None:
    """This worker's `group.instance.id` (`Settings.router_instance_id`), or None."""
    return Settings().router_instance_id


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, run as a service on the worker's own loop (point 11)."""

    _probe: AIOKafkaConsumer | None = None
    _serving: asyncio.Future[None] | None = None  # held: a loop keeps only weak task refs

    def __init__(self, *args: Any, loop: asyncio.AbstractEventLoop | None = None,
                 **kwargs: Any) -> None:
        loop = loop or asyncio.get_event_loop()
        super().__init__(*args, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        """mode's `ServiceThread.start`, with the service's body (`_serve`) a task of this
        loop instead of a thread's."""
        assert not self._thread_started.is_set()
        self._thread_started.set()
        self._thread_running = asyncio.Future()
        self._serving = asyncio.ensure_future(self._serve())
        try:
            await self._thread_running  # set once the consumer has started, or failed
        finally:
            self._thread_running = None

    async def on_start(self) -> None:
        await super().on_start()
        fetcher = self._consumer._fetcher  # type: ignore[union-attr]  # started just now
        fetch_sessions.attach(fetcher)  # point 13

    async def _gather_remaining_tasks(self) -> None:
        """mode cancels every task of the thread's loop as the thread ends; this loop is the
        worker's, and its tasks are not the consumer's to cancel."""

    @property
    def method_queue(self) -> MethodQueue:
        """The thread's calls from the event loop, run by `METHOD_WORKERS` workers (point 9)."""
        if self._method_queue is None:
            self._method_queue = MethodQueue(loop=self.thread_loop, beacon=self.beacon,
                                             num_workers=METHOD_WORKERS)
        return self._method_queue

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Both are read when the consumer starts; faust has no setting for either.
        consumer._fetch_max_wait_ms = fetch_max_wait_ms()
        consumer._group_instance_id = static_member_id()
        return consumer

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        ends = dict(await super()._highwaters(partitions))
        if self.consumer.in_transaction:
            # Only the changelogs: recovery waits for their ends. An input's trailing marker
            # costs the lag gauge one offset and the idle stall check one log read.
            inputs = self.transport.app.topics.acks_enabled_for
            logs = {tp: end for tp, end in ends.items() if not inputs(tp.topic)}
            await self._fill_unfetched(logs)
            return {**ends, **await self._committed_ends(logs)} if logs else ends
        return await self._read_ends(ends)

    async def _fill_unfetched(self, ends: dict[Any, Any]) -> None:
        """Ask the broker for each end the worker's fetch state does not hold yet.

        With transactions faust takes a changelog's end from the consumer's fetch state (its
        last stable offset), which is None for a partition it has not fetched since it was
        assigned: a partition this worker takes over from one that died, for instance. faust
        reads None as an empty log and would start that partition's states from nothing;
        `_committed_ends` crashed on it (CI, session 9). The worker's consumer reads
        read_committed, so its ListOffsets answer is the last stable offset too.
        """
        unknown = {tp: TopicPartition(tp.topic, tp.partition)
                   for tp, end in ends.items() if end is None}
        if not unknown:
            return
        answers = await self._ensure_consumer().end_offsets(list(unknown.values()))
        for tp, part in unknown.items():
            ends[tp] = answers[part]
        log.info("asked the broker for %d changelog ends the fetch state did not hold: %s",
                 len(unknown), {f"{tp.topic}[{tp.partition}]": ends[tp] for tp in unknown})

    async def _committed_ends(self, ends: dict[Any, int], within: float = 5.0,
                              ) -> dict[Any, int]:
        """Each end offset, lowered to just after the last record a committed read is given.

        In a transactional log the last offsets are markers, and after a crash records of
        aborted transactions: no read_committed reader ever gets them, so faust's changelog
        recovery, waiting to reach the end, gave up only after two 5 s idle rounds (measured:
        every restart with `exactly_once` routed again 10 s late). Read backwards in growing
        windows until a record shows; an answer not found in time stays as the broker gave it.
        """
        probe = await self._probe_consumer()
        deadline = time.monotonic() + within
        for tp, end in ends.items():
            part = TopicPartition(tp.topic, tp.partition)
            probe.assign([part])
            hi, back = end, 4
            while hi > 0 and time.monotonic() < deadline:
                lo = max(0, hi - back)
                found, last = await self._last_record(probe, part, lo, hi, deadline)
                if not found:
                    break
                if last is not None or lo == 0:
                    ends[tp] = 0 if last is None else last + 1
                    break
                hi, back = lo, back * 16
        return ends

    @staticmethod
    async def _last_record(probe: AIOKafkaConsumer, part: TopicPartition, lo: int, hi: int,
                           deadline: float) -> tuple[bool, int | None]:
        """(read to `hi` in time, the last record offset in [lo, hi) or None)."""
        probe.seek(part, lo)
        last = None
        while time.monotonic() < deadline:
            batch = await probe.getmany(part, timeout_ms=100)
            for r in batch.get(part, []):
                if r.offset < hi:
                    last = r.offset
            if await probe.position(part) >= hi:
                return True, last
        return False, last

    async def _probe_consumer(self) -> AIOKafkaConsumer:
        """A consumer of our own (the worker's positions stay untouched), reading as the
        worker reads: read_committed with transactions."""
        if self._probe is None:
            self._probe = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap(), enable_auto_commit=False,
                fetch_max_wait_ms=fetch_max_wait_ms(), auto_offset_reset="earliest",
                isolation_level=("read_committed" if self.consumer.in_transaction
                                 else "read_uncommitted"))
            await self._probe.start()
        return self._probe

    async def _read_ends(self, ends: dict[Any, int], within: float = 2.0) -> dict[Any, int]:
        """Each end offset, raised to what the batch holding its last offset shows.

        Runs on the consumer thread (faust calls `_highwaters` there), with a consumer of its
        own so the worker's positions are untouched. An answer not read in time stays as the
        broker gave it.
        """
        check = {tp: end for tp, end in ends.items() if end}
        if not check:
            return ends
        probe = await self._probe_consumer()
        parts = {tp: TopicPartition(tp.topic, tp.partition) for tp in check}
        probe.assign(list(parts.values()))
        try:
            return await self._read_from(probe, parts, ends, check, within)
        finally:
            # Unassigned between reads: aiokafka keeps fetching the partitions a consumer is
            # assigned, in the background, one empty poll after another.
            probe.assign([])

    async def _read_from(self, probe: AIOKafkaConsumer, parts: dict[Any, TopicPartition],
                         ends: dict[Any, int], check: dict[Any, int],
                         within: float) -> dict[Any, int]:
        for tp, end in check.items():
            probe.seek(parts[tp], end - 1)
        waiting = set(check)
        deadline = time.monotonic() + within
        while waiting and time.monotonic() < deadline:
            batch = await probe.getmany(*(parts[tp] for tp in waiting), timeout_ms=200)
            for tp in list(waiting):
                records = batch.get(parts[tp])
                if records:
                    if records[-1].offset + 1 > ends[tp]:
                        log.debug("%s[%s]: end offset %s per the broker, %s per its log",
                                  tp.topic, tp.partition, ends[tp], records[-1].offset + 1)
                        ends[tp] = records[-1].offset + 1
                    waiting.discard(tp)
                elif await probe.position(parts[tp]) >= ends[tp]:
                    waiting.discard(tp)  # a transaction marker or a compacted hole: no record
        return ends

    def _bootstrap(self) -> str:
        return ",".join(f"{u.host}:{u.port or 9092}" for u in self.transport.url)

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        if self._probe is not None:
            await self._probe.stop()


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log_starts: dict[Any, int] = {}
        self._empty: defaultdict[Any, list[tuple[int, int]]] = defaultdict(list)
        self._batch_guard: asyncio.Lock | None = None
        self.room = asyncio.Event()  # set by `took`
        # Per partition, the commit point last decided: everything below it was acked.
        self._decided: dict[Any, int] = {}

    @property
    def batch_guard(self) -> asyncio.Lock:
        """Held by the router from taking a batch until its records are acked.

        With transactions a commit waits for it: a transaction then never holds a batch's
        outputs without its states and input offsets.
        """
        if self._batch_guard is None:
            self._batch_guard = asyncio.Lock()
        return self._batch_guard

    async def _commit_offsets(self, offsets: Mapping[Any, int],
                              start_new_transaction: bool = True) -> bool:
        if not self.in_transaction:
            return bool(await super()._commit_offsets(offsets, start_new_transaction))
        async with self.batch_guard:
            producer: Any = self.app.producer
            await producer.publish_held()  # normally done by the batch itself
            return bool(await super()._commit_offsets(offsets, start_new_transaction))

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """With transactions, commit what was acked before faust forgets it (point 8).

        faust drops its acked-offset bookkeeping for the revoked partitions (all of them: the
        rebalance is eager) and only then commits, so that commit finds nothing and a
        partition this worker keeps goes on with its open transaction while recovery rebuilds
        its states from the committed changelog and the stream rewinds to the committed
        offset: the batches since the last commit were routed again, into the same
        transaction, and their commands committed twice (measured, session 10). Flow stops
        first, so no batch begins after this commit (`forget`); the one in progress ends
        before it (`batch_guard`).
        """
        if self.in_transaction and not self.app.should_stop:
            self.app.flow_control.suspend()
            await self.force_commit()
        await super().on_partitions_revoked(revoked)

    def forget(self, messages: list[Any]) -> None:
        """Records taken but not routed, since a rebalance began: faust must not wait for
        their acks; the stream reads them again from the committed offset after it."""
        for message in messages:
            self._unacked_messages.discard(message)

    def commit_start(self, tp: Any) -> int | None:
        """The next offset to commit from: the point last decided, else the committed one,
        else the start of the log.

        faust flushes the producer before a commit, and under a steady load that flush ran
        for 4-16 s (measured, session 5), while the committed offset stayed behind. The acked
        offsets below the decided point are gone from the index by then, so measured from the
        committed offset they looked like a hole, and the stall healer re-read them (up to 158
        times in a 300,000-start run). Below the decided point everything was acked: the
        outputs delivered and the states written, so a commit may start from there.
        """
        committed = self._committed_offset[tp]
        start = int(committed) if committed else self._log_starts.get(tp)
        decided = self._decided.get(tp)
        if decided is not None and (start is None or decided > start):
            return decided
        return start

    def acked_offsets(self, tp: Any) -> list[int]:
        return list(self._acked[tp])

    def confirm_empty(self, tp: Any, lo: int, hi: int) -> None:
        """Offsets [lo, hi) were read from the log and hold no record: commit past them."""
        self._empty[tp].append((lo, hi))

    def _new_offset(self, tp: Any) -> int | None:
        start = self.commit_start(tp)
        index: set[int] = self._acked_index[tp]
        if start is None or not index:
            return None
        point = commit_point(start, index, self._empty[tp])
        if point is None:
            return None
        self._decided[tp] = point
        self._acked[tp] = [o for o in self._acked[tp] if o >= point]
        index.difference_update([o for o in index if o < point])
        self._empty[tp] = [(lo, hi) for lo, hi in self._empty[tp] if hi > point]
        return point

    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's fetch loop, delivering directly what cannot wait (point 6).

        faust wraps each delivery in `wait_first(..., suspend_flow.wait())` so that one held
        up by flow control, a full stream buffer or a full producer buffer is given up when a
        rebalance suspends the flow. Such a delivery still goes that way; any other is
        exactly what `wait_first` would have done, without the tasks and loop rounds.
        """
        deliver = self.callback
        stopping = self._stopped.is_set
        fetcher_stopping = fetcher._stopped.is_set
        read_offset = self._read_offset
        try:
            while not (stopping() or fetcher_stopping()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if self.should_stop:
                    continue
                since_yield = 0
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    last = read_offset[tp]
                    if last is not None and message.offset < last:
                        continue  # already delivered: faust drops these too
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    channels = self._channels(message.topic)
                    await self._until_room(message.topic, channels)
                    if self._may_block(channels):
                        await self.wait_first(deliver(message), self.suspend_flow.wait())
                    else:
                        await deliver(message)
                    read_offset[tp] = message.offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _until_room(self, topic: str, channels: Any) -> None:
        """Hold delivery while `QUEUED_MAX` records wait for the agent.

        Delivered as fast as fetched, records would pile up in the stream buffer up to
        faust's high-pressure mark (3,277): memory held for nothing, and at a rebalance every
        one of them is skipped as stale and has to be read again. The agent takes up to
        `app.BATCH_MAX` at a time, so twice that keeps it fed.
        """
        if not self.app.topics.acks_enabled_for(topic):
            return  # a changelog during recovery: faust's recovery takes those, not the agent
        while (any(c.queue.qsize() >= QUEUED_MAX for c in channels)
               and not self.suspend_flow.is_set() and not self.should_stop):
            self.room.clear()
            await self.wait_first(self.room.wait(), self.suspend_flow.wait())

    def took(self) -> None:
        """The agent took records from the stream buffer: a held delivery may go on."""
        self.room.set()

    def _channels(self, topic: str) -> Any:
        """The streams' channels subscribed to `topic` (the conductor delivers to these)."""
        conductor: Any = self.app.topics
        return conductor._topic_name_index.get(topic, ())

    def _may_block(self, channels: Any) -> bool:
        """Whether the conductor's delivery to `channels` could wait: flow suspended, the
        producer buffer over its limit, or one of the channels' stream buffers full."""
        app = self.app
        if not app.flow_control.is_active():
            return True
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return True
        return any(channel.queue.full() for channel in channels)

    async def _seek(self, partition: Any, offset: int) -> None:
        """aiokafka's seek, made on the consumer's own thread (point 7).

        Given up if this consumer stops first: its thread would never answer the call, and
        the stop would wait for it.
        """
        thread: Any = self._thread
        await self.wait_first(thread.call_thread(thread.seek, partition, offset))

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        log.debug("%s[%s]: faust saw a jump to %s; the commit waits for offsets.commit_point",
                  tp.topic, tp.partition, offset_to)

    async def perform_seek(self) -> None:
        self._decided.clear()  # a new assignment starts from the committed offsets
        await super().perform_seek()
        fresh = [tp for tp in self.assignment()
                 if self.app.topics.acks_enabled_for(tp.topic) and not self._committed_offset[tp]]
        if not fresh:
            return
        starts = await self.earliest_offsets(*fresh)
        for tp in fresh:
            start = starts.get(tp)
            if start is None:
                continue
            self._log_starts[tp] = start
            await self.seek(tp, start)


class _Producer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[Any] = []
        # faust makes the conductor stop delivering records (and warn) while more than 100
        # table writes wait; one routed batch alone writes up to `app.BATCH_MAX` states.
        self.buffer.max_messages = BUFFER_MAX
        self._unsettled: list[Sent] = []  # the router's own table writes (`track_changelog`)
        self._unsent: list[Any] = []
        self._changelog_store: Any = None
        self._settling = asyncio.Lock()

    def track_changelog(self, sent: list[Sent], store: Any, unsent: list[Any]) -> None:
        """Table writes the router sent itself (`Router._store`): the next flush waits for them.

        faust flushes its producer before it commits input offsets, at a rebalance and at a
        stop, so no commit covers a batch whose states the broker has not taken; a write the
        broker refused, or the producer did not even queue (`unsent`), is sent again there
        until it is taken. Each acknowledged write moves the partition's persisted offset, as
        faust's own callback would (`store.py`).
        """
        self._changelog_store = store
        self._unsettled = [s for s in self._unsettled if not _acked(s.future)]
        self._unsettled += self._watched(sent)
        self._unsent += unsent

    def _watched(self, sent: list[Sent]) -> list[Sent]:
        for s in sent:
            s.future.add_done_callback(
                partial(_persisted, self._changelog_store, len(s.records)))
        return sent

    async def flush(self) -> None:
        await super().flush()
        # One at a time: a flush that began while another waits (a commit's and a
        # rebalance's) must not return before the writes the first one took are taken.
        async with self._settling:
            await self._settle_changelog()

    async def _settle_changelog(self) -> None:
        """Wait for the table writes tracked so far (not for those tracked meanwhile)."""
        pending, self._unsettled = self._unsettled, []
        failed, self._unsent = self._unsent, []
        delay = 0.1
        alone: frozenset[int] = frozenset()  # writes of a batch refused for its size
        while pending or failed:
            answers = await sending.acknowledged(pending)
            # A state is never dropped: one refused for its size alone is sent again too.
            failed += answers.again + [r for r, _ in answers.too_large]
            alone |= answers.alone
            pending = []
            while failed:
                log.error("%d table writes not acknowledged; sending them again in %.1fs",
                          len(failed), delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, CHANGELOG_RETRY_MAX_DELAY)
                sent, failed, _ = await sending.send(self._ensure_producer(), failed, alone)
                pending += self._watched(sent)

    def send_soon(self, fut: Any) -> None:
        """With transactions, hold the table's changelog writes for `publish_held`.

        faust's buffer publishes them from a task of its own, and a write that task has
        taken but not yet handed to aiokafka is in no transaction yet: a commit then takes
        the batch's offsets without its state (or, at a stop, the write fails outside any
        transaction). Held writes are published by the router itself, in order, before it
        acknowledges the batch, so the commit that covers the batch always has them.
        """
        if self.app.in_transaction:
            self._held.append(fut)
        else:
            super().send_soon(fut)

    async def publish_held(self) -> None:
        held, self._held = self._held, []
        for fut in held:
            await fut.message.channel.publish_message(fut, wait=False)

    async def commit_transactions(self, tid_to_offset_map: Mapping[str, Mapping[Any, int]],
                                  group_id: str, start_new_transaction: bool = True) -> None:
        """faust's, with the offsets keyed by aiokafka's `TopicPartition`, which it requires."""
        await super().commit_transactions(
            {tid: {TopicPartition(tp.topic, tp.partition): offset
                   for tp, offset in offsets.items()}
             for tid, offsets in tid_to_offset_map.items()},
            group_id, start_new_transaction=start_new_transaction)


def _acked(future: Any) -> bool:
    return bool(future.done() and not future.cancelled() and future.exception() is None)


def _persisted(store: Any, count: int, future: Any) -> None:
    """A table write's record batch was acknowledged: the store holds the log up to its end."""
    if not _acked(future):
        return
    metadata = future.result()  # of the batch: its first record's offset
    last = metadata.offset + count - 1
    known = store.persisted_offset(metadata.topic_partition)
    if known is None or last > known:
        store.set_persisted_offset(metadata.topic_partition, last)


class _TransactionManager(TransactionManager):
    _group: tuple[Any, int] | None = None  # (the assignor's topic groups, the inputs' group)

    def for_partition(self, partition: int) -> str:
        """The transactional id of input partition `partition`: faust's own naming, which its
        offset commit and its producers (started per assigned input partition) use."""
        return f"{self.app.conf.id}-{self._inputs_group()}-{partition}"

    def _inputs_group(self) -> int:
        """The topic group of the router's inputs, found once per assignment (the assignor
        replaces its topic groups at each one); asked for every record a batch sends."""
        topic_groups = self.app.assignor._topic_groups  # type: ignore[attr-defined]
        if self._group is None or self._group[0] is not topic_groups:
            groups = {g for t, g in topic_groups.items() if self.app.topics.acks_enabled_for(t)}
            if len(groups) != 1:
                raise RuntimeError(f"the router's inputs are in topic groups {sorted(groups)}; "
                                   "transactions need them in one")
            self._group = (topic_groups, groups.pop())
        return self._group[1]

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, timestamp: float | None, headers: Any, *,
                   transactional_id: str | None = None) -> Any:
        """Send in the transaction named, or else in that of the partition the record goes
        to: a changelog write goes to its input record's partition (`batches.as_current`)."""
        if transactional_id is None:
            if partition is None:
                raise RuntimeError(f"a record for {topic} names neither its transaction nor "
                                   "its partition")
            transactional_id = self.for_partition(partition)
        return await self.producer.send(topic, key, value, partition, timestamp, headers,
                                        transactional_id=transactional_id)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer
    TransactionManager = _TransactionManager


def register() -> None:
    """Make `flowline://host:port` a faust broker URL served by this transport, and aiokafka's
    protocol structs use compiled codecs (point 12)."""
    drivers.TRANSPORTS.aliases.setdefault("flowline", f"{__name__}:Transport")
    wire.install()
