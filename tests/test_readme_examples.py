"""The README's examples, run: a reader who copies one gets what the README says."""

import re
from pathlib import Path

from explorer import cohorts

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_cohort_example() -> str:
    text = README.read_text()
    found = re.search(r"```yaml\n(schema: explorer\.cohort/1\n.*?)```", text, re.S)
    assert found, "the README's cohort example (a ```yaml block starting schema: explorer.cohort/1) is gone"
    return found.group(1)


def test_the_readme_cohort_example_counts_people_on_a_demo_like_lake(cohort_lake):
    """The example once asked for 60 valid wear days, more than the demo lake holds, and counted
    nobody; it must count people on a synthetic lake of the demo's kind (weeks of wear, ten years
    of records), every criterion removing fewer than all."""
    definition = cohorts.loads(readme_cohort_example())
    attrition = cohorts.count(cohort_lake, definition)
    assert len(attrition) == 1 + 1 + len(definition.inclusion) + len(definition.exclusion)
    assert attrition["persons"].iloc[-1] > 0, attrition.to_string()
