# size: one schema: a frozen model per section of the config file, whose field descriptions are the
# generated configuration reference (docs/configuration.md); guard_schema.py holds policies and stages
"""The config file's shape: immutable, validated models for each section (DESIGN section 3)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.config.guard_schema import PolicySpec, StageSpec

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Frozen):
    """Where the gateway listens and how much it accepts."""

    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 to listen on all interfaces.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Larger request bodies get a 413.")
    access_log: bool = Field(True, description="One structured JSON line per request on stderr.")
    graceful_timeout_s: float = Field(30.0, gt=0, description="On SIGTERM, how long in-flight requests may finish.")
    monitoring_buffer: int = Field(1000, ge=0, description="Guarded requests kept in the in-process monitoring log.")
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024, description="Larger request line plus "
                                  "headers get a 431 and the connection closes.")
    max_headers: int = Field(100, ge=10, le=10_000, description="More request headers get a 431.")
    header_timeout_s: float = Field(10.0, gt=0, description="A request's headers must arrive within this of the "
                                    "connection opening or the request's first byte, else 408 and close.")
    body_timeout_s: float = Field(60.0, gt=0, description="A request's body must arrive within this of its "
                                  "headers, else 408 and close.")
    max_concurrent_requests: int = Field(1024, ge=1, description="Proxied requests served at once (streams "
                                         "included, until their last byte); more wait in the pending queue.")
    max_pending_requests: int = Field(256, ge=0, description="Requests waiting for a slot; beyond it a request "
                                      "gets an immediate 503 gateway_overloaded with Retry-After.")
    pending_timeout_s: float = Field(2.0, gt=0, description="Longest wait in the pending queue before a 503 "
                                     "gateway_overloaded.")
    console: bool = Field(True, description="Serve the web console at /console/ (only where admin.tokens exist: "
                          "it is a client of the admin API); false leaves it out (404).")


class UpstreamConfig(_Frozen):
    """An OpenAI-compatible endpoint; the first whose `models` glob matches a request's model serves it."""

    name: Name = Field(description="Unique name; a metric label and the name in errors.")
    base_url: str = Field(description="Base URL including the API version path, e.g. https://api.openai.com/v1.")
    api_key: str | None = Field(None, description="Sent upstream as a bearer token; never shown to clients or logs.")
    models: tuple[NonEmpty, ...] = Field((), validate_default=True, description="Model name globs (fnmatch, "
                                         "case-sensitive); may be left out for an upstream that is only a "
                                         "deployment of `routing.groups`.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Longest wait to open a connection (504 upstream_timeout).")
    first_byte_timeout_s: float = Field(600.0, gt=0, description="Longest wait from sending the request to the "
                                        "upstream's response headers; a non-streamed answer is generated whole first.")
    idle_timeout_s: float = Field(300.0, gt=0, description="Longest silence between two chunks of the upstream's "
                                  "body once its headers came (a stream ends with an error event).")
    total_timeout_s: float = Field(1800.0, gt=0, description="Longest whole exchange: connecting, waiting and "
                                   "reading the whole body or stream, together.")
    timeout_s: float | None = Field(None, gt=0, description="Older shorthand: sets first_byte_timeout_s and "
                                    "idle_timeout_s where they are not given.")
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest answer read whole (not "
                                    "streamed), decoded; larger gets a 502 upstream_response_too_large. Error "
                                    "answers are held to 1 MiB.")
    max_connections: int = Field(256, ge=1, description="Connection pool size towards this upstream.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers sent upstream (e.g. OpenAI-Organization).")
    discover_models: bool = Field(True, description="GET /v1/models asks this upstream for its model list.")
    kind: Literal["openai", "azure"] = Field("openai", description="openai: an OpenAI-compatible API under "
                                             "base_url. azure: Azure OpenAI; base_url is the resource, e.g. "
                                             "https://{resource}.openai.azure.com, the key goes in an api-key "
                                             "header, chat completions, completions and embeddings go to "
                                             "/openai/deployments/{deployment}/...?api-version=, everything else "
                                             "(responses, pass-through) to the v1 API /openai/v1/... with the "
                                             "deployment as the body's model.")
    api_version: NonEmpty | None = Field(None, description="kind azure: the api-version query of deployment URLs "
                                         "(e.g. 2024-10-21); required there, refused elsewhere.")
    deployments: dict[NonEmpty, NonEmpty] = Field(default_factory=dict, description="kind azure: model name -> "
                                                  "deployment name; a model not listed is its own deployment name.")
    passthrough: tuple[Annotated[str, StringConstraints(pattern=r"^/")], ...] = Field(
        (), description="Other /v1 routes relayed to this upstream, as globs on the path under /v1 (e.g. "
                        "['/images/*', '/audio/*', '/files*', '/batches*', '/responses/*']); default none: "
                        "those routes get 404. The gateway's keys, limits, metrics, header hygiene and input "
                        "stages (on JSON text fields) apply; see docs/routing.md.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand_timeout(cls, data: Any) -> Any:
        given = data.get("timeout_s") if isinstance(data, dict) else None
        if isinstance(given, (int, float)) and not isinstance(given, bool) and given > 0:  # else its own error
            data = {"first_byte_timeout_s": given, "idle_timeout_s": given, **data}
        return data

    @field_validator("models")
    @classmethod
    def _some_models(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # Only a config whose routing.groups name this upstream (the loader says which) may leave them out.
        if not value and info.data.get("name") not in (info.context or {}).get("deployed", ()):
            raise PydanticCustomError("too_short", "List should have at least 1 item after validation, not 0",
                                      {"min_length": 1, "actual_length": 0})
        return value

    @model_validator(mode="after")
    def _azure_fields(self) -> "UpstreamConfig":
        if self.kind == "azure" and self.api_version is None:
            raise ValueError("kind azure needs api_version (the api-version of deployment URLs, e.g. 2024-10-21)")
        if self.kind != "azure" and (self.api_version is not None or self.deployments):
            raise ValueError("api_version and deployments are for kind: azure only")
        return self

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _empty_key_is_none(cls, value: str | None) -> str | None:
        if value and not _header_safe(value):
            raise ValueError("must be printable ASCII (it is sent as an HTTP header)")
        return value or None

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if not _header_safe(text):
                raise ValueError(f"the value of {name!r} must be printable ASCII")
        return value


class DeploymentConfig(_Frozen):
    """One upstream serving a model group."""

    upstream: Name = Field(description="The `upstreams[].name` that serves this deployment.")
    weight: float = Field(1.0, gt=0, le=1000, description="Share of the group's traffic under strategy weighted.")
    model: NonEmpty | None = Field(None, description="Model name sent to this upstream (e.g. its own name for the "
                                   "model); default: the name the request resolved to.")


class RetryConfig(_Frozen):
    """Retries of a model group: only before the first byte reached the client, on connection failures, resets
    and first-byte timeouts, and on the statuses in `on_status`."""

    max_retries: int = Field(2, ge=0, le=10, description="Attempts after the first within the group.")
    backoff_s: float = Field(0.05, ge=0, le=60, description="Base of the jittered exponential backoff: the n-th "
                             "retry waits a uniform random time in [0, backoff_s x 2^n], at most max_backoff_s.")
    max_backoff_s: float = Field(2.0, ge=0, le=300, description="Longest backoff between two attempts.")
    retry_after_cap_s: float = Field(10.0, ge=0, le=600, description="A Retry-After up to this is waited before "
                                     "trying the same deployment again; a longer one skips that deployment.")
    on_status: tuple[int, ...] = Field((429, 500, 502, 503, 504), description="Upstream statuses retried.")
    budget_ratio: float = Field(0.2, ge=0, le=10, description="Retry budget: retries earned per request (0.2: "
                                "retries stay under 20% of traffic when an upstream fails entirely).")
    budget_burst: float = Field(10.0, ge=0, le=10_000, description="Retries the budget holds at most (and starts "
                                "with).")


class HealthConfig(_Frozen):
    """Passive health: consecutive failures eject a deployment for a growing interval (never the last healthy)."""

    consecutive_failures: int = Field(5, ge=0, le=1000, description="Failures in a row (connection, timeout, 5xx) "
                                      "that eject a deployment; 0 never ejects.")
    ejection_s: float = Field(5.0, gt=0, le=3600, description="First ejection interval; doubled by each ejection "
                              "that follows without a success between.")
    max_ejection_s: float = Field(300.0, gt=0, le=86400, description="Longest ejection interval.")


class ModelGroupConfig(_Frozen):
    """Client-facing model names served by several deployments, with retries, fallbacks and passive health."""

    name: Name = Field(description="Unique name; a metric label (gateway_upstream_attempts_total{group}).")
    models: tuple[NonEmpty, ...] = Field(min_length=1, description="Model names or globs this group serves; "
                                         "groups are matched before the upstreams' own globs.")
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1, description="The upstreams serving it.")
    strategy: Literal["weighted", "least_in_flight"] = Field("weighted", description="weighted: random by weight; "
                                                             "least_in_flight: fewest requests in flight per weight.")
    retry: RetryConfig = Field(RetryConfig(), description="Retries before the first byte (see below).")
    health: HealthConfig = Field(HealthConfig(), description="Passive ejection (see below).")
    fallbacks: tuple[NonEmpty, ...] = Field((), description="Model names tried in order once this group's "
                                            "attempts failed, before the first byte only.")
    deadline_s: float | None = Field(None, gt=0, description="One deadline for all attempts and the whole exchange "
                                     "(never timeout x retries); default: each upstream's own total_timeout_s.")


class RoutingConfig(_Frozen):
    """Opt-in routing beyond the upstreams' globs: model groups and aliases."""

    groups: tuple[ModelGroupConfig, ...] = Field((), description="Model groups, matched in order before upstream "
                                                 "globs.")
    aliases: dict[NonEmpty, NonEmpty] = Field(default_factory=dict, description="Client-facing model name -> the "
                                              "model it stands for (routed as that name and sent upstream under it); "
                                              "listed by GET /v1/models.")


def _header_safe(text: str) -> bool:
    return text.isascii() and text.isprintable()


class KeyRule(_Frozen):
    """One key's own limits, beside its application's (both apply)."""

    key: NonEmpty | None = Field(None, description="The key (or give key_sha256).")
    key_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        None, description="The key's hex SHA-256, to keep the key itself out of the file.")
    models: tuple[NonEmpty, ...] = Field((), description="Model globs this key may use (empty: its application's).")
    rpm: int | None = Field(None, ge=1, description="Requests per minute for this key.")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute for this key (prompt + completion).")
    expires_at: datetime | None = Field(None, description="After this time (ISO 8601; UTC if no zone) the key "
                                        "gets 401 expired_api_key.")

    @model_validator(mode="after")
    def _one_key(self) -> "KeyRule":
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key and key_sha256")
        return self


