"""What a site does with a request, apart from HTTP: who is asking, whether the policy lets them,
what may be released, and the steward's queue (an output airlock).

Order of checks, each refusing before any data is read: the request parses and is a declared
analysis (400, or 413 when too large); the token belongs to a coordinator (401); the study is in
the policy and names that coordinator, the analysis is one the study allows, the cohort is the one
the study pins, and the study has requests left (403). Then the analysis runs under the stricter of
the site's and the study's disclosure profile, and its result is released at once or queued for
the steward. Every request, refusal and release is an entry of the site's audit log.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from pathlib import Path

from explorer.errors import ExplorerError
from explorer.federation.analyses import PrivateRelease, RequestError, Refused, SiteData, compute, parse_request
from explorer.federation.policy import SitePolicy, stricter
from explorer.privacy.roles import PermissionDenied

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

AUDIT_ROLE = "coordinator"  # the role of a remote coordinator's entries in the site's audit log
TICKET_STATES = ("pending", "approved", "rejected")


class Unauthorised(ExplorerError):
    status = 401


class Site:
    """A site's lake and policy, answering requests (:meth:`handle`) and holding reviewed results
    in a queue folder (:class:`ReviewQueue`).

    Parameters
    ----------
    lake : explorer.lake.Lake
    policy : SitePolicy
    queue : path, optional
        The steward's queue folder (default: ``federation-queue`` beside a local lake's tables).
    """

    def __init__(self, lake: Lake, policy: SitePolicy, queue=None):
        self.lake, self.policy = lake, policy
        self.data = SiteData(lake)
        self.queue = ReviewQueue(queue or default_queue(lake))
        self.requests: Counter = Counter()
        self._lock = threading.Lock()  # one analysis at a time: the lake's caches are not shared across threads

    def handle(self, body: bytes, token: str | None) -> tuple[int, dict]:
        """Answer one request: ``(HTTP status, JSON body)``."""
        coordinator = self.policy.coordinator_for(token)
        try:
            request = parse_request(body)
        except RequestError as exc:
            self._audit(coordinator or "unknown", "federation.refuse", {"reason": str(exc)[:500], "status": exc.status})
            return exc.status, {"error": str(exc), "site": self.policy.site}
        if coordinator is None:
            self._audit("unknown", "federation.refuse", {**request.summary(), "reason": "unknown token"})
            return 401, {"error": "this token does not open this site: ask its steward for a coordinator token",
                         "site": self.policy.site}
        try:
            self._authorise(request, coordinator)
        except Refused as exc:
            self._audit(coordinator, "federation.refuse", {**request.summary(), "reason": str(exc)})
            return 403, {"error": str(exc), "site": self.policy.site}
        profile = stricter(self.policy.profile, request.profile)
        study = self.policy.study(request.study)
        private = (PrivateRelease(study.dp_epsilon, f"coordinator:{coordinator}")
                   if study.dp_epsilon is not None and request.kind == "attrition" else None)
        self._audit(coordinator, "federation.request", {**request.summary(), "profile_applied": profile,
                                                        "dp_epsilon": private.epsilon if private else None})
        try:
            with self._lock:
                result = compute(self.data, request, profile=profile,
                                 min_persons_per_parameter=self.policy.min_persons_per_parameter, private=private)
        except (Refused, PermissionDenied) as exc:  # the disclosure rules, or a privacy budget spent
            self._audit(coordinator, "federation.refuse", {**request.summary(), "reason": str(exc)})
            return 403, {"error": str(exc), "site": self.policy.site}
        except ExplorerError as exc:
            self._audit(coordinator, "federation.refuse", {**request.summary(), "reason": str(exc)[:500]})
            return 422, {"error": f"the analysis could not be run at {self.policy.site}: {exc}", "site": self.policy.site}
        envelope = {"site": self.policy.site, "study": request.study, "analysis": request.kind,
                    "profile": f"differential privacy, epsilon {private.epsilon:g}" if private else profile,
                    "versions": self.data.versions(request.study), "result": result}
        if request.kind in study.review:
            ticket = self.queue.add(coordinator, request.summary(), envelope)
            self._audit(coordinator, "federation.queue", {**request.summary(), "ticket": ticket})
            return 202, {"status": "pending", "ticket": ticket, "site": self.policy.site,
                         "message": f"held for review by {self.policy.site}'s steward"}
        self._audit(coordinator, "federation.release", {**request.summary(), "ticket": None})
        return 200, {"status": "released", **envelope}

    def ticket(self, ticket: str, token: str | None) -> tuple[int, dict]:
        """A queued result, for the coordinator that asked for it."""
        coordinator = self.policy.coordinator_for(token)
        if coordinator is None:
            return 401, {"error": "this token does not open this site", "site": self.policy.site}
        entry = self.queue.get(ticket)
        if entry is None or entry["coordinator"] != coordinator:
            return 404, {"error": f"no ticket {ticket} of yours at {self.policy.site}", "site": self.policy.site}
        if entry["state"] == "pending":
            return 202, {"status": "pending", "ticket": ticket, "site": self.policy.site}
        if entry["state"] == "rejected":
            return 403, {"status": "rejected", "error": f"{self.policy.site}'s steward rejected the result: {entry['reason']}",
                         "site": self.policy.site}
        if not entry.get("collected"):
            self._audit(coordinator, "federation.release", {**entry["request"], "ticket": ticket})
            self.queue.mark_collected(ticket)
        return 200, {"status": "released", **entry["envelope"]}

    def _authorise(self, request, coordinator: str) -> None:
        study = self.policy.study(request.study)
        if study is None:
            raise Refused(f"study {request.study!r} is not in {self.policy.site}'s policy: ask its steward to add it")
        if coordinator not in study.coordinators:
            raise Refused(f"coordinator {coordinator!r} may not run study {request.study!r} at {self.policy.site}")
        if request.kind not in study.analyses:
            raise Refused(f"study {request.study!r} does not allow {request.kind} at {self.policy.site} "
                          f"(it allows {', '.join(study.analyses)})")
        if study.cohort_sha256 and request.cohort.sha256 != study.cohort_sha256:
            raise Refused(f"study {request.study!r} is approved at {self.policy.site} for one cohort definition "
                          f"(sha256 {study.cohort_sha256[:12]}...); this request's criteria differ ({request.cohort.sha256[:12]}...)")
        key = (request.study, coordinator)
        if self.requests[key] >= self.policy.max_requests_per_study:
            raise Refused(f"study {request.study!r} has used its {self.policy.max_requests_per_study} requests at "
                          f"{self.policy.site}; its steward can raise max_requests_per_study")
        self.requests[key] += 1

    def _audit(self, coordinator: str, action: str, parameters: dict) -> None:
        from explorer.privacy import AuditLog

        AuditLog(self.lake).record(user=f"coordinator:{coordinator}", role=AUDIT_ROLE, action=action,
                                   dataset=f"study:{parameters.get('study', '?')}", parameters=parameters)


def default_queue(lake: Lake) -> Path:
    if not lake.is_local:
        raise ExplorerError("a lake on object storage keeps no queue folder: give the site a local one with --queue DIR")
    return Path(lake.root) / "federation-queue"


class ReviewQueue:
    """Results waiting for the steward: one JSON file per ticket, replaced atomically when decided,
    so the site service and the steward's command can share the folder."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def add(self, coordinator: str, request: dict, envelope: dict) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        ticket = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(6)
        self._write(ticket, {"ticket": ticket, "state": "pending", "coordinator": coordinator, "request": request,
                             "envelope": envelope, "created": _now(), "decided_by": None, "reason": None})
        return ticket

    def get(self, ticket: str) -> dict | None:
        if not ticket or not all(c.isalnum() or c in "-T" for c in ticket):
            return None
        path = self.folder / f"{ticket}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def entries(self, state: str | None = None) -> list[dict]:
        if not self.folder.exists():
            return []
        out = [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))]
        return [e for e in out if state is None or e["state"] == state]

    def decide(self, ticket: str, *, approve: bool, steward: str, reason: str = "") -> dict:
        entry = self.get(ticket)
        if entry is None:
            pending = ", ".join(e["ticket"] for e in self.entries("pending")) or "none"
            raise ExplorerError(f"no ticket {ticket!r} in {self.folder}; pending: {pending}")
        if entry["state"] != "pending":
            raise ExplorerError(f"ticket {ticket} was already {entry['state']} by {entry['decided_by']}")
        if not approve and not reason:
            raise ExplorerError("a rejection needs --reason: the coordinator is told why")
        entry.update(state="approved" if approve else "rejected", decided_by=steward, reason=reason or None, decided=_now())
        self._write(ticket, entry)
        return entry

    def mark_collected(self, ticket: str) -> None:
        entry = self.get(ticket)
        entry["collected"] = _now()
        self._write(ticket, entry)

    def _write(self, ticket: str, entry: dict) -> None:
        path = self.folder / f"{ticket}.json"
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps(entry, indent=1, default=str))
        os.replace(partial, path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
