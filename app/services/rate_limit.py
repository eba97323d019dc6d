"""A token bucket in Redis shared by every worker of every process (reference 3).

One bucket per business phone number id. It is a GCRA ("generic cell rate algorithm")
bucket that hands out *reservations*: `TokenBucket.reserve` atomically books the next
free slot and returns how long the caller must wait before using it, so callers sleep
once instead of polling, and N workers together never exceed the rate. The bucket lives
in one Redis key (the theoretical arrival time, in microseconds of Redis's own clock, so
the workers' clocks do not matter) and is updated by one Lua script.

Burst: ``burst`` slots may be used back to back after an idle spell. It is kept small
(a tenth of a second's worth by default): in any one-second window the API then sees
at most ``rate + burst`` sends, well inside Meta's (and the local fake's) own bucket,
while the short pauses between a worker's chunks (claiming, recording) cost no
throughput.
"""

from __future__ import annotations

import math
import threading
import time

from redis import Redis

# KEYS[1]: the bucket key. ARGV: emission interval (µs), burst tolerance (µs). The key
# lives as long as its bookings reach into the future, plus a second.
# Returns the wait in microseconds before the reserved slot (0 = go now).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed_at = tat - tolerance
local wait = 0
if allowed_at > now then wait = allowed_at - now end
local ttl = math.floor((tat + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl)
return wait
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
        wait_us = self._script(keys=[self.key], args=[self._interval, self._tolerance])
        return int(wait_us) / 1_000_000

    def acquire(self) -> float:
        """Book one slot and sleep until it is due; returns the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait


def number_bucket(redis: Redis, phone_number_id: str, mps: float) -> TokenBucket:
    """The shared bucket of a business phone number at ``mps`` messages per second."""
    return TokenBucket(redis, f"woffice:wa-rate:{phone_number_id}", mps)


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
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            wait = max(0.0, tat - self._interval * (self.burst - 1) - now)
            self._tat = tat + self._interval
            return wait

    def acquire(self) -> float:
        """Book one slot and sleep until it is due; returns the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)
        return wait
