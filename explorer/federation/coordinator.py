"""The coordinator: one study file, the same request to every site, and the pooled results.

A study file::

    schema: explorer.federation-study/1
    name: heat-steps                  # each site's policy names the studies it answers
    profile: aou                      # the study's disclosure profile (a site's stricter one wins)
    timeout: 30                       # seconds per request before it is retried
    retries: 2                        # retries of a request that timed out or failed in transit
    review_wait: 600                  # seconds to wait for a steward's decision on a held result
    cohort:                           # one cohort definition (explorer.cohort/1), or cohort_file: PATH
      name: adults-with-wearables
      index_date: {rule: first_valid_wear_day}
      inclusion: [{kind: demographics, age: {gte: 18}}]
    sites:
      - {name: site-a, url: "https://10.0.0.2:8443", token_env: SITE_A_TOKEN, ca: certs/site-a.crt}
    analyses:
      - {type: attrition}
      - {type: table_one, by: sex_at_birth, continuous: [age, steps_k], categorical: [race]}
      - {type: glm, name: dyspnoea, family: binomial, outcome: {condition: [R06]}, covariates: [steps_k, age, female]}
      - {type: ageing_rate, marker: 2345-7}
      - {type: heat_response, outcome: resting_hr, max_lag: 2}

A site that cannot be reached after the retries, refuses, or whose steward has not decided in
time is left out of that analysis, and the result says which sites contributed: a partial result
is marked ``complete: false`` and never presented as the whole study.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.errors import ExplorerError, did_you_mean
from explorer.federation.analyses import ANALYSES, SCHEMA as REQUEST_SCHEMA, check_analysis, json_records, outcome_name

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: no import at run time
    from explorer.lake import Lake

STUDY_SCHEMA = "explorer.federation-study/1"
RESULT_SCHEMA = "explorer.federation-result/1"
STUDY_KEYS = {"schema", "name", "description", "profile", "timeout", "retries", "review_wait", "cohort", "cohort_file",
              "sites", "analyses"}
SITE_KEYS = {"name", "url", "token", "token_env", "token_file", "ca"}


class SiteUnavailable(ExplorerError):
    """A site that did not answer (connection refused, timed out, failed in transit) after the retries."""


class SiteRefused(ExplorerError):
    """A site that answered with a refusal (its message says why)."""


class StillPending(ExplorerError):
    """A result still in a steward's queue when the wait ran out."""


@dataclass
class SiteClient:
    """HTTPS requests to one site, with its token and the certificate it is trusted by."""

    name: str
    url: str
    token: str
    ca: str | None = None
    timeout: float = 30.0
    retries: int = 2
    review_wait: float = 600.0
    poll: float = 0.5

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        if not self.url.startswith("https://"):
            raise ExplorerError(f"site {self.name}: url {self.url!r}; sites are reached over https:// only")
        try:
            self._context = ssl.create_default_context(cafile=self.ca) if self.ca else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise ExplorerError(f"site {self.name}: ca {self.ca} is not a PEM certificate ({exc}); give the "
                                "certificate the site's steward handed out") from None

    def run(self, request: dict) -> dict:
        """Send ``request``; wait for a held result; return the released envelope."""
        status, body = self._call("POST", "/v1/analyses", json.dumps(request).encode())
        if status == 202:
            ticket, waited = body["ticket"], time.monotonic()
            while status == 202:
                if time.monotonic() - waited > self.review_wait:
                    raise StillPending(f"{self.name}: result held for its steward's review (ticket {ticket}); "
                                       f"not decided within {self.review_wait:g} s")
                time.sleep(self.poll)
                status, body = self._call("GET", f"/v1/tickets/{ticket}")
        if status != 200:
            raise SiteRefused(f"{self.name}: {body.get('error', f'HTTP {status}')}")
        return body

    def _call(self, method: str, path: str, data: bytes | None = None) -> tuple[int, dict]:
        last = None
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + path, data=data, method=method,
                                             headers={"Authorization": f"Bearer {self.token}",
                                                      "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as answer:
                    return answer.status, json.loads(answer.read() or b"{}")
            except urllib.error.HTTPError as exc:
                body = _json(exc.read())
                if exc.code < 500:
                    return exc.code, body
                last = f"HTTP {exc.code}: {body.get('error', exc.reason)}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise SiteRefused(f"{self.name}: its TLS certificate is not trusted ({reason.verify_message}); "
                                      "name the site's certificate as its `ca` in the study file") from None
                last = f"{type(reason).__name__}: {reason}"
            if attempt < self.retries:
                time.sleep(min(0.5 * 2 ** attempt, 5.0))
        raise SiteUnavailable(f"{self.name}: no answer from {self.url} after {self.retries + 1} attempt(s), "
                              f"{self.timeout:g} s each ({last})")


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
        return value if isinstance(value, dict) else {"error": str(value)}
    except json.JSONDecodeError:
        return {"error": raw[:200].decode(errors="replace")}