class ApplicationConfig(_Frozen):
    """A client of the gateway, identified by the bearer keys it sends."""

    id: Name = Field(description="Unique id; a metric label.")
    keys: tuple[NonEmpty, ...] = Field(min_length=1, description="Bearer keys (virtual keys) this application sends; "
                                       "an entry may be a mapping {key, models, rpm, tpm, expires_at} (see key_rules).")
    stages: tuple[Name, ...] = Field((), description="The application's own stages; central stages always apply.")
    allow_request_stages: bool = Field(True, description="May requests add stages in a `guardrails` body field.")
    models: tuple[NonEmpty, ...] = Field((), description="Model globs (client-facing names) this application may "
                                         "use; empty: all. Others get 403 model_not_allowed.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute for all its keys together (429 "
                            "rate_limit_exceeded with Retry-After and x-ratelimit-* headers).")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute (the upstream's usage; estimated for a "
                            "stream without it) for all its keys together.")
    key_rules: tuple[KeyRule, ...] = Field((), description="Per-key limits and expiry; `keys` entries written as "
                                           "mappings land here.")

    @model_validator(mode="before")
    @classmethod
    def _keys_with_rules(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("keys"), list) and any(
                isinstance(k, dict) for k in data["keys"]):
            rules = [k for k in data["keys"] if isinstance(k, dict)]
            keys = [k.get("key") if isinstance(k, dict) else k for k in data["keys"]]
            data = {**data, "keys": keys, "key_rules": [*data.get("key_rules", ()), *rules]}
        return data


