"""Key governance: allowed models, requests and tokens per minute per application and per key, key expiry.

Each limit is a GCRA (generic cell rate algorithm) cell: one number, the theoretical arrival time `tat`,
with an emission interval T = 60 s / limit and a burst of the whole minute. A request is admitted when
every limit that applies has room (requests: one more; tokens: at least one left), and then debits one
request from each request limit and **reserves** the request's estimated prompt tokens (its body's size,
4 characters a token) from each token limit, so requests admitted together see each other's prompts.
When the answer's usage is known (the upstream's `usage`, or an estimate of a stream without it) the
difference is settled (debited, or credited back when the answer used fewer); a request that gets no
answer (refused by a stage, upstream error, client gone) has its reservation credited back. A request
may still overdraw by its completion; the next ones wait until the minute has drained it.

With a Redis store configured the cells live in Redis and one Lua script checks and debits all the
limits of a request atomically, in one round trip, over a small pipelined RESP connection of our own
(proxy/resp.py; redis-py's asyncio client costs several times the loopback round trip). When Redis does
not answer within `_REDIS_TIMEOUT_S` (or is down) the same cells are kept in this process (per-replica
limits, never unlimited, never an error) and Redis is tried again after `_RETRY_REDIS_S`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.errors import RedisError  # noqa: F401  (re-exported; defined there)
from gateway.proxy.resp import RespClient

log = logging.getLogger("gateway.limits")
WINDOW_S = 60.0
_REDIS_TIMEOUT_S = 0.05
_RETRY_REDIS_S = 1.0

# KEYS: one cell per limit. ARGV: for each limit, its limit, the cost checked and the cost debited (a
# check of 0 is a debit after the fact, e.g. the tokens an answer used: always written, never refused).
# Returns {denied (1-based index of the first limit without room, 0 if none), wait in ms, then per limit
# remaining and ms until the cell is full again}. Time comes from Redis, shared by all replicas.
LUA = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local denied, wait = 0, 0
local tats, out = {}, {}
for i = 1, #KEYS do
  local limit, check, debit = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local T = 60 / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local over = tat + T * check - now - 60
  if check > 0 and over > 0.000001 and denied == 0 then denied = i end
  if check > 0 and over > wait then wait = over end
  tats[i] = tat + T * debit
  if debit < 0 and tats[i] < now then tats[i] = now end
  out[2*i+1] = math.max(math.floor((60 - (tats[i] - now)) / T), 0)
  out[2*i+2] = math.ceil((tats[i] - now) * 1000)
end
if denied == 0 then
  for i = 1, #KEYS do
    if tats[i] > now then redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil((tats[i] - now) * 1000) + 1000)
    elseif tonumber(ARGV[3*i]) < 0 then redis.call('DEL', KEYS[i]) end
  end
end
out[1] = denied
out[2] = math.ceil(wait * 1000)
return out
"""


@dataclass(frozen=True, slots=True)
class Rule:
    """What one application or key may do; None: no limit of that kind."""

    models: tuple[str, ...] = ()  # globs; empty: every model
    rpm: int | None = None
    tpm: int | None = None
    expires_at: float | None = None  # unix time

    def allows(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, glob) for glob in self.models)


@dataclass(slots=True)
class Verdict:
    """The outcome of a check: `denied` names the limit (requests/tokens, application/key) without room."""

    denied: str | None = None
    retry_after_s: float = 0.0
    headers: list[tuple[bytes, bytes]] | None = None
    backend: str = "none"
    # per token cell (by key): when, on this process's monotonic clock, the cell is full again after this
    # request's reservation, i.e. when the reservation has wholly drained (see Limiter.settle)
    reserved_until: dict[str, float] | None = None


@dataclass(slots=True)
class Cell:
    key: str
    limit: int
    kind: str  # "requests" or "tokens"
    scope: str  # "application" or "key"


def expires(value: object) -> float | None:
    """A key's expiry as unix time (datetimes without a zone are UTC)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class LocalCells:
    """The same GCRA cells in this process: the fallback, and the backend without Redis."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    def run(self, cells: list[Cell], check: list[float], debit: list[float]) -> list[float]:
        now = time.monotonic()
        denied, wait, tats, out = 0, 0.0, [], [0.0, 0.0]
        for i, cell in enumerate(cells):
            t = WINDOW_S / cell.limit
            tat = max(self._tat.get(cell.key, 0.0), now)
            over = tat + t * check[i] - now - WINDOW_S
            if check[i] > 0 and over > 1e-6 and not denied:  # a debit alone (check 0) is never refused
                denied = i + 1
            if check[i] > 0:
                wait = max(wait, over)
            tats.append(max(tat + t * debit[i], now) if debit[i] < 0 else tat + t * debit[i])
            out += [max(math.floor((WINDOW_S - (tats[i] - now)) / t), 0), math.ceil((tats[i] - now) * 1000)]
        if not denied:
            for cell, tat in zip(cells, tats):
                self._tat[cell.key] = tat
            if len(self._tat) > 100_000:  # drop full cells (nothing owed) to bound memory
                self._tat = {k: v for k, v in self._tat.items() if v > now}
        out[0], out[1] = denied, math.ceil(wait * 1000)
        return out


