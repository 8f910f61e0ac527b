"""Admin and guard HTTP routes: the monitoring log and the Guard Evaluate API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth
from gateway.admin.common import digits, query_int
from gateway.config.errors import format_path
from gateway.config.schema import GatewayConfig
from gateway.admin import evaluate as guard_evaluate
from gateway.guard.monitor import MonitorLog
from gateway.proxy.auth import KeyRing
from gateway.proxy.guard_flow import GuardFlow
from gateway.errors import GatewayError
from gateway.wire import JSON, OpenAIError, RawResponse, error_response
from gateway.proxy.texts import unreadable
from gateway.store import Store, StoreError
from gateway.store.base import matches as store_matches, record_key

_MAX_EVALUATE_BODY = 1024 * 1024
log = logging.getLogger(__name__)


class GuardAdmin:
    """The monitoring log and the guard's evaluate endpoint over one config, flow and monitor log (and the
    store, when there is one)."""

    def __init__(self, config: GatewayConfig, flow: GuardFlow, monitor: MonitorLog,
                 complete: guard_evaluate.Complete, store: Store | None = None,
                 keyring: KeyRing | None = None) -> None:
        self.config = config
        self.flow = flow
        self.monitor = monitor
        self.complete = complete
        self.store = store
        self.admin = AdminAuth(config.admin.tokens)
        self.keys = keyring or KeyRing(config.applications)

    async def monitoring(self, request: Request) -> RawResponse:
        """The monitoring log, newest first, with filters; `next_before` pages to older records."""
        try:
            role = self.admin.request_role(request)
            for name in request.query_params:
                if name not in MONITORING_PARAMS:
                    raise OpenAIError(400, f"{name}: unknown parameter; known: {', '.join(MONITORING_PARAMS)}.",
                                      code="unknown_parameter", param=name)
            app = request.query_params.get("application")
            if not role.central:
                if app and app != role.application:
                    raise OpenAIError(403, "This token may only read its own application's records.",
                                      code="forbidden")
                app = role.application
            limit = query_int(request.query_params.get("limit"), 100, "limit")
            before = request.query_params.get("before")
            if before and not digits(before, 18):  # a seq is a 64-bit integer in both stores
                raise OpenAIError(400, "before: a record's seq.", code="invalid_value", param="before")
            before_seq = int(before) if before else None
            since = _float(request.query_params.get("since"), "since")
            until = _float(request.query_params.get("until"), "until")
            where = record_filter(request.query_params)
        except GatewayError as err:  # gateway/errors.py's mapping; one without an answer is a 500
            response = error_response(err)
            if response is None:
                raise
            return response
        q = request.query_params
        match = {k: v for k, v in (("application", app), ("model", q.get("model")), ("action", q.get("action")),
                                   ("on", q.get("on")), ("metrics", q.get("policy"))) if v}
        if self.store is not None:
            try:
                found = await self.store.records(limit, before_seq, since, until, where, **match)
                given = await self.store.record_feedback(
                    [record_key(str(r.body.get("id")), str(r.body.get("on", ""))) for r in found if r.body.get("id")])
                data = [{"seq": r.seq, **r.body, "feedback": [
                    {"policy_id": f.policy_id, "label": f.label, "applied": f.applied}
                    for f in given.get(record_key(str(r.body.get("id")), str(r.body.get("on", ""))), [])]}
                    for r in found]
                next_before = found[-1].seq if len(found) == limit else None
                return RawResponse(200, [JSON], orjson.dumps({"object": "list", "source": "store", "data": data,
                                                              "next_before": next_before}))
            except StoreError:
                pass  # the store is down: this replica's own recent records still answer
        records = self.monitor.query(app, q.get("action"), limit,
                                     lambda b: _matches(b, match) and (where is None or where(b)))
        return RawResponse(200, [JSON], orjson.dumps({"object": "list", "source": "memory", "data": records,
                                                      "next_before": None}))

    async def evaluate(self, request: Request) -> RawResponse:
        try:
            app = self.keys.application(request.headers.get("authorization"))
            role = None
            if app is None:  # G4: an admin token may evaluate for an application it may act on
                try:  # the bearer token, or the console's session cookie (G2)
                    role = self.admin.request_role(request)
                except OpenAIError as err:
                    if err.status == 403:  # the session's CSRF rules
                        raise
                    raise OpenAIError(401, "Invalid or missing API key.", code="invalid_api_key") from None
            body = await request.body()
            if len(body) > _MAX_EVALUATE_BODY:
                raise OpenAIError(413, "The request body is too large.", code="request_too_large")
            try:
                parsed = guard_evaluate.parse_request(orjson.loads(body))
            except orjson.JSONDecodeError as exc:
                raise OpenAIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
            unread = unreadable("chat_completions", {"messages": parsed.messages})
            if unread is not None:  # a text the policies cannot read must not evaluate as compliant
                raise guard_evaluate.EvaluateError(format_path(unread[0]), unread[1])
            if role is not None:
                known = {a.id for a in self.config.applications} | set(self.flow.plan.by_app)
                if not isinstance(parsed.application, str) or parsed.application not in known:
                    raise OpenAIError(400, "application: required with an admin token, a known application id.",
                                      code="invalid_request", param="application")
                if not role.may_see(parsed.application):
                    raise OpenAIError(403, "This token may only evaluate for its own application.",
                                      code="forbidden", param="application")
                app_id = parsed.application
            else:
                assert app is not None
                if parsed.application not in (None, app.id):
                    raise OpenAIError(403, f"This key belongs to application '{app.id}'.", code="forbidden",
                                      param="application")
                app_id = app.id
            default = _app_policies(self.flow, app_id)
            policies = guard_evaluate.select_policies(parsed, self.flow.plan, default)
            result = await guard_evaluate.evaluate(parsed, policies, self.complete,
                                                   self.config.guard.corrector_model)
        except GatewayError as err:  # EvaluateError 400, PolicyFailed 502, OpenAIError (gateway/errors.py)
            if isinstance(err, guard_evaluate.PolicyFailed):  # e.g. a rubric judge that answered no JSON
                log.warning("evaluate: a policy could not score", exc_info=err.__cause__,
                            extra={"fields": {"policy_id": err.policy_id}})
            response = error_response(err)
            if response is None:
                raise
            return response
        return RawResponse(200, [JSON], orjson.dumps(result))


def admin_routes(config: GatewayConfig, flow: GuardFlow, monitor: MonitorLog,
                 complete: guard_evaluate.Complete, store: Store | None = None,
                 keyring: KeyRing | None = None) -> list[Route]:
    g = GuardAdmin(config, flow, monitor, complete, store, keyring)
    return [Route("/v1/monitoring", g.monitoring, methods=["GET"]),
            Route("/v1/guard/evaluate", g.evaluate, methods=["POST"])]


MONITORING_PARAMS = ("application", "model", "action", "on", "policy", "stage", "ruleset", "mode", "errors",
                     "since", "until", "before", "limit")


def record_filter(q: Any) -> Callable[[dict[str, Any]], bool] | None:
    """G12 filters on a record's stages: `stage=` (that stage triggered a ruleset), `ruleset=` (that ruleset
    triggered; with `stage=`, in that stage), `mode=monitor|enforce` (a stage in that mode triggered; monitor:
    what would have been acted on), `errors=true|false` (a metric failed or a ruleset was passed open)."""
    stage, ruleset, mode, errors = q.get("stage"), q.get("ruleset"), q.get("mode"), q.get("errors")
    if mode is not None and mode not in ("monitor", "enforce"):
        raise OpenAIError(400, "mode: monitor or enforce.", code="invalid_value", param="mode")
    if errors is not None and errors not in ("true", "false"):
        raise OpenAIError(400, "errors: true or false.", code="invalid_value", param="errors")
    for name, value in (("stage", stage), ("ruleset", ruleset)):
        if value == "":
            raise OpenAIError(400, f"{name}: a non-empty name.", code="invalid_value", param=name)
    if stage is None and ruleset is None and mode is None and errors is None:
        return None

    def test(body: dict[str, Any]) -> bool:
        outcomes = [o for o in body.get("stages") or [] if isinstance(o, dict)]
        hits = [o for o in outcomes if o.get("triggered") and (stage is None or o.get("stage") == stage)
                and (ruleset is None or ruleset in o.get("triggered", ()))
                and (mode is None or o.get("mode", "enforce") == mode)]
        if (stage is not None or ruleset is not None or mode is not None) and not hits:
            return False
        if errors is not None:
            failed = any(o.get("errors") or o.get("fail_open") for o in outcomes)
            return failed == (errors == "true")
        return True
    return test


def _matches(body: dict[str, Any], match: dict[str, str]) -> bool:
    """The store's record filters, for this replica's in-memory buffer (metrics: the stages' values)."""
    wanted = dict(match)
    metric = wanted.pop("metrics", None)
    if metric is not None and not any(metric in (o.get("values") or {}) for o in body.get("stages") or []):
        return False
    return store_matches(body, wanted)


def _app_policies(flow: GuardFlow, app_id: str) -> list[str]:
    """The policies an application's stages enforce, in stage order, each once."""
    seen: dict[str, None] = {}
    for on in ("input", "output"):
        for stage in flow.plan.stages_for(app_id, on):
            for ruleset in stage.rulesets:
                for rule in ruleset.rules:
                    if rule.metric in flow.plan.policies:
                        seen.setdefault(rule.metric, None)
    return list(seen)


def _float(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise OpenAIError(400, f"{name}: a Unix time in seconds.", code="invalid_request", param=name) from None