class AdminToken(_Frozen):
    token: NonEmpty = Field(description="The bearer token an administrator sends.")
    role: Annotated[str, StringConstraints(pattern=r"^(central|app:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")] = Field(
        description="`central` (everything) or `app:<application id>` (that application only).")


class AdminConfig(_Frozen):
    tokens: tuple[AdminToken, ...] = Field((), description="Admin API tokens (the monitoring log today).")


class GuardSettings(_Frozen):
    corrector_model: str | None = Field(None, description="Model that writes the Evaluate API's corrections.")
    generator_model: str | None = Field(None, description="Model that writes synthetic training data for policies "
                                                          "(admin API `generate`).")


DETECTOR_NAMES = ("prompt_injection", "harmful", "toxicity")


class ScoringConfig(_Frozen):
    """Model-based metrics: the shared ONNX text encoder, micro-batching and the score cache."""

    precision: Literal["fp32", "int8"] = Field("int8", description="Encoder weights. int8 (dynamic quantisation) is "
                                               "about twice as fast on CPU with the same detector quality; fp32 "
                                               "matches sentence-transformers to 1e-6.")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0 = min(cores, 4), the cores being the "
                         "process's CPU affinity cut to its container's CPU quota (cgroup v2 cpu.max or v1 "
                         "cfs_quota_us under /sys/fs/cgroup; rounded down, at least 1).")
    spin_wait: bool = Field(False, description="The text encoders' ONNX Runtime threads busy-wait between operators "
                            "(onnx_classifier policies keep theirs sleeping) instead of "
                            "sleeping. Off by default: on a small or shared machine the spinning threads take the "
                            "cores the event loop, the detectors' first tier and other workers need (a stage of the "
                            "three detectors added about twice the latency with it on a busy 2-core machine). On "
                            "cores reserved for the gateway it saves a little per encoder run.")
    detector_layers: int | dict[str, int] = Field(
        3,
        description="Encoder layers each built-in detector embeds with: 0 the whole encoder, 3 its own encoder of "
                    "the first 3 layers (the default: one 3-layer pass serves all three detectors, about twice as "
                    "fast as the whole encoder; figures under Model-based policies). One number (0 or 3) for all "
                    "detectors, or a mapping by detector; an unnamed one uses 0.")
    max_batch: int = Field(32, ge=1, description="Most 256-token windows run in one encoder call.")
    max_wait_ms: float = Field(1.0, ge=0, le=50, description="Longest wait to fill a batch when others are queued.")
    cache_entries: int = Field(4096, ge=0, description="Texts whose embeddings are kept (LRU); 0 disables.")
    max_windows: int = Field(4, ge=1, le=64, description="256-token windows scored per text (first ones and the last).")
    model_dir: str | None = Field(None, description="Compiled model cache; default $GATEWAY_MODEL_DIR or ~/.cache/guardrail-gateway/models.")

    @field_validator("detector_layers", mode="before")
    @classmethod
    def _layers(cls, value: object) -> object:
        def ok(n: object) -> bool:
            return type(n) is int and n in (0, 3)

        if isinstance(value, dict):
            for name, n in value.items():
                if name not in DETECTOR_NAMES:
                    raise ValueError(f"{name!r} is not a built-in detector: {', '.join(DETECTOR_NAMES)}")
                if not ok(n):
                    raise ValueError(f"{name}: 0 (the whole encoder) or 3 (its first 3 layers)")
        elif not ok(value):
            raise ValueError("0 (the whole encoder) or 3 (its first 3 layers) for every detector, or a mapping "
                             "of detector to 0 or 3")
        return value

    def layers_for(self, detector: str) -> int:
        """The encoder layers `detector` embeds with (0: the whole encoder)."""
        if isinstance(self.detector_layers, int):
            return self.detector_layers
        return self.detector_layers.get(detector, 0)

    def layers_summary(self) -> str:
        """`prompt_injection 3, harmful 3, toxicity 0`: each detector's layers, for help texts."""
        return ", ".join(f"{name} {self.layers_for(name)}" for name in DETECTOR_NAMES)