class Limiter:
    """Checks and debits the limits of a request: in Redis when one is configured, else (or while it is
    unreachable) in this process."""

    def __init__(self, redis_url: str | None = None, prefix: str = "gg:") -> None:
        self._local = LocalCells()
        self._redis = RespClient(redis_url) if redis_url else None
        self._prefix = prefix + "rl:"
        self._sha: bytes | None = None
        self._redis_down_until = 0.0
        self.fallbacks = 0  # checks served locally because Redis did not answer

    @staticmethod
    def cells(app_id: str, app: Rule, key_id: str, key: Rule | None) -> list[Cell]:
        out = []
        for scope, ident, rule in (("application", app_id, app), ("key", key_id, key)):
            if rule is None:
                continue
            if rule.rpm:
                out.append(Cell(f"{scope}:{ident}:r", rule.rpm, "requests", scope))
            if rule.tpm:
                out.append(Cell(f"{scope}:{ident}:t", rule.tpm, "tokens", scope))
        return out

    async def check(self, cells: list[Cell], reserve_tokens: int = 0) -> Verdict:
        """Admit a request if every cell has room; debit one request and reserve `reserve_tokens`."""
        if not cells:
            return Verdict()
        check = [1.0] * len(cells)
        debit = [1.0 if c.kind == "requests" else float(max(reserve_tokens, 0)) for c in cells]
        out, backend = await self._run(cells, check, debit)
        denied, wait_ms = int(out[0]), int(out[1])
        verdict = Verdict(backend=backend, headers=_headers(cells, out))
        if reserve_tokens > 0 and not denied:
            now = time.monotonic()
            verdict.reserved_until = {c.key: now + out[2 * i + 3] / 1000.0 for i, c in enumerate(cells)
                                      if c.kind == "tokens"}
        if denied:
            cell = cells[denied - 1]
            verdict.denied = f"{cell.kind} per minute of this {cell.scope}"
            verdict.retry_after_s = max(wait_ms / 1000.0, 0.001)
        return verdict

    async def debit_tokens(self, cells: list[Cell], tokens: int) -> None:
        """Debit `tokens` from the token cells, or credit them back when negative (never refused)."""
        token_cells = [c for c in cells if c.kind == "tokens"]
        if token_cells and tokens != 0:
            await self._run(token_cells, [0.0] * len(token_cells), [float(tokens)] * len(token_cells))

    async def settle(self, cells: list[Cell], reserved: int, used: int,
                     reserved_until: dict[str, float] | None) -> None:
        """Settle a reservation of `reserved` tokens made at admission with the `used` ones: debit the
        rest, or credit back the excess, but never more of it than is still ahead in each cell (a
        reservation that has drained already must not take from the reservations made after it)."""
        token_cells = [c for c in cells if c.kind == "tokens"]
        owed = used - reserved
        if not token_cells or owed == 0:
            return
        if owed > 0 or not reserved_until:
            await self.debit_tokens(cells, owed)
            return
        now = time.monotonic()
        credits = [-float(min(-owed, math.floor(max(0.0, reserved_until.get(c.key, now) - now) * c.limit / WINDOW_S)))
                   for c in token_cells]
        if any(credits):
            await self._run(token_cells, [0.0] * len(token_cells), credits)

    async def _run(self, cells: list[Cell], check: list[float], debit: list[float]) -> tuple[list[float], str]:
        redis = self._redis
        if redis is not None and time.monotonic() >= self._redis_down_until:
            try:
                async with asyncio.timeout(_REDIS_TIMEOUT_S):
                    return await self._eval(redis, cells, check, debit), "redis"
            except (OSError, ConnectionError, TimeoutError, RedisError, ValueError) as exc:
                self._redis_down_until = time.monotonic() + _RETRY_REDIS_S
                redis.close(exc)
                log.warning("rate limits kept per replica: Redis did not answer", extra={"fields": {
                    "error": type(exc).__name__}})
        if redis is not None:
            self.fallbacks += 1
        return self._local.run(cells, check, debit), "local"

    async def _eval(self, redis: RespClient, cells: list[Cell], check: list[float], debit: list[float]) -> list[float]:
        keys = [self._prefix + c.key for c in cells]
        argv: list[bytes | str | int | float] = []
        for cell, c, d in zip(cells, check, debit):
            argv += [cell.limit, repr(c), repr(d)]
        for _ in range(2):
            if self._sha is None:
                sha = await redis.call("SCRIPT", "LOAD", LUA)
                if isinstance(sha, Exception):
                    raise sha
                self._sha = sha  # type: ignore[assignment]
            reply = await redis.call("EVALSHA", self._sha, len(keys), *keys, *argv)  # type: ignore[arg-type]
            if isinstance(reply, RedisError) and str(reply).startswith("NOSCRIPT"):
                self._sha = None
                continue
            if isinstance(reply, Exception):
                raise reply
            return [float(x) for x in reply]  # type: ignore[attr-defined]
        raise RedisError("script could not be loaded")

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _headers(cells: list[Cell], out: list[float]) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers, from the tightest cell of each kind."""
    best: dict[str, tuple[float, int, float]] = {}
    for i, cell in enumerate(cells):
        remaining, reset_ms = out[2 * i + 2], out[2 * i + 3]
        if cell.kind not in best or remaining < best[cell.kind][0]:
            best[cell.kind] = (remaining, cell.limit, reset_ms)
    headers = []
    for kind, (remaining, limit, reset_ms) in best.items():
        headers += [(b"x-ratelimit-limit-" + kind.encode(), str(limit).encode()),
                    (b"x-ratelimit-remaining-" + kind.encode(), str(int(remaining)).encode()),
                    (b"x-ratelimit-reset-" + kind.encode(), _duration(reset_ms / 1000.0).encode())]
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's reset format: 6m0s, 1s, 120ms."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)  # rounded first: 119.7 s is 2m0s, never 1m60s
    return f"{minutes}m{rest}s"
