"""Landing page: what each dashboard shows, for the role signed in."""

import panel as pn

from explorer.serve import PAGES, page

TEXT = {
    "overview": "who is in the lake: persons by age band, sex, race, ethnicity and ZIP3",
    "wearables": "daily steps, resting heart rate and circadian metrics; one person's minutes for researchers",
    "environment": "heat-wave calendar and the exposure-outcome relation",
    "ageing": "ageotype membership and PhenoAge against age",
    "cohorts": "build a cohort definition and see its attrition as you go",
    "catalog": "datasets, their versions and lineage, refresh runs, and what changed between two versions",
}


def build(lake, role):
    rows = "\n".join(f"- [{label}](./{name}): {TEXT[name]}" for name, label in PAGES if name in TEXT)
    note = ("Counts are shown under disclosure control: small groups are hidden." if role == "public"
            else "You see exact counts and person-level views; what you export is audited.")
    return [pn.pane.Markdown(f"{rows}\n\n{note}")]


page("Cohort Explorer", build).servable(title="Cohort Explorer")
