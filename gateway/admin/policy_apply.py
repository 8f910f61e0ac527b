"""Admin API for Apply Policy: where a policy runs (its `apply-*` stages, gateway/policies/applying.py)
for an application, models, or an application's models; and which policies a model's requests meet."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.admin.auth import Role
from gateway.admin.common import acting_on, ok, owner, read_json
from gateway.admin.policy_admin import PolicyAdmin
from gateway.policies.applying import apply_id, apply_stage, applied_to, model_policies
from gateway.wire import OpenAIError, RawResponse


class PolicyApplying(PolicyAdmin):
    """Where policies run: `apply-*` stages for an application, models, or an application's models."""

    def _where(self, body: dict[str, Any], role: Role) -> tuple[str | None, list[str] | None, str]:
        """Where an apply/unapply body points: (application or None for every application, models or
        None for every model, on). Application tokens always mean their own application."""
        app = body.get("application")
        models = body.get("models")
        if models is not None and (not isinstance(models, list) or not models
                                   or not all(isinstance(m, str) and m for m in models)):
            raise OpenAIError(400, "models: a non-empty list of model names.", code="invalid_request",
                              param="models")
        if app is None and not role.central:
            app = role.application
        if app is None and models is None:
            raise OpenAIError(400, "application or models: say where to apply the policy.",
                              code="invalid_request", param="application")
        if app is not None:
            app = acting_on(self.registry, role, app, "an application id", "change its own application")
        on = body.get("on", "input")
        if on not in ("input", "output"):
            raise OpenAIError(400, "on: input or output.", code="invalid_request", param="on")
        return app, sorted(set(models)) if models is not None else None, on

    async def apply(self, request: Request, role: Role) -> RawResponse:
        """Apply a policy: to an application, to models, or to an application's models.

        With `models` alone (central tokens) it runs on every application's requests for them; with
        `application` on that application's requests, for every model or the listed ones. Applying
        again adds models."""
        policy_id = request.path_params["id"]
        if policy_id not in self.registry.config_policy_ids:
            await self.stored(policy_id, role, write=False)
        body = await read_json(request)
        app, models, on = self._where(body, role)
        name = apply_id(policy_id, app, on)
        spec, models = apply_stage(policy_id, app, models, on, await self.store.get("stage", name), body)
        doc = await self.registry.write("stage", {"id": name, "spec": spec, "applications": [app] if app else [],
                                                  "owner": owner(role)}, owner(role))
        return ok({"object": "stage", "id": doc.id, "version": doc.version, "policy": policy_id,
                    "application": app, "models": models, "on": on}, 201)

    async def unapply(self, request: Request, role: Role) -> RawResponse:
        """Remove a policy from an application or from some models (the rest stay applied)."""
        policy_id = request.path_params["id"]
        body = await read_json(request)
        app, models, on = self._where(body, role)
        name = apply_id(policy_id, app, on)
        doc = await self.store.get("stage", name)
        if doc is None:
            raise OpenAIError(404, f"Policy '{policy_id}' is not applied to {app or 'models'} ({on}).",
                              code="not_applied")
        before = doc.body["spec"].get("models")
        if models is not None and before is not None:
            if not set(models) & set(before):
                raise OpenAIError(404, f"Policy '{policy_id}' is not applied to {', '.join(models)} ({on}).",
                                  code="not_applied", param="models")
            remaining = sorted(set(before) - set(models))
            if remaining:
                spec = {**doc.body["spec"], "models": remaining}
                new = await self.registry.write("stage", {**doc.body, "spec": spec}, owner(role))
                return ok({"object": "stage", "id": name, "version": new.version, "models": remaining})
        elif models is not None:
            raise OpenAIError(400, f"models: policy '{policy_id}' is applied to every model of {app}; remove it "
                                   "from the application (no `models`).", code="invalid_request", param="models")
        await self.registry.remove("stage", name, owner(role))
        return ok({"object": "stage", "id": name, "deleted": True})

    async def applied(self, request: Request, role: Role) -> RawResponse:
        """Where the policy is applied through this API (its `apply-*` stages)."""
        policy_id = request.path_params["id"]
        if policy_id not in self.registry.config_policy_ids:
            await self.stored(policy_id, role, write=False)
        data = applied_to(await self.store.list("stage"), policy_id, None if role.central else role.application)
        return ok({"object": "list", "data": data})

    async def model_policies(self, request: Request, role: Role) -> RawResponse:
        """The list of policies for a model, as one application's requests for it see them
        (every stage that runs: central and the application's, in order)."""
        model = request.path_params["model"]
        app = request.query_params.get("application") or role.application
        if app is None:
            raise OpenAIError(400, "application: required with a central token (whose requests?).",
                              code="invalid_request", param="application")
        if app not in self.registry.application_ids:
            raise OpenAIError(404, f"No application '{app}'.", code="application_not_found", param="application")
        if not role.may_see(app):
            raise OpenAIError(403, "This token may only read its own application.", code="forbidden",
                              param="application")
        data = model_policies(self.registry.flow.plan, app, model)
        return ok({"object": "list", "model": model, "application": app, "data": data})
