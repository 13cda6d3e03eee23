"""``explorer analysis``: the analyses epidemiologists publish, on the lake: a distributed-lag
non-linear model of a wearable outcome on the exposure at home, Cox regression and Kaplan-Meier
curves of an outcome on time-varying steps, a time-stratified case-crossover, and Table 1."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from explorer.analysis.frames import EXPOSURE_COLUMNS
from explorer.command.common import DISCLOSURE_PROFILES, EPILOG_LAKE, HELP_FORMATTER, acting_role, open_lake, record_audit, require_tables, save_page
from explorer.errors import ExplorerError
from explorer.lake import Lake
from explorer.progress import table_text

ACTIONS = ["dlnm", "cox", "km", "case-crossover", "table1"]
#: the analyses a public reader may run: only their disclosure-controlled release is shown
PUBLIC_FORMS = {"km", "table1"}


def add_parser(commands) -> None:
    """Declare ``analysis`` on the ``explorer`` sub-parsers."""
    p = commands.add_parser("analysis", help="DLNM, Cox and Kaplan-Meier, case-crossover, Table 1 (researcher)",
                            formatter_class=HELP_FORMATTER, epilog=EPILOG_LAKE, description=textwrap.dedent("""\
        Person-level analyses on the lake (role researcher, but see km and table1 below; each run
        is in the audit log).

        dlnm:            distributed-lag non-linear model of a daily wearable outcome (default
                         resting_hr) on the exposure at home (default tas_anomaly), lags 0..--max-lag,
                         a random intercept per person and a fixed effect per calendar day; prints the
                         lag-specific and overall effects at --at against --centre.
        cox:             Cox regression of an outcome on the previous interval's mean daily steps
                         (per 1,000), time-varying, with robust SEs by person and the proportional-
                         hazards test; --spline adds a restricted cubic spline dose-response.
        km:              Kaplan-Meier curves of the same outcome by tertile of baseline steps.
        case-crossover:  time-stratified (same year, month, weekday) case-crossover of the outcome's
                         first dates on --exposure at lags --lags, by conditional logistic regression.
        table1:          Table 1 of the time-to-event population by outcome status.

        km and table1 also run for --role public, which sees only their release under --profile
        (survival steps merged until every count is clear; Table 1's counts on one page with their
        complements hidden). Without --role (or $EXPLORER_ROLE) they act as the least role they
        need, public, as every command does: give --role researcher for the full curves and table.

        The outcome (cox, km, case-crossover, table1) is one of --condition CODE[,CODE]
        (condition_occurrence), --lab LOINC with --above/--below (SI unit) or --wearable COLUMN
        with --above/--below (wearable_daily). The study-frame rules (time zero, baseline, washout,
        censoring) are printed with the result; --out saves the views as an HTML page.

        examples:
          explorer synth --participants 200 --days 75 --plant-analyses --out cohort/
          explorer analysis dlnm --max-lag 5 --at 1,3 --out dlnm.html
          explorer analysis cox --condition R06.00 --spline --out cox.html
          explorer --role researcher analysis km --condition R06.00
          explorer analysis case-crossover --condition R06.00 --exposure tasmax --lags 0,1,2
          explorer analysis table1 --condition R06.00"""))
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--outcome", default="resting_hr", help="dlnm: the wearable_daily outcome (default resting_hr)")
    p.add_argument("--exposure", default=None,
                   help="dlnm: the exposure_daily column (default tas_anomaly); case-crossover: tasmax, tasmin, pm25 or tas_anomaly")
    p.add_argument("--max-lag", type=int, default=7, help="dlnm: the longest lag in days (default 7)")
    p.add_argument("--exposure-df", type=int, default=1,
                   help="dlnm: 1 for a linear exposure-response (default), more for a natural spline with that many df")
    p.add_argument("--lag-df", type=int, default=0,
                   help="dlnm: 0 for one coefficient per lag (default), else a natural spline of lag with that many df")
    p.add_argument("--at", default=None, help="dlnm: exposures to report, comma-separated (default: 1st, 50th, 99th percentile)")
    p.add_argument("--centre", type=float, default=None, help="dlnm: reference exposure (default 0 for an anomaly, else the median)")
    p.add_argument("--condition", default=None, help="outcome: condition codes, comma-separated (e.g. R06.00 or I10,I11.9)")
    p.add_argument("--code-system", default=None, help="outcome: the codes' system URI (default any)")
    p.add_argument("--lab", default=None, help="outcome: a LOINC code, with --above or --below (SI unit)")
    p.add_argument("--wearable", default=None, help="outcome: a wearable_daily column, with --above or --below")
    p.add_argument("--above", type=float, default=None, help="outcome threshold: at or above")
    p.add_argument("--below", type=float, default=None, help="outcome threshold: at or below")
    p.add_argument("--interval-days", type=int, default=30, help="cox/km/table1: baseline and interval length (default 30)")
    p.add_argument("--spline", action="store_true",
                   help="cox: steps as a restricted cubic spline too (Harrell's knots: 3 below 100 events, else 4)")
    p.add_argument("--lags", default="0,1,2", help="case-crossover: lags in days, comma-separated (default 0,1,2)")
    p.add_argument("--window-mean", action="store_true", help="case-crossover: one term, the mean over the lags")
    p.add_argument("--cohort", default=None, help="only the members of this saved cohort, from their index date")
    p.add_argument("--profile", default=None, choices=DISCLOSURE_PROFILES,
                   help="km and table1 with --role public: the disclosure profile of the release (default $EXPLORER_DISCLOSURE_PROFILE, else aou)")
    p.add_argument("--out", default=None, help="save the views as a standalone HTML page")
    p.set_defaults(func=cmd_analysis)


def cmd_analysis(args) -> int:
    """Run one analysis, print its result and the rules of its frame, and save its views."""
    # Kaplan-Meier and Table 1 have a public form: released under the disclosure profile
    role = acting_role(args, "aggregates" if args.action in PUBLIC_FORMS else "person_rows", f"`explorer analysis {args.action}`")
    lake = open_lake(args)
    run = {"dlnm": _dlnm, "cox": _cox, "km": _km, "case-crossover": _case_crossover, "table1": _table1}[args.action]
    page, parameters = run(lake, args, role)
    record_audit(lake, role, "analysis", parameters={"analysis": args.action, **parameters})
    if args.out and page is not None:
        save_page(page, args.out)
    return 0


def _numbers(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ExplorerError(f"{option} {text!r}: expected numbers separated by commas, e.g. 0,1,2") from None


def _outcome(args):
    from explorer.analysis.frames import ConditionOutcome, LabOutcome, WearableOutcome

    given = [o for o in ("condition", "lab", "wearable") if getattr(args, o)]
    if len(given) != 1:
        raise ExplorerError("name one outcome: --condition CODES, --lab LOINC --above/--below X, or "
                            "--wearable COLUMN --above/--below X" + (f" (got {', '.join('--' + g for g in given)})" if given else ""))
    if args.condition:
        codes = tuple(c.strip() for c in args.condition.split(",") if c.strip())
        return ConditionOutcome(codes, args.code_system, name=args.condition)
    threshold = f">= {args.above:g}" if args.above is not None else (f"<= {args.below:g}" if args.below is not None else "")
    if args.lab:
        return LabOutcome(args.lab, args.above, args.below, name=f"LOINC {args.lab} {threshold}".strip())
    return WearableOutcome(args.wearable, args.above, args.below, name=f"{args.wearable} {threshold}".strip())


def _print_frame_rules(study) -> None:
    print("Study frame:")
    for rule in study.rules:
        print(f"  - {rule}")
    print(table_text(study.attrition))
    print("Read " + ", ".join(f"{k}@{v}" for k, v in sorted(study.versions.items()))
          + " (explorer.analysis.frames rebuilds it exactly with versions=).")


def _dlnm(lake: Lake, args, role):
    import panel as pn

    from explorer.analysis import dlnm, frames, splines
    from explorer.views import analysis as views

    require_tables(lake, ("wearable_daily", "exposure_daily"), read=True)
    exposure = args.exposure or "tas_anomaly"
    if args.max_lag < 0:
        raise ExplorerError(f"--max-lag {args.max_lag}: expected 0 or more days")
    study = frames.person_day_frame(lake, args.outcome, exposure, cohort=args.cohort)
    values = study.frame[exposure].dropna()
    if values.empty:
        raise ExplorerError(f"exposure_daily has no {exposure} values: nothing to fit")
    exposure_basis = (splines.linear() if args.exposure_df <= 1
                      else splines.natural_spline(values, df=args.exposure_df))
    lag_basis = (splines.integer(range(args.max_lag + 1)) if args.lag_df <= 0
                 else splines.natural_spline(np.arange(args.max_lag + 1), df=args.lag_df, intercept=True))
    crossbasis = dlnm.CrossBasis(exposure_basis, lag_basis, args.max_lag)
    fit = dlnm.fit_person_days(study.frame, args.outcome, exposure, crossbasis)
    centre = args.centre if args.centre is not None else (0.0 if exposure == "tas_anomaly" else float(values.median()))
    at = _numbers(args.at, "--at") or list(np.round(np.percentile(values, [1, 50, 99]), 2))
    prediction = fit.predict(at=at, centre=centre)
    print(f"DLNM of {args.outcome} on {exposure}, lags 0-{args.max_lag}: {fit.model.n_obs:,} person-days of "
          f"{fit.model.n_groups:,} persons; random intercept per person, fixed effect per day (REML)")
    print(f"Effects in {args.outcome}'s units against {exposure} = {centre:g}:")
    lag_table = prediction.lag_frame().round(4)
    print(table_text(lag_table))
    print("Overall cumulative effect:")
    print(table_text(prediction.overall_frame().round(4)))
    _print_frame_rules(study)
    curve = fit.predict(centre=centre)
    page = pn.Column(f"# DLNM: {args.outcome} on {exposure}",
                     views.exposure_response(curve, exposure=exposure, outcome=args.outcome, role=role),
                     views.lag_response(prediction, exposure=exposure, outcome=args.outcome, role=role),
                     views.surface(curve, exposure=exposure, role=role))
    return page, {"outcome": args.outcome, "exposure": exposure, "max_lag": args.max_lag, "versions": study.versions}


def _time_to_event(lake: Lake, args):
    from explorer.analysis import frames

    outcome = _outcome(args)
    require_tables(lake, ("wearable_daily",), read=True)
    study = frames.time_to_event_frame(lake, outcome, cohort=args.cohort, interval_days=args.interval_days)
    if study.frame.empty:
        raise ExplorerError("nobody is in follow-up: the study frame has no rows (see its attrition above)")
    return outcome, study


def _cox(lake: Lake, args, role):
    import panel as pn

    from explorer.analysis import splines, survival
    from explorer.views import analysis as views

    outcome, study = _time_to_event(lake, args)
    rows = study.frame
    fit = survival.cox(rows, "stop", "event", ["steps_previous_1000", "age"], start="start", cluster="person_id")
    print(f"Cox regression of {outcome.name} on the previous interval's daily steps (per 1,000) and age: "
          f"{fit.n_rows:,} intervals of {fit.n_persons:,} persons, {fit.n_events:,} events; robust SEs by person")
    print(table_text(fit.table.round(4).reset_index().rename(columns={"index": "term"})))
    print("Proportional hazards (Grambsch-Therneau, rank of time):")
    print(table_text(fit.proportional_hazards_test().round(4).reset_index().rename(columns={"index": "term"})))
    parts = [f"# Cox: {outcome.name}", views.forest(fit.table, role=role)]
    if args.spline:
        # 3 knots below 100 events: each knot costs a coefficient the events must carry
        basis = splines.restricted_cubic_spline(rows.steps_previous, n_knots=3 if fit.n_events < 100 else 4)
        spline_fit = survival.cox(rows, "stop", "event", ["age"], start="start", cluster="person_id",
                                  splines={"steps_previous": basis})
        reference = float(np.median(rows.steps_previous))
        grid = np.linspace(*np.percentile(rows.steps_previous, [5, 95]), 40)
        curve = spline_fit.dose_response("steps_previous", grid, reference=reference)
        print(f"Dose-response (restricted cubic spline, knots {', '.join(f'{k:.0f}' for k in basis.knots)}), "
              f"hazard ratio against {reference:.0f} steps:")
        print(table_text(curve.iloc[::8].round(3)))
        parts.append(views.dose_response(curve, "steps_previous", reference, label="daily steps, previous interval", role=role))
    _print_frame_rules(study)
    return pn.Column(*parts), {"outcome": outcome.name, "versions": study.versions}


def _km(lake: Lake, args, role):
    import panel as pn

    from explorer.analysis import survival
    from explorer.views import analysis as views

    outcome, study = _time_to_event(lake, args)
    persons = study.persons()
    persons["tertile"] = pd.qcut(persons.baseline_steps, 3, labels=["lowest third", "middle third", "highest third"])
    persons = persons.sort_values("baseline_steps")  # the curves in the order of their steps
    km = survival.kaplan_meier(persons.stop, persons.event, entry=persons.entry, group=persons.tertile.astype(str))
    if role == "public":
        return _public_km(outcome, km, args)
    print(f"Kaplan-Meier of {outcome.name} from day {args.interval_days} by tertile of baseline daily steps "
          f"({len(persons):,} persons, {int(persons.event.sum()):,} events):")
    summary = km.groupby("group").agg(persons=("at_risk", "first"), events=("events", "sum"),
                                      survival_at_end=("survival", "last")).reset_index()
    print(table_text(summary.round(4)))
    _print_frame_rules(study)
    return pn.Column(f"# Kaplan-Meier: {outcome.name}", views.survival_curves(km, start=args.interval_days, role=role)), \
        {"outcome": outcome.name, "versions": study.versions}


def _public_km(outcome, km, args):
    import panel as pn

    from explorer.privacy.disclosure import default_profile, profile
    from explorer.privacy.survival import released_survival
    from explorer.views import analysis as views

    rules = profile(args.profile or default_profile())
    released = released_survival(km, rules, origin=args.interval_days)
    print(f"Kaplan-Meier of {outcome.name} by tertile of baseline daily steps, released under {rules.title}: steps merged "
          f"until every count is clear of {rules.label}; survival from the counts shown; a curve stops where fewer would "
          "remain at risk.")
    print(table_text(released.round(4)) if len(released) else "(nothing can be shown: too few persons or events)")
    page = pn.Column(f"# Kaplan-Meier: {outcome.name}",
                     views.survival_curves(km, start=args.interval_days, role="public", profile=rules.name))
    return page, {"outcome": outcome.name, "profile": rules.name}


def _case_crossover(lake: Lake, args, role):
    import panel as pn

    from explorer.analysis import casecrossover
    from explorer.views import analysis as views

    outcome = _outcome(args)
    exposure = args.exposure or "tasmax"
    if exposure not in EXPOSURE_COLUMNS:
        raise ExplorerError(f"--exposure {exposure!r}: expected an exposure_daily column: {', '.join(EXPOSURE_COLUMNS)}")
    require_tables(lake, ("exposure_daily",), read=True)
    lags = [int(v) for v in _numbers(args.lags, "--lags")]
    versions = {table: lake.version(table) for table in ("exposure_daily", outcome.table)}
    events = outcome.first_dates(lake, versions).rename(columns={"outcome_date": "date"})
    if events.empty:
        raise ExplorerError(f"no person has the outcome {outcome.name}: nothing to compare")
    exposures = lake.sql(f"SELECT person_id, date, {exposure} FROM exposure_daily", versions=versions)
    result = casecrossover.case_crossover(events, exposures, exposure, lags=lags, window_mean=args.window_mean)
    print(f"Time-stratified case-crossover of {outcome.name} (first occurrence) on {exposure}: {result.n_events:,} events "
          f"with their referent days (same year, month and weekday); odds ratio per unit of {exposure}")
    print(table_text(result.table.round(4).reset_index().rename(columns={"index": "term"})))
    if result.n_dropped:
        print(f"Left out: {result.n_dropped:,} events: " + "; ".join(f"{n} {why}" for why, n in result.dropped.value_counts().items()))
    return pn.Column(f"# Case-crossover: {outcome.name} on {exposure}", views.forest(result.table, ratio="odds_ratio", role=role)), \
        {"outcome": outcome.name, "exposure": exposure, "lags": lags, "versions": versions}


def _table1(lake: Lake, args, role):
    import panel as pn

    from explorer.analysis import table_one
    from explorer.views import analysis as views

    outcome, study = _time_to_event(lake, args)
    persons = study.persons().rename(columns={"event": "outcome", "sex_at_birth": "sex"})
    persons["outcome"] = persons.outcome.map({True: f"{outcome.name}", False: "no event"})
    if role == "public":
        from explorer.privacy import DisclosureControl
        from explorer.privacy.disclosure import default_profile
        from explorer.privacy.table_one import released_table_one

        control = DisclosureControl(profile=args.profile or default_profile())
        table = released_table_one(persons, "outcome", continuous=["age"], categorical=["sex"], nonnormal=["baseline_steps"],
                                   control=control)
        shown = [c for c in table.columns if "|" not in c]
        print(f"Table 1 by outcome, released under {control.rules.title}: every count on one page with its complements "
              f"hidden ({control.rules.label}); statistics only of more persons than that")
        print(table_text(table[shown].assign(smd=table.smd.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))))
        return pn.Column(f"# Table 1: {outcome.name}", views.table_one_view(table, role=role)), \
            {"outcome": outcome.name, "profile": control.rules.name}
    table = table_one.table_one(persons, "outcome", continuous=["age"], categorical=["sex"], nonnormal=["baseline_steps"])
    shown = [c for c in table.columns if "|" not in c]
    print(f"Table 1 of the {len(persons):,} persons in follow-up, by outcome:")
    print(table_text(table[shown].assign(smd=table.smd.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))))
    _print_frame_rules(study)
    return pn.Column(f"# Table 1: {outcome.name}", views.table_one_view(table, role=role)), \
        {"outcome": outcome.name, "versions": study.versions}
