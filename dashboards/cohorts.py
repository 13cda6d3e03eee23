"""Cohorts: the builder with live attrition, and the characterisation of a saved cohort."""

import panel as pn

from explorer import cohorts
from explorer.serve import guarded, page, url_synced
from explorer.views import CohortBuilder, CohortCharacterisation


def build(lake, role):
    content = [CohortBuilder(lake=lake, role=role).panel()]
    saved = cohorts.saved(lake)["cohort"].tolist() if lake.has_table("cohort_member") else []
    if saved:
        view = CohortCharacterisation(lake=lake, role=role, cohort=saved[0])
        view.param.cohort.objects = saved
        content += [pn.pane.Markdown("### Characterisation of a saved cohort"), url_synced(view, ["cohort", "against"]),
                    guarded(lambda: view)]
    return content


page("Cohorts", build).servable(title="Cohorts")
