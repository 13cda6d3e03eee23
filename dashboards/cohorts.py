"""Cohorts: the builder with live attrition (researchers), the attrition of saved cohorts, and
the characterisation of a saved cohort."""

import panel as pn

from explorer import cohorts
from explorer.serve import guarded, page, url_synced
from explorer.views import CohortAttrition, CohortBuilder, CohortCharacterisation


def build(lake, role):
    saved = cohorts.saved(lake)["cohort"].tolist() if lake.has_table("cohort_member") else []
    if role == "public":  # saved definitions only: counts of one's own could be subtracted (differencing)
        content = [pn.pane.Markdown("### Saved cohorts\nThe attrition of the cohorts researchers have saved; "
                                    "defining a cohort of your own needs the researcher role.")]
        if saved:
            chooser = pn.widgets.Select(label="cohort", options=saved, value=saved[0], width=300)
            attrition = pn.bind(lambda name: guarded(lambda: CohortAttrition(lake=lake, role=role,
                                                                             definition=cohorts.get(lake, name))), chooser)
            content += [chooser, pn.panel(attrition)]
    else:
        content = [CohortBuilder(lake=lake, role=role).panel()]
    if saved:
        view = CohortCharacterisation(lake=lake, role=role, cohort=saved[0])
        view.param.cohort.objects = saved
        content += [pn.pane.Markdown("### Characterisation of a saved cohort"), url_synced(view, ["cohort", "against"]),
                    guarded(lambda: view)]
    return content


page("Cohorts", build).servable(title="Cohorts")
