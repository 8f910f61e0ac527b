"""Admin API for stages (DESIGN section 2; Galileo's central stages).

A stored stage is {"id": name, "spec": <stage spec>, "applications": [ids], "owner", "paused"}.
Central stages (`scope: central`) run for every application and only central tokens may create,
change, pause or remove them; every change is a new version, and `revert` restores an old one. An
`app:<id>` token manages application stages attached to its own application only. A paused stage is
kept (with its history) but not enforced until resumed. Config stages are read-only here.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import acting_on, dry_run, ok, owner, read_json, take_expected, take_note, wrap
from gateway.admin.resource import Resource
from gateway.policies.registry import Registry
from gateway.errors import VersionConflict
from gateway.wire import OpenAIError, RawResponse
from gateway.store import Version


def _view(doc: Version) -> dict[str, Any]:
    return {"id": doc.id, "object": "stage", "source": "store", "version": doc.version, "updated": doc.created,
            "author": doc.author, "paused": bool(doc.body.get("paused")), "applications": doc.body.get("applications", []),
            "owner": doc.body.get("owner"), **doc.body["spec"]}


def _split(body: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    applications = body.pop("applications", [])  # checked with the scope, on create and edit alike
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise OpenAIError(400, "name: required, a non-empty string.", code="invalid_stage", param="name")
    return body, applications


def _exists(name: str) -> OpenAIError:
    return OpenAIError(409, f"A stage '{name}' exists already.", code="stage_exists", param="name")


class StageAdmin(Resource):
    """The stage endpoints over one registry (and its store); delete, versions and revert are Resource's."""

    kind, param = "stage", "name"

    def view(self, doc: Version) -> dict[str, Any]:
        return _view(doc)

    def check_scope(self, role: Role, spec: dict[str, Any], applications: Any) -> None:
        if not isinstance(applications, list) or not all(isinstance(a, str) for a in applications):
            raise OpenAIError(400, "applications: a list of application ids.", code="invalid_stage",
                              param="applications")
        if spec.get("scope") == "central":
            if not role.central:
                raise OpenAIError(403, "Only central tokens may manage central stages.", code="forbidden",
                                  param="scope")
            if applications:
                raise OpenAIError(400, "applications: a central stage runs for every application; omit it.",
                                  code="invalid_stage", param="applications")
            return
        for i, app in enumerate(applications):
            if app not in self.registry.application_ids:
                raise OpenAIError(400, f"applications[{i}]: no application {app!r}.", code="invalid_stage",
                                  param=f"applications[{i}]")
            if not role.may_see(app):
                raise OpenAIError(403, "This token may only attach stages to its own application.",
                                  code="forbidden", param=f"applications[{i}]")

    async def stored(self, name: str, role: Role, write: bool) -> Version:
        if name in self.registry.config_stage_names and write:
            raise OpenAIError(403, f"Stage '{name}' is defined in the config file; change it there.",
                              code="config_stage")
        doc = await self.store.get("stage", name)
        if doc is None:
            raise OpenAIError(404, f"No stage '{name}' in the store.", code="stage_not_found")
        if write:
            self.check_scope(role, doc.body["spec"], doc.body.get("applications", []))
            if not role.central and doc.body.get("owner") != owner(role):
                raise OpenAIError(403, f"Stage '{name}' belongs to {doc.body.get('owner')}.", code="forbidden")
        elif not role.central and doc.body["spec"].get("scope") != "central" \
                and role.application not in doc.body.get("applications", []):
            raise OpenAIError(403, f"Stage '{name}' is not attached to this token's application.", code="forbidden")
        return doc

    async def list_stages(self, request: Request, role: Role) -> RawResponse:
        data = [{"id": s.name, "object": "stage", "source": "config", **s.model_dump(mode="json")}
                for s in self.registry.config.stages]
        for doc in await self.store.list("stage"):
            view = _view(doc)
            if role.central or view.get("scope") == "central" or role.application in view["applications"]:
                data.append(view)
        return ok({"object": "list", "data": data})

    async def create(self, request: Request, role: Role) -> RawResponse:
        """Create a stage (central or attached to applications); `?dry_run=true` validates only."""
        trial = dry_run(request)
        body = await read_json(request)
        note = take_note(body)
        spec, applications = _split(body)
        self.check_scope(role, spec, applications)
        if spec["name"] in self.registry.config_stage_names or await self.store.get("stage", spec["name"]) is not None:
            raise _exists(spec["name"])
        try:  # create only: of two racing creates of one name, the store lets one land (compare-and-set on 0)
            doc = await self.registry.write("stage", {"id": spec["name"], "spec": spec, "applications": applications,
                                                     "owner": owner(role), "paused": False},
                                            owner(role), note, expected=(0, "name"), dry_run=trial)
        except VersionConflict:
            raise _exists(spec["name"]) from None
        return self.written(doc, trial, 201)

    async def read(self, request: Request, role: Role) -> RawResponse:
        for s in self.registry.config.stages:  # config stages are readable one by one too (read-only)
            if s.name == request.path_params["name"]:
                return ok({"id": s.name, "object": "stage", "source": "config", **s.model_dump(mode="json")})
        return ok(_view(await self.named(request, role, write=False)))

    async def edit(self, request: Request, role: Role) -> RawResponse:
        """Change a stage: the body replaces its spec (and `applications` if given); a new version. `note`
        labels it; `expected_version` (or If-Match) refuses it with 409 version_conflict if the stage moved
        on; `?dry_run=true` validates only."""
        trial = dry_run(request)
        doc = await self.named(request, role, write=True)
        body = await read_json(request)
        note, expected = take_note(body), take_expected(request, body)
        applications = body.pop("applications", doc.body.get("applications", []))
        spec = {**doc.body["spec"], **body}
        if spec.get("name") != doc.id:
            raise OpenAIError(400, "name: cannot be changed.", code="invalid_stage", param="name")
        self.check_scope(role, spec, applications)
        new = await self.registry.write("stage", {**doc.body, "spec": spec, "applications": applications}, owner(role),
                                        note, expected=expected, dry_run=trial)
        return self.written(new, trial)

    async def pause(self, request: Request, role: Role) -> RawResponse:
        """Pause a stage: kept with its history, not enforced until resumed."""
        doc = await self.named(request, role, write=True)
        new = await self.registry.write("stage", {**doc.body, "paused": True}, owner(role))
        return ok(_view(new))

    async def resume(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
        new = await self.registry.write("stage", {**doc.body, "paused": False}, owner(role))
        return ok(_view(new))

    async def pin(self, request: Request, role: Role) -> RawResponse:
        """Pin an application to an older version of a central stage (it stops following the latest)."""
        body = await read_json(request)
        app, version = body.get("application"), body.get("version")
        name = request.path_params["name"]
        app = acting_on(self.registry, role, app, "required, an application id", "pin stages for its own application")
        doc = await self.store.get("stage", name)
        if doc is None or doc.body["spec"].get("scope") != "central":
            raise OpenAIError(404, f"No stored central stage '{name}'.", code="stage_not_found")
        if (isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= doc.version
                or await self.store.get("stage", name, version) is None):
            raise OpenAIError(400, f"version: a version of '{name}' (1 to {doc.version}).", code="invalid_request",
                              param="version")
        new = await self.registry.write("pin", {"id": f"{app}:{name}", "application": app, "stage": name,
                                                "version": version}, owner(role))
        return ok({"object": "pin", "application": app, "stage": name, "version": version,
                    "pin_version": new.version}, 201)

    async def unpin(self, request: Request, role: Role) -> RawResponse:
        """Follow the latest version of a central stage again."""
        app = (await read_json(request)).get("application")
        if not isinstance(app, str) or not app:  # a pin of an application since removed can still go
            raise OpenAIError(400, "application: required, an application id.", code="invalid_request",
                              param="application")
        if not role.may_see(app):
            raise OpenAIError(403, "This token may only change its own application.", code="forbidden",
                              param="application")
        pin_id = f"{app}:{request.path_params['name']}"
        if await self.store.get("pin", pin_id) is None:
            raise OpenAIError(404, "No such pin.", code="pin_not_found")
        await self.registry.remove("pin", pin_id, owner(role))
        return ok({"object": "pin", "application": app, "stage": request.path_params["name"], "deleted": True})


def stage_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    s = StageAdmin(registry)
    base = "/v1/admin/stages"
    return [
        Route(base, wrap(admin, s.list_stages), methods=["GET"]),
        Route(base, wrap(admin, s.create), methods=["POST"]),
        Route(base + "/{name}", wrap(admin, s.read), methods=["GET"]),
        Route(base + "/{name}", wrap(admin, s.edit), methods=["PATCH"]),
        Route(base + "/{name}", wrap(admin, s.delete), methods=["DELETE"]),
        Route(base + "/{name}/pause", wrap(admin, s.pause), methods=["POST"]),
        Route(base + "/{name}/resume", wrap(admin, s.resume), methods=["POST"]),
        Route(base + "/{name}/versions", wrap(admin, s.versions), methods=["GET"]),
        Route(base + "/{name}/revert", wrap(admin, s.revert), methods=["POST"]),
        Route(base + "/{name}/pin", wrap(admin, s.pin), methods=["PUT"]),
        Route(base + "/{name}/pin", wrap(admin, s.unpin), methods=["DELETE"]),
    ]

