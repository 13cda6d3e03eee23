"""``explorer federation`` (a site: serve, token, cert, queue, approve, reject) and ``explorer
federate`` (a coordinator: run a study across sites)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from explorer.command.common import EPILOG_LAKE, HELP_FORMATTER, acting_role, open_lake, record_audit
from explorer.errors import ExplorerError
from explorer.lake.engine import current_user

SITE_ACTIONS = ["serve", "token", "cert", "queue", "approve", "reject"]


def add_parser(commands) -> None:
    """Declare ``federation`` and ``federate`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("federation", help="a site's service for federated studies, and its steward's queue",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Answer federated studies from this lake: a coordinator elsewhere sends the same declared
        analysis to every site (never code or SQL), and each site releases only what its
        disclosure profile allows. Role steward; every request and release is in the audit log.

        serve:    HTTPS service on --port for the studies and coordinators --policy names.
        token:    a new coordinator token, and the line to put under the policy's coordinators
                  (the policy keeps only its SHA-256; hand the token to the coordinator).
        cert:     a self-signed certificate and key for --host (a test network; a coordinator
                  names the certificate as the site's `ca`). Use your institution's otherwise.
        queue:    results waiting for review (the policy's `review:` analyses), with what each
                  would release.
        approve:  release a queued result (TICKET).   reject: refuse it (TICKET --reason WHY).

        A policy (YAML):
          schema: explorer.federation-policy/1
          site: site-a
          profile: aou                     # a study's stricter profile wins
          min_persons_per_parameter: 10    # models on fewer persons per coefficient are refused
          coordinators:
            coord-1: {token_sha256: <from `explorer federation token`>}
          studies:
            heat-steps:
              coordinators: [coord-1]
              analyses: [attrition, table_one, glm, ageing_rate, heat_response]
              cohort_sha256: <optional: only this cohort's criteria>
              review: [table_one]          # held for the steward
              dp_epsilon: 0.5              # optional: attrition with differential privacy, charged
                                           # to `explorer budget set --dataset federation --release heat-steps`

        examples:
          explorer federation token --name coord-1
          explorer federation cert --host site-a.example.org --out certs/
          explorer --lake site-a/ federation serve --policy policy.yaml --cert certs/site.crt --key certs/site.key
          explorer --lake site-a/ federation queue
          explorer --lake site-a/ federation approve 20261204T101500-3f2a9c1b0d4e"""))
    p.add_argument("action", choices=SITE_ACTIONS)
    p.add_argument("ticket", nargs="?", help="approve/reject: the ticket (from `queue`)")
    p.add_argument("--policy", help="serve: the site's policy file")
    p.add_argument("--port", type=int, default=8443, help="serve: port (default 8443)")
    p.add_argument("--address", default="0.0.0.0", help="serve: address to listen on (default all)")
    p.add_argument("--cert", help="serve: TLS certificate (PEM)")
    p.add_argument("--key", help="serve: TLS private key (PEM)")
    p.add_argument("--queue", help="the review queue folder (default: federation-queue in the lake folder)")
    p.add_argument("--name", help="token: the coordinator's name in the policy")
    p.add_argument("--host", action="append", default=[], help="cert: a host name or IP address (repeatable)")
    p.add_argument("--out", default=".", help="cert: folder for site.crt and site.key (default .)")
    p.add_argument("--reason", default="", help="reject: why (the coordinator is told)")
    p.add_argument("--all", action="store_true", help="queue: decided tickets too")
    p.set_defaults(func=cmd_federation)

    p = commands.add_parser("federate", help="run a federated study across sites and pool (coordinator)",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Send one study's analyses to every site it names, show each site's progress, and pool:
        attrition and Table 1 summed from what the sites released (a count hidden at a site stays
        hidden pooled), linear and logistic regression fitted exactly by Newton's method on the
        sites' summed score and information, and ageing-rate and heat-response estimates by
        random-effects meta-analysis (REML; multivariate for the lag coefficients) with I^2 and
        tau^2. A site that is down, refuses or keeps a result in review is left out and named:
        the result says which sites contributed and marks a partial analysis as such.

        The study file is described in `explorer.federation.coordinator` (and the README):
        name, profile, cohort (one definition), sites (name, url, token_env or token_file, ca)
        and analyses (attrition, table_one, glm, ageing_rate, heat_response).

        Exit status: 0 when every site contributed to every analysis, 3 when the result is partial.

        examples:
          explorer federate run study.yaml --out results/
          explorer --lake coordinator-lake/ federate run study.yaml --save   # for the Studies page"""))
    p.add_argument("action", choices=["run"])
    p.add_argument("study", help="the study file (YAML)")
    p.add_argument("--out", help="folder for result.json and study.html")
    p.add_argument("--save", action="store_true", help="append the result to the lake's federated_study table")
    p.set_defaults(func=cmd_federate)


def cmd_federation(args) -> int:
    from explorer.federation import policy as policies

    if args.action == "token":
        if not args.name:
            raise ExplorerError("token needs --name: the coordinator's name as the policy will list it")
        token, digest = policies.new_token()
        print(f"token for {args.name} (give it to the coordinator; it is not kept here):\n  {token}")
        print(f"policy line, under coordinators:\n  {args.name}: {{token_sha256: {digest}}}")
        return 0
    if args.action == "cert":
        from explorer.federation.service import self_signed_certificate

        if not args.host:
            raise ExplorerError("cert needs --host NAME_OR_IP (repeatable): the names coordinators reach the site by")
        crt, key = self_signed_certificate(args.host, args.out)
        print(f"wrote {crt} (give it to coordinators as the site's ca) and {key} (keep it on the site)")
        return 0
    role = acting_role(args, "serve_federation", f"federation {args.action}")
    lake = open_lake(args)
    from explorer.federation.site import ReviewQueue, Site, default_queue

    queue = ReviewQueue(args.queue or default_queue(lake))
    if args.action == "serve":
        from explorer.federation.service import serve

        if not args.policy:
            raise ExplorerError("serve needs --policy FILE: the studies and coordinators this site answers")
        policy = policies.load_policy(args.policy)
        site = Site(lake, policy, queue.folder)
        record_audit(lake, role, "federation.serve", parameters={"site": policy.site, "port": args.port,
                                                                 "studies": sorted(policy.studies)})

        def ready():
            print(f"site {policy.site} answering on https://{args.address}:{args.port}/v1/ "
                  f"(studies: {', '.join(sorted(policy.studies)) or 'none'}; profile {policy.profile}); Ctrl-C stops",
                  flush=True)

        try:
            serve(site, port=args.port, address=args.address, certificate=args.cert, key=args.key, ready=ready)
        except KeyboardInterrupt:
            pass
        return 0
    if args.action == "queue":
        entries = queue.entries(None if args.all else "pending")
        if not entries:
            print(f"no {'' if args.all else 'pending '}results in {queue.folder}")
            return 0
        for entry in entries:
            request = entry["request"]
            print(f"{entry['ticket']}  {entry['state']:<9} study {request['study']}, {request['analysis']['type']} for "
                  f"{entry['coordinator']}, cohort {request['cohort']} (asked {entry['created']})")
            print(textwrap.indent(json.dumps(entry["envelope"]["result"], indent=1, default=str)[:4000], "    "))
        return 0
    if not args.ticket:
        raise ExplorerError(f"{args.action} needs the TICKET (see `explorer federation queue`)")
    entry = queue.decide(args.ticket, approve=args.action == "approve", steward=current_user(), reason=args.reason)
    record_audit(lake, role, f"federation.{args.action}", parameters={"ticket": args.ticket, "study": entry["request"]["study"],
                                                                        "analysis": entry["request"]["analysis"],
                                                                        "reason": args.reason or None})
    print(f"{args.ticket} {entry['state']}: {'the coordinator can collect it' if entry['state'] == 'approved' else 'the coordinator is told why'}")
    return 0


def cmd_federate(args) -> int:
    from explorer.federation import coordinator

    role = acting_role(args, "coordinate", "federate run")
    study = coordinator.load_study(args.study)
    print(f"study {study.name}: {len(study.analyses)} analyses at {len(study.sites)} sites "
          f"({', '.join(s.name for s in study.sites)})", file=sys.stderr)
    result = coordinator.run_study(study)
    print(coordinator.summary_text(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
        from explorer.command.common import save_page
        from explorer.views.federation import study_page

        save_page(study_page(result), str(out / "study.html"))
        print(f"wrote {out / 'result.json'}")
    if args.save:
        lake = open_lake(args)
        version = coordinator.save_to_lake(lake, result)
        record_audit(lake, role, "federate.save", dataset="federated_study", version=version,
                     parameters={"study": study.name, "contributors": result["contributors"]})
        print(f"saved to federated_study version {version} (the dashboards' Studies page shows it)")
    return 0 if result["complete"] else 3