@dataclass
class Study:
    """A checked study file (:func:`load_study`)."""

    name: str
    cohort: dict
    sites: list[SiteClient]
    analyses: list[dict]
    profile: str | None = None
    description: str = ""
    source: str = ""

    def request(self, analysis: dict) -> dict:
        spec = {k: v for k, v in analysis.items() if k != "name"}
        return {"schema": REQUEST_SCHEMA, "study": self.name, "analysis": spec, "cohort": self.cohort,
                "profile": self.profile}


def load_study(path) -> Study:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ExplorerError(f"study file {path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ExplorerError(f"study file {path}: not valid YAML: {exc}") from None
    return study_from_dict(data, base=path.parent, source=str(path))


def study_from_dict(data, *, base=Path("."), source: str = "the study", tokens: dict | None = None) -> Study:
    """A :class:`Study` from its document; ``tokens`` (site -> token) overrides the file's token sources."""
    from explorer.cohorts.definition import DefinitionError, from_dict, load
    from explorer.privacy.disclosure import PROFILES

    problems = []
    if not isinstance(data, dict):
        raise ExplorerError(f"{source}: a mapping expected")
    for key in sorted(set(data) - STUDY_KEYS):
        problems.append(f"{key}: unknown key{did_you_mean(key, STUDY_KEYS)}")
    if data.get("schema", STUDY_SCHEMA) != STUDY_SCHEMA:
        problems.append(f"schema: {data.get('schema')!r}; expected {STUDY_SCHEMA}")
    if not isinstance(data.get("name"), str):
        problems.append("name: the study's name is required (each site's policy lists it)")
    if data.get("profile") is not None and data["profile"] not in PROFILES:
        problems.append(f"profile: {data['profile']!r}; expected one of {', '.join(PROFILES)}")
    cohort = None
    try:
        if "cohort_file" in data:
            cohort = load(Path(base) / data["cohort_file"]).to_dict()
        elif isinstance(data.get("cohort"), dict):
            cohort = from_dict(data["cohort"], source=f"{source}: cohort").to_dict()
        else:
            problems.append("cohort: one cohort definition (or cohort_file: PATH) is required")
    except DefinitionError as exc:
        problems += [f"cohort: {p}" for p in exc.problems]
    except ExplorerError as exc:
        problems.append(f"cohort_file: {exc}")
    timeout, retries = float(data.get("timeout", 30)), int(data.get("retries", 2))
    review_wait = float(data.get("review_wait", 600))
    sites = []
    for k, entry in enumerate(data.get("sites") or []):
        where = f"sites[{k}]"
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("url"):
            problems.append(f"{where}: name and url are required")
            continue
        for key in sorted(set(entry) - SITE_KEYS):
            problems.append(f"{where}.{key}: unknown key{did_you_mean(key, SITE_KEYS)}")
        token = (tokens or {}).get(entry["name"]) or _token(entry, base, where, problems)
        ca = str(Path(base) / entry["ca"]) if entry.get("ca") else None
        if ca and not Path(ca).exists():
            problems.append(f"{where}.ca: {ca} does not exist")
        try:
            sites.append(SiteClient(entry["name"], entry["url"], token or "", ca, timeout, retries, review_wait))
        except ExplorerError as exc:
            problems.append(f"{where}: {exc}")
    if not sites:
        problems.append("sites: at least one site is required")
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        problems.append(f"sites: names repeat ({names})")
    analyses = []
    for k, entry in enumerate(data.get("analyses") or []):
        try:
            spec = check_analysis({key: v for key, v in entry.items() if key != "name"} if isinstance(entry, dict) else entry)
            analyses.append({**spec, "name": entry.get("name") or _title(spec)})
        except ExplorerError as exc:
            problems.append(f"analyses[{k}]: {exc}")
    if not analyses:
        problems.append(f"analyses: at least one is required ({', '.join(ANALYSES)})")
    if problems:
        raise ExplorerError(f"{source} is not a valid study:\n  - " + "\n  - ".join(problems))
    return Study(data["name"], cohort, sites, analyses, data.get("profile"), data.get("description", ""), source)


def _token(entry: dict, base, where: str, problems: list) -> str | None:
    if entry.get("token_env"):
        value = os.environ.get(entry["token_env"])
        if not value:
            problems.append(f"{where}.token_env: ${entry['token_env']} is not set")
        return value
    if entry.get("token_file"):
        path = Path(base) / entry["token_file"]
        if not path.exists():
            problems.append(f"{where}.token_file: {path} does not exist")
            return None
        return path.read_text().strip()
    if entry.get("token"):
        return str(entry["token"])
    problems.append(f"{where}: a token is required (token_env: VAR or token_file: PATH; the site's steward issues it)")
    return None


def _title(spec: dict) -> str:
    kind = spec["type"]
    if kind == "glm":
        family = "logistic" if spec["family"] == "binomial" else "linear"
        return f"{family} regression of {outcome_name(spec['outcome'])} on {', '.join(spec.get('covariates', [])) or 'nothing'}"
    if kind == "table_one":
        return f"Table 1 by {spec.get('by', 'sex_at_birth')}"
    if kind == "ageing_rate":
        return f"ageing rate of LOINC {spec['marker']}"
    if kind == "heat_response":
        return f"heat response of {spec.get('outcome', 'resting_hr')}, lags 0-{spec.get('max_lag', 2)}"
    return "attrition"


# --------------------------------------------------------------------------------- running
def _say(site: str, what: str, state: str) -> None:
    print(f"[{site}] {what}: {state}", file=sys.stderr, flush=True)


def run_study(study: Study, *, progress=_say) -> dict:
    """Run every analysis of ``study`` at every site and pool; the result document (JSON-ready).

    Parameters
    ----------
    progress : callable, optional
        ``progress(site, analysis, state)`` for each step (default: a line on standard error).
    """
    started = time.perf_counter()
    analyses = []
    for analysis in study.analyses:
        if analysis["type"] == "glm":
            analyses.append(_run_glm(study, analysis, progress))
        else:
            analyses.append(_run_once(study, analysis, progress))
    contributed = sorted({s for a in analyses for s in a["contributors"]})
    return {"schema": RESULT_SCHEMA, "study": study.name, "description": study.description,
            "cohort": {"name": study.cohort["name"], "definition": study.cohort},
            "profile": study.profile, "run_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
            "sites": [{"name": s.name, "url": s.url} for s in study.sites],
            "contributors": contributed, "complete": all(a["complete"] for a in analyses), "analyses": analyses}


def _ask_all(study: Study, clients, analysis: dict, progress, what: str) -> dict:
    """The same request to every client at once: site -> ("ok", envelope) or (status, message)."""
    request = study.request(analysis)

    def ask(client):
        def text(exc):  # the site's own words, without the site's name the result already files it under
            return str(exc).removeprefix(f"{client.name}: ")

        progress(client.name, what, "asked")
        try:
            envelope = client.run(request)
            progress(client.name, what, "released")
            return client.name, ("contributed", envelope)
        except SiteUnavailable as exc:
            progress(client.name, what, f"unreachable ({exc})")
            return client.name, ("unreachable", text(exc))
        except StillPending as exc:
            progress(client.name, what, "still waiting for its steward")
            return client.name, ("pending review", text(exc))
        except SiteRefused as exc:
            progress(client.name, what, f"refused ({exc})")
            return client.name, ("refused", text(exc))

    with ThreadPoolExecutor(max_workers=max(1, len(clients))) as pool:
        return dict(pool.map(ask, clients))


def _run_once(study: Study, analysis: dict, progress) -> dict:
    from explorer.analysis.meta_analysis import random_effects
    from explorer.federation.pooling import pool_attrition, pool_table_one

    answers = _ask_all(study, study.sites, analysis, progress, analysis["name"])
    sites = {name: ({"status": "contributed", "profile": a[1]["profile"], "versions": a[1]["versions"],
                     "result": a[1]["result"]} if a[0] == "contributed" else {"status": a[0], "message": a[1]})
             for name, a in answers.items()}
    contributors = [name for name, s in sites.items() if s["status"] == "contributed"]
    released = {name: sites[name]["result"] for name in contributors}
    pooled, note = None, ""
    kind = analysis["type"]
    if released:
        if kind == "attrition":
            pooled = json_records(pool_attrition({n: r["attrition"] for n, r in released.items()}))
        elif kind == "table_one":
            pooled = json_records(pool_table_one(released))
        else:
            fit = random_effects([r["estimate"] for r in released.values()], [r["covariance"] for r in released.values()],
                                 sites=list(released), names=next(iter(released.values()))["names"], method="reml")
            pooled = {"method": "REML random effects" if len(released) > 1 else "one site: its own estimate",
                      "table": json_records(fit.table()), "psi": fit.psi.to_numpy().tolist(), "q": fit.q, "q_df": fit.q_df,
                      "q_p": fit.q_p, "n_persons": int(sum(r["n_persons"] for r in released.values())),
                      "sites": json_records(fit.sites)}
    else:
        note = "no site released a result"
    return {"type": kind, "name": analysis["name"], "spec": {k: v for k, v in analysis.items() if k != "name"},
            "sites": sites, "contributors": contributors, "complete": len(contributors) == len(study.sites),
            "pooled": pooled, "note": note}


class _Dropped(Exception):
    def __init__(self, site: str, status: str, message: str):
        self.site, self.status, self.message = site, status, message


def _run_glm(study: Study, analysis: dict, progress) -> dict:
    from explorer.analysis.regression import GlmSums, newton_from_sums

    spec = {k: v for k, v in analysis.items() if k != "name"}
    names = ["intercept", *spec.get("covariates", [])]
    active = list(study.sites)
    sites: dict = {}
    notes = []
    steps = {"n": 0}

    def evaluate(beta):
        steps["n"] += 1
        answers = _ask_all(study, active, {**spec, "beta": [float(b) for b in beta]}, lambda *a: None,
                           analysis["name"])
        parts = []
        for client in active:
            status, body = answers[client.name]
            if status != "contributed":
                raise _Dropped(client.name, status, body)
            result = body["result"]
            sites[client.name] = {"status": "contributed", "profile": body["profile"], "versions": body["versions"],
                                  "n": result["n"]}
            parts.append(GlmSums(np.asarray(result["gradient"]), np.asarray(result["information"]),
                                 float(result["deviance"]), int(result["n"])))
        progress("all sites", analysis["name"], f"Newton step {steps['n']} on {len(parts)} site(s)")
        return parts

    fit = None
    while active:
        try:
            fit = newton_from_sums(evaluate, names, spec["family"])
            break
        except _Dropped as dropped:
            sites[dropped.site] = {"status": dropped.status, "message": dropped.message}
            progress(dropped.site, analysis["name"], f"{dropped.status}: left out ({dropped.message})")
            active = [c for c in active if c.name != dropped.site]
            if active:
                notes.append(f"{dropped.site} {dropped.status}, so the model was fitted on "
                             f"{', '.join(c.name for c in active)} alone")
        except ExplorerError as exc:
            notes.append(str(exc))
            break
    contributors = [c.name for c in active] if fit is not None else []
    pooled = None
    if fit is not None:
        table = pd.DataFrame({"term": fit.coef.index, "estimate": fit.coef.to_numpy(), "se": fit.se.to_numpy()})
        table["lower"], table["upper"] = table["estimate"] - 1.959964 * table["se"], table["estimate"] + 1.959964 * table["se"]
        from scipy import stats

        table["p"] = 2 * stats.norm.sf(np.abs(table["estimate"] / table["se"]))
        if spec["family"] == "binomial":
            for column in ("estimate", "lower", "upper"):
                table[f"odds_ratio{'' if column == 'estimate' else '_' + column}"] = np.exp(table[column])
        pooled = {"table": json_records(table), "n": fit.n_obs, "iterations": fit.iterations, "deviance": fit.deviance,
                  "family": spec["family"], "vcov": fit.vcov.to_numpy().tolist()}
    return {"type": "glm", "name": analysis["name"], "spec": spec, "sites": sites, "contributors": contributors,
            "complete": fit is not None and len(contributors) == len(study.sites), "pooled": pooled,
            "note": "; ".join(notes)}


# ------------------------------------------------------------------------------ the result
def summary_text(result: dict) -> str:
    """The result as the terminal shows it."""
    from explorer.progress import table_text

    lines = [f"Study {result['study']}: cohort {result['cohort']['name']}, {len(result['contributors'])} of "
             f"{len(result['sites'])} site(s) contributed" + ("" if result["complete"] else " - PARTIAL: see each analysis")]
    for analysis in result["analyses"]:
        lines.append("")
        status = ", ".join(f"{site} {s['status']}" for site, s in analysis["sites"].items())
        lines.append(f"== {analysis['name']} ({'complete' if analysis['complete'] else 'partial'}: {status})")
        for site, s in analysis["sites"].items():
            if s["status"] != "contributed":
                message = s.get("message", "")
                lines.append(f"   {message if message.startswith(site + ':') else site + ': ' + message}")
        if analysis.get("note"):
            lines.append(f"   note: {analysis['note']}")
        pooled = analysis["pooled"]
        if pooled is None:
            continue
        if analysis["type"] in ("attrition", "table_one"):
            frame = pd.DataFrame(pooled)
            frame = frame[[c for c in frame.columns if "|" not in c and c != "pooled"]].rename(columns={"pooled_shown": "pooled"})
            if "smd" in frame:
                frame["smd"] = frame["smd"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")
            lines.append(table_text(frame))
        elif analysis["type"] == "glm":
            lines.append(f"   {pooled['n']:,} persons, {pooled['iterations']} Newton steps, pooled exactly from per-site sums")
            lines.append(table_text(pd.DataFrame(pooled["table"]).round(4)))
        else:
            lines.append(f"   {pooled['method']}, {pooled['n_persons']:,} persons; Q = {pooled['q']:.2f} on {pooled['q_df']} df")
            lines.append(table_text(pd.DataFrame(pooled["table"]).round(4)))
    return "\n".join(lines)


def save_to_lake(lake: Lake, result: dict) -> int:
    """Append the result to the lake's ``federated_study`` table (the study page reads it)."""
    from explorer.lake.engine import current_user

    row = {"study": result["study"], "run_at": pd.Timestamp(result["run_at"]).tz_convert(None),
           "coordinator": current_user(), "sites_asked": len(result["sites"]),
           "sites_contributed": len(result["contributors"]), "complete": bool(result["complete"]),
           "result": json.dumps(result, default=str)}
    return lake.write("federated_study", pd.DataFrame([row]), operation="federate")
