"""A site's federation policy: which studies it answers, for which coordinators, under which
disclosure profile and limits, and which results wait for a steward.

Written by the site's data steward in YAML::

    schema: explorer.federation-policy/1
    site: site-a                      # how this site names itself in results and the audit log
    profile: aou                      # disclosure profile; a study's stricter profile wins
    min_persons_per_parameter: 10     # a model with fewer persons per coefficient is refused
    max_requests_per_study: 500       # a cap on requests per study (each Newton step is one)
    coordinators:
      coord-1: {token_sha256: 3f1c...}   # `explorer federation token` makes a token and this line
    studies:
      heat-steps:
        coordinators: [coord-1]
        analyses: [attrition, table_one, glm, ageing_rate, heat_response]
        cohort_sha256: 9b0e...        # optional: only this cohort definition (its criteria's digest)
        review: [table_one]           # these results wait in the steward's queue
        dp_epsilon: 0.5               # optional: attrition released with differential privacy, each
                                      # release charging this to the budget a steward sets with
                                      # `explorer budget set --dataset federation --release heat-steps`

Only declared analyses are answered (:data:`explorer.federation.analyses.ANALYSES`); no code or
SQL is ever accepted. Tokens are kept as their SHA-256, so the policy file gives none away.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from explorer.errors import ExplorerError, did_you_mean
from explorer.privacy.disclosure import PROFILES, profile

SCHEMA = "explorer.federation-policy/1"
TOP_KEYS = {"schema", "site", "profile", "min_persons_per_parameter", "max_requests_per_study", "coordinators", "studies"}
STUDY_KEYS = {"coordinators", "analyses", "cohort_sha256", "review", "dp_epsilon", "description"}


class PolicyError(ExplorerError, ValueError):
    """A policy file that does not validate: ``problems`` lists each as ``where: what``."""

    def __init__(self, problems: list[str], source: str):
        self.problems = problems
        super().__init__(f"{source} is not a valid federation policy:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class StudyPolicy:
    name: str
    coordinators: tuple[str, ...]
    analyses: tuple[str, ...]
    cohort_sha256: str | None = None
    review: tuple[str, ...] = ()
    description: str = ""
    dp_epsilon: float | None = None


@dataclass(frozen=True)
class SitePolicy:
    """A parsed, checked policy (:func:`load_policy`)."""

    site: str
    profile: str
    coordinators: dict = field(default_factory=dict)  # name -> token sha256 (hex)
    studies: dict = field(default_factory=dict)  # name -> StudyPolicy
    min_persons_per_parameter: int = 10
    max_requests_per_study: int = 500

    def coordinator_for(self, token: str | None) -> str | None:
        """The coordinator whose token this is, compared in constant time; None for any other."""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        found = None
        for name, expected in self.coordinators.items():
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def study(self, name: str) -> StudyPolicy | None:
        return self.studies.get(name)


def new_token() -> tuple[str, str]:
    """A fresh coordinator token and the SHA-256 the site's policy keeps of it."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def load_policy(path) -> SitePolicy:
    """Read and check a policy file; every problem is named with where it is."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExplorerError(f"policy {path}: no such file; write one as `explorer federation serve --help` shows") from None
    except yaml.YAMLError as exc:
        raise ExplorerError(f"policy {path}: not valid YAML: {exc}") from None
    return policy_from_dict(data, source=f"policy {path}")


def policy_from_dict(data, source: str = "the policy") -> SitePolicy:
    from explorer.federation.analyses import ANALYSES

    problems: list[str] = []
    if not isinstance(data, dict):
        raise PolicyError([f"top level: a mapping expected, got {type(data).__name__}"], source)
    for key in sorted(set(data) - TOP_KEYS):
        problems.append(f"{key}: unknown key{did_you_mean(key, TOP_KEYS)}")
    if data.get("schema", SCHEMA) != SCHEMA:
        problems.append(f"schema: {data.get('schema')!r}; expected {SCHEMA}")
    site = data.get("site")
    if not isinstance(site, str) or not site:
        problems.append("site: the site's name is required (e.g. site: st-olav)")
    chosen = data.get("profile", "aou")
    if chosen not in PROFILES:
        problems.append(f"profile: {chosen!r}; expected one of {', '.join(PROFILES)}")
    limits = {}
    for key, default in (("min_persons_per_parameter", 10), ("max_requests_per_study", 500)):
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{key}: {value!r}; expected a whole number of at least 1")
        limits[key] = value
    coordinators = {}
    for name, entry in (data.get("coordinators") or {}).items():
        digest = entry.get("token_sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(f"coordinators.{name}.token_sha256: 64 hex digits expected "
                            "(`explorer federation token --name NAME` prints the line)")
        else:
            coordinators[str(name)] = digest
    studies = {}
    for name, entry in (data.get("studies") or {}).items():
        where = f"studies.{name}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: a mapping expected")
            continue
        for key in sorted(set(entry) - STUDY_KEYS):
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, STUDY_KEYS)}")
        allowed = tuple(entry.get("coordinators") or ())
        for coordinator in allowed:
            if coordinator not in (data.get("coordinators") or {}):
                problems.append(f"{where}.coordinators: {coordinator!r} is not under coordinators")
        analyses = tuple(entry.get("analyses") or ANALYSES)
        review = tuple(entry.get("review") or ())
        for kind in (*analyses, *review):
            if kind not in ANALYSES:
                problems.append(f"{where}: analysis {kind!r} is not declared{did_you_mean(kind, ANALYSES)}; "
                                f"declared: {', '.join(ANALYSES)}")
        epsilon = entry.get("dp_epsilon")
        if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0):
            problems.append(f"{where}.dp_epsilon: {epsilon!r}; expected a positive number (the privacy loss of one release)")
            epsilon = None
        studies[str(name)] = StudyPolicy(str(name), allowed, analyses, entry.get("cohort_sha256"), review,
                                         entry.get("description", ""), float(epsilon) if epsilon is not None else None)
    if problems:
        raise PolicyError(problems, source)
    return SitePolicy(site, chosen, coordinators, studies, **limits)


def stricter(first: str, second: str | None) -> str:
    """The stricter of two disclosure profiles: the one that hides more (a larger hidden range,
    then coarser rounding)."""
    if not second:
        return first
    a, b = profile(first), profile(second)
    return max((a, b), key=lambda p: (p.largest_hidden, p.rounding)).name
