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


def test_the_readme_federation_policy_and_study_read(tmp_path, monkeypatch):
    """The README's site policy and study file are what `explorer federation serve` and `explorer
    federate run` read (with its placeholders filled: a digest, a token, the certificates)."""
    import yaml

    from explorer.federation import policy_from_dict, study_from_dict

    text = README.read_text()
    policy = re.search(r"```yaml\n(schema: explorer\.federation-policy/1\n.*?)```", text, re.S)
    study = re.search(r"```yaml\n(schema: explorer\.federation-study/1\n.*?)```", text, re.S)
    assert policy and study, "the README's federation policy or study example is gone"
    document = yaml.safe_load(policy.group(1).replace("6f1c…", "a" * 64).replace("9b0e…", "b" * 64))
    read = policy_from_dict(document)
    assert read.studies["heat-steps"].review == ("table_one",) and read.min_persons_per_parameter == 10
    (tmp_path / "certs").mkdir()
    (tmp_path / "tokens").mkdir()
    from explorer.federation.service import self_signed_certificate

    for name in ("site-a", "site-b"):
        made, _ = self_signed_certificate([f"{name}.example.org"], tmp_path / name)
        made.rename(tmp_path / "certs" / f"{name}.crt")
    (tmp_path / "tokens" / "site-b").write_text("token-b\n")
    monkeypatch.setenv("SITE_A_TOKEN", "token-a")
    read = study_from_dict(yaml.safe_load(study.group(1)), base=tmp_path)
    assert [s.token for s in read.sites] == ["token-a", "token-b"] and len(read.analyses) == 7
