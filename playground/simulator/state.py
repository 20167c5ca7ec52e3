"""Everything the simulator remembers: config, clock, faults, requests and cache.

One :class:`SimulatorState` backs one app. It is only touched from the server's
event loop (request handlers and the control API), so it needs no locks; other
threads and processes go through the HTTP control API under ``/_sim/``.
"""

import copy
import dataclasses
import time
import types
import uuid
from dataclasses import dataclass, field

from .cache import PromptCache
from .replies import REPLY_MODES


@dataclass(frozen=True)
class Config:
    """Operator settings; ``POST /_sim/config`` updates any subset of them."""

    reply_mode: str = "prose"
    # Output tokens per reply, before max_tokens / max_output_tokens cut it.
    reply_tokens: int = 60
    # Streaming pace; 0 sends as fast as possible.
    tokens_per_second: float = 200.0
    first_token_delay: float = 0.05
    # Idle lifetime of in-memory cache entries, in seconds.
    cache_ttl: float = 300.0
    # Requests per minute one bucket takes before spilling over; 0 disables spill-over.
    spillover_rpm: int = 15
    # Keep the emission time of every streamed content chunk (latency benchmarks).
    record_emissions: bool = False
    # Context window used for every model instead of its own (to hit the limit cheaply).
    context_window_override: int | None = None

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, item.name, float(value))
            elif not _is_instance(value, item.type):
                raise ValueError(f"config {item.name!r} must be {_type_name(item.type)}, got {value!r}")
        if self.reply_mode not in REPLY_MODES:
            raise ValueError(f"config 'reply_mode' must be one of {', '.join(REPLY_MODES)}")
        minimums = {"reply_tokens": 1, "tokens_per_second": 0, "first_token_delay": 0, "spillover_rpm": 0}
        for name, minimum in minimums.items():
            if getattr(self, name) < minimum:
                raise ValueError(f"config {name!r} must be at least {minimum}")
        if self.cache_ttl <= 0:
            raise ValueError("config 'cache_ttl' must be positive")
        if self.context_window_override is not None and self.context_window_override < 1:
            raise ValueError("config 'context_window_override' must be at least 1")

    def updated(self, changes: dict) -> "Config":
        """A copy with ``changes`` applied; raises ValueError on unknown or bad values."""
        unknown = set(changes) - {item.name for item in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_instance(value: object, kind: type | types.UnionType) -> bool:
    if kind is int or (isinstance(kind, types.UnionType) and int in kind.__args__):
        if isinstance(value, bool):
            return False
    return isinstance(value, kind)


def _type_name(kind: type | types.UnionType) -> str:
    return str(kind) if isinstance(kind, types.UnionType) else kind.__name__


class Clock:
    """Monotonic seconds plus an offset, so tests can fast-forward cache expiry."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds

    def as_dict(self) -> dict:
        return {"offset": self.offset, "now": self.now()}


STREAM_FAULTS = ("cut_after_chunks", "hang_after_chunks", "malformed_after_chunks")
_MATCH_KEYS = {"path", "model", "stream"}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass
class FaultRule:
    """One injected failure, as posted to ``/_sim/faults`` (see control.py).

    A rule with a ``*_after_chunks`` field only matches streaming requests.
    """

    status: int | None = None
    retry_after: int | float | None = None
    code: str | None = None
    message: str | None = None
    type: str | None = None
    delay: float = 0.0
    cut_after_chunks: int | None = None
    hang_after_chunks: int | None = None
    malformed_after_chunks: int | None = None
    times: int = 1
    match: dict = field(default_factory=dict)
    id: int = 0

    @classmethod
    def from_json(cls, data: object) -> "FaultRule":
        """Build a rule from control-API JSON; raises ValueError when it makes no sense."""
        if not isinstance(data, dict):
            raise ValueError("a fault rule is a JSON object")
        known = {item.name for item in dataclasses.fields(cls)} - {"id"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        rule = cls(**data)
        stream_faults = [name for name in STREAM_FAULTS if getattr(rule, name) is not None]
        checks = (
            (rule.status is None or _is_count(rule.status) and 400 <= rule.status <= 599,
             "'status' must be an HTTP error status (400-599)"),
            (rule.retry_after is None or _is_number(rule.retry_after), "'retry_after' must be a number of seconds"),
            (_is_number(rule.delay) and rule.delay >= 0, "'delay' must be a non-negative number of seconds"),
            (all(_is_count(getattr(rule, name)) for name in stream_faults),
             "'*_after_chunks' must be a non-negative integer"),
            (len(stream_faults) <= 1, f"pick one of {', '.join(STREAM_FAULTS)}"),
            (rule.status is not None or stream_faults or rule.delay,
             f"a fault needs 'status', 'delay' or one of {', '.join(STREAM_FAULTS)}"),
            (_is_count(rule.times) and rule.times >= 1, "'times' must be a positive integer"),
            (isinstance(rule.match, dict) and not set(rule.match) - _MATCH_KEYS,
             f"'match' may only hold {', '.join(sorted(_MATCH_KEYS))}"),
        )
        for ok, problem in checks:
            if not ok:
                raise ValueError(problem)
        return rule

    @property
    def stream_fault(self) -> tuple[str, int] | None:
        """(kind, after_chunks) for a mid-stream fault: kind is cut, hang or malformed."""
        for name in STREAM_FAULTS:
            if getattr(self, name) is not None:
                return name.removesuffix("_after_chunks"), getattr(self, name)
        return None

    def matches(self, path: str, model_names: set[str], stream: bool) -> bool:
        if self.stream_fault and not stream:
            return False
        wanted = self.match
        return (
            wanted.get("path", path) == path
            and ("model" not in wanted or wanted["model"] in model_names)
            and wanted.get("stream", stream) == stream
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class FaultQueue:
    """Fault rules, consumed in order: the first matching rule applies."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def add(self, rule: FaultRule) -> FaultRule:
        rule.id = self._next_id
        self._next_id += 1
        self._rules.append(rule)
        return rule

    def take_named(self, path: str) -> FaultRule | None:
        """A status/delay rule that names `path` explicitly (used for GET /v1/models).

        Only explicit rules apply there, so an unscoped fault queued for a generation is not
        consumed by the key check that usually precedes it.
        """
        for rule in self._rules:
            if rule.match.get("path") == path and rule.stream_fault is None:
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def take(self, path: str, model_names: set[str], stream: bool) -> FaultRule | None:
        """The first rule matching this request, with one of its ``times`` used up."""
        for rule in self._rules:
            if rule.matches(path, model_names, stream):
                rule.times -= 1
                if rule.times == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def as_list(self) -> list[dict]:
        return [rule.as_dict() for rule in self._rules]

    def clear(self) -> int:
        cleared = len(self._rules)
        self._rules.clear()
        return cleared


@dataclass
class RequestRecord:
    """One request as ``GET /_sim/requests`` shows it (key fingerprints only)."""

    id: str
    method: str
    path: str
    received_at: float
    api_key_fingerprint: str | None = None
    org_fingerprint: str | None = None
    body: object = None
    model: str | None = None
    stream: bool = False
    status: int | None = None
    usage: dict | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    spilled: bool | None = None
    # None for non-streaming requests; True once the stream's last event was sent.
    stream_completed: bool | None = None
    fault: dict | None = None

    def as_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))


class RequestLog:
    """Every /v1 request in arrival order, plus per-chunk emission times when asked."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        # request id -> [(monotonic, wall)] per streamed content chunk.
        self.emissions: dict[str, list[tuple[float, float]]] = {}

    def open(self, method: str, path: str) -> RequestRecord:
        record = RequestRecord(id=f"req_{uuid.uuid4().hex}", method=method, path=path, received_at=time.time())
        self.records.append(record)
        return record

    def clear(self) -> int:
        cleared = len(self.records)
        self.records.clear()
        self.emissions.clear()
        return cleared


class SimulatorState:
    """The state behind one simulator app; ``reset`` returns it to its start."""

    def __init__(self, config: Config | None = None) -> None:
        self.initial_config = config or Config()
        self.config = self.initial_config
        self.clock = Clock()
        self.cache = PromptCache(self.clock.now)
        self.faults = FaultQueue()
        self.log = RequestLog()

    def reset(self) -> None:
        """Clear requests, faults, cache and clock offset; restore the startup config."""
        self.config = self.initial_config
        self.clock.offset = 0.0
        self.cache.clear()
        self.faults.clear()
        self.log.clear()
