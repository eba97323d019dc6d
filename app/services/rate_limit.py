"""A token bucket in Redis shared by every worker of every process (reference 3).

One bucket per business phone number id. It is a GCRA ("generic cell rate algorithm")
bucket that hands out *reservations*: `TokenBucket.reserve` atomically books the next
free slot and returns how long the caller must wait before using it, so callers sleep
once instead of polling, and N workers together never exceed the rate. The bucket lives
in one Redis key (the theoretical arrival time, in microseconds of Redis's own clock, so
the workers' clocks do not matter) and is updated by one Lua script.

Burst: ``burst`` slots may be used back to back after an idle spell. The allowance is
small (`default_burst`: a tenth of a second's worth): in any one-second window the API
sees at most ``rate + default_burst(rate)`` sends, well inside Meta's (and the local
fake's) own bucket. The bucket of a number (`number_bucket`) books only half of that
allowance as its own burst: the other half absorbs the jitter between a booked slot
and the request reaching the API (a thread woken late, then on-time ones: measured at
the receiver, a few sends of the same window bunch up).

Booking in batches: `TokenBucket.reserve_many` books n consecutive slots in one Redis
round trip, and `SlotBatcher` hands such slots out one by one to the sending threads of
one process, so a worker pays one round trip per few tens of milliseconds of sending,
not one per message.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from redis import Redis

# KEYS[1]: the bucket key. ARGV: emission interval (µs), burst tolerance (µs), number
# of consecutive slots to book. The key lives as long as its bookings reach into the
# future, plus a second. Returns the offset in microseconds from now to the first
# booked slot (<= 0: due now); slot i is due ``interval * i`` after it.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local count = tonumber(ARGV[3] or '1')
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local first = tat - tolerance - now
local last = tat + interval * count
local ttl = math.floor((last - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', last), 'PX', ttl)
return first
"""


def default_burst(rate: float) -> int:
    """A tenth of a second's worth of sends, at least one."""
    return max(1, math.ceil(rate / 10))


class TokenBucket:
    """A Redis-backed rate limit of ``rate`` per second with ``burst`` slack."""

    def __init__(self, redis: Redis, key: str, rate: float, burst: int | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.redis, self.key, self.rate = redis, key, float(rate)
        self.burst = burst if burst is not None else default_burst(rate)
        self._interval = max(1, round(1_000_000 / self.rate))
        self._tolerance = self._interval * max(0, self.burst - 1)
        self._script = redis.register_script(_RESERVE)

    def reserve(self) -> float:
        """Book one slot; seconds to wait before using it (0.0 = now)."""
        return self.reserve_many(1)[0]

    def reserve_many(self, count: int) -> list[float]:
        """Book ``count`` consecutive slots at once; the seconds to wait for each."""
        first_us = int(self._script(keys=[self.key], args=[self._interval, self._tolerance, count]))
        return _waits(first_us / 1_000_000, self._interval / 1_000_000, count)

    def acquire(self) -> float:
        """Book one slot and sleep until it is due; returns the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait


def _waits(first: float, interval: float, count: int) -> list[float]:
    """Waits of ``count`` slots ``interval`` apart, the first ``first`` from now."""
    return [max(0.0, first + interval * i) for i in range(count)]


def sending_burst(rate: float) -> int:
    """The burst a number's bucket books: half the allowance, the rest is for jitter."""
    return max(1, default_burst(rate) // 2)


def number_bucket(redis: Redis, phone_number_id: str, mps: float) -> TokenBucket:
    """The shared bucket of a business phone number at ``mps`` messages per second."""
    return TokenBucket(redis, f"woffice:wa-rate:{phone_number_id}", mps, sending_burst(mps))


class LocalBucket:
    """The same reservations within one process (inline mode: no Redis, one worker)."""

    def __init__(self, rate: float, burst: int | None = None):
        self.rate = float(rate)
        self.burst = burst if burst is not None else default_burst(rate)
        self._interval = 1.0 / self.rate
        self._tat = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book one slot; seconds to wait before using it."""
        return self.reserve_many(1)[0]

    def reserve_many(self, count: int) -> list[float]:
        """Book ``count`` consecutive slots at once; the seconds to wait for each."""
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            self._tat = tat + self._interval * count
        return _waits(tat - self._interval * (self.burst - 1) - now, self._interval, count)

    def acquire(self) -> float:
        """Book one slot and sleep until it is due; returns the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait


class SlotBatcher:
    """Hands out slots of ``bucket`` to the threads of one process, booking them in
    batches of up to ``ahead`` seconds' worth (one Redis round trip per batch).

    A booked slot is a time; a thread that wakes up late for it (the process was not
    scheduled, or another thread held the GIL) would fire together with the on-time
    ones after it. So each send also passes a local pacer at the same rate, keyed on
    when the sends really leave. A slot booked but never used (the chunk stopped) is
    simply lost: the limit only ever errs on the slow side.
    """

    def __init__(self, bucket: TokenBucket | LocalBucket, ahead: float = 0.02):
        self.bucket = bucket
        self.batch = max(1, min(int(bucket.rate * ahead), bucket.burst))
        self._slots: deque[float] = deque()  # due times, time.monotonic()
        self._lock = threading.Lock()
        self._pace = LocalBucket(bucket.rate, bucket.burst)

    def acquire(self) -> float:
        """Take the next booked slot (booking a batch if none is left) and sleep until
        it is due, then until the local pacer lets it go; returns the seconds slept."""
        with self._lock:
            if not self._slots:
                now = time.monotonic()
                self._slots.extend(now + w for w in self.bucket.reserve_many(self.batch))
            due = self._slots.popleft()
        wait = max(0.0, due - time.monotonic())
        if wait > 0:
            time.sleep(wait)
        return wait + self._pace.acquire()