class StoreConfig(_Frozen):
    """Where policies, stages and versions created through the admin API live."""

    url: str | None = Field(None, description="redis://host:port/db to share with other replicas, or "
                                              "sqlite:///path.db; default: data/gateway.db next to the config file.")
    prefix: str = Field("gg:", min_length=1, description="Redis key prefix (deployments sharing a server differ).")
    max_records: int = Field(100_000, ge=100, description="Monitoring records kept in the store.")
    poll_interval_s: float = Field(0.25, gt=0, le=10, description="How often a replica checks the store for changes.")
    timeout_s: float = Field(0.5, gt=0, le=10, description="Longest wait on the store for any call.")
    outbox: int = Field(10_000, ge=0, description="Monitoring records buffered in memory while the store is "
                                                  "down; beyond it the oldest are dropped (and counted).")


class GatewayConfig(_Frozen):
    """The whole file. Metric parameters and rule values are checked when the guard plan compiles."""

    server: ServerConfig = Field(ServerConfig(), description="Where the gateway listens.")
    upstreams: tuple[UpstreamConfig, ...] = Field((), description="At least one; the first matching glob wins.")
    routing: RoutingConfig = Field(RoutingConfig(), description="Model groups, retries, fallbacks and aliases.")
    applications: tuple[ApplicationConfig, ...] = Field((), description="Clients and their keys.")
    admin: AdminConfig = Field(AdminConfig(), description="Admin tokens and roles.")
    guard: GuardSettings = Field(GuardSettings(), description="Guard-wide settings.")
    scoring: ScoringConfig = Field(ScoringConfig(), description="Model-based scoring (ONNX Runtime).")
    store: StoreConfig = Field(StoreConfig(), description="The policy registry (SQLite or Redis).")
    policies: tuple[PolicySpec, ...] = Field((), description="Named metrics with thresholds; a policy id is a metric usable in rules.")
    stages: tuple[StageSpec, ...] = Field((), description="Input and output stages, central or per application.")
