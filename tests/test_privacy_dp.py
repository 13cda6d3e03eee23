"""Differentially private counts (OpenDP) and the privacy budget that refuses overspending."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pandas as pd
import pytest

from explorer.errors import ExplorerError
from explorer.privacy.dp import OTHER, BudgetExceeded, PrivacyBudget, dp_counts

GROUPS = ["a", "b", "c"]


def test_budget_is_charged_before_release_and_refuses_overspending(tmp_path):
    budget = PrivacyBudget(tmp_path)
    counts = pd.Series([120, 40, 3], index=pd.Index(["a", "b", "c"], name="race"))
    with pytest.raises(BudgetExceeded, match="no privacy budget for dataset 'person', release 'q4'.*explorer budget set"):
        dp_counts(counts, epsilon=0.5, budget=budget, dataset="person", release="q4", user="u", groups=GROUPS)
    budget.set("person", "q4", 1.0, user="steward")
    first = dp_counts(counts, epsilon=0.6, budget=budget, dataset="person", release="q4", user="u", groups=GROUPS)
    assert first["epsilon"].iloc[0] == pytest.approx(0.6) and budget.remaining("person", "q4") == pytest.approx(0.4)
    with pytest.raises(BudgetExceeded, match="0.4 of 1 left; nothing was released"):
        dp_counts(counts, epsilon=0.5, budget=budget, dataset="person", release="q4", user="u", groups=GROUPS)
    assert budget.remaining("person", "q4") == pytest.approx(0.4)  # a refused query spends nothing
    dp_counts(counts, epsilon=0.4, budget=budget, dataset="person", release="q4", user="u", groups=GROUPS)
    assert budget.frame().set_index("release").loc["q4", ["spent", "charges"]].tolist() == [pytest.approx(1.0), 2]
    with pytest.raises(ExplorerError, match="already spent epsilon 1"):
        budget.set("person", "q4", 0.5, user="steward")
    with pytest.raises(ExplorerError, match="epsilon must be a positive number"):
        dp_counts(counts, epsilon=0, budget=budget, dataset="person", release="q4", user="u", groups=GROUPS)


def test_noise_is_unbiased_with_the_stated_accuracy_and_groups_are_fixed(tmp_path):
    budget = PrivacyBudget(tmp_path)
    budget.set("person", "sim", 1e6, user="steward")
    counts = pd.Series([500, 50], index=pd.Index(["a", "b"], name="g"))
    draws = [dp_counts(counts, epsilon=0.5, budget=budget, dataset="person", release="sim", user="u", groups=["a", "z"])
             for _ in range(400)]
    noisy = np.array([d["count"].to_numpy() for d in draws])
    assert draws[0]["g"].tolist() == ["a", "z", OTHER] and (noisy >= 0).all()  # b is not listed: counted as other
    assert abs(noisy[:, 2].mean() - 50) < 1
    errors = noisy[:, 0] - 500
    assert abs(errors.mean()) < 0.5  # discrete Laplace with scale 2: mean 0, SD about 2.8
    accuracy = draws[0]["accuracy"].iloc[0]
    assert 0.9 <= np.mean(np.abs(errors) <= accuracy) <= 0.99


def _charge(root, results):
    budget = PrivacyBudget(root)
    for _ in range(5):
        try:
            budget.charge("person", "r", 0.1, user="w", what="test")
            results.put(1)
        except BudgetExceeded:
            results.put(0)


def test_concurrent_processes_cannot_overspend(tmp_path):
    PrivacyBudget(tmp_path).set("person", "r", 1.0, user="steward")
    results = multiprocessing.get_context("spawn").Queue()
    workers = [multiprocessing.get_context("spawn").Process(target=_charge, args=(tmp_path, results)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    granted = sum(results.get(timeout=5) for _ in range(20))
    assert granted == 10 and PrivacyBudget(tmp_path).remaining("person", "r") == pytest.approx(0.0)


def test_count_command_under_each_control(lake):
    from explorer.privacy import AuditLog
    from explorer.testing.factories import make_persons
    from conftest import run_cli

    lake.write("person", make_persons(40))
    shown = run_cli("--role", "public", "count", "person", "--by", "sex_at_birth", "--profile", "ukbiobank", lake_root=lake.root)
    assert shown.returncode == 0, shown.stderr
    assert "UK Biobank" in shown.stdout and "total: 40" in shown.stdout
    refused = run_cli("--role", "public", "count", "person", "--by", "sex_at_birth", "--dp", "--epsilon", "1",
                      "--release", "q4", "--groups", "female,male", lake_root=lake.root)
    assert refused.returncode == 2 and "explorer budget set" in refused.stderr
    no_groups = run_cli("--role", "public", "count", "person", "--by", "sex_at_birth", "--dp", "--epsilon", "1",
                        "--release", "q4", lake_root=lake.root)
    assert no_groups.returncode == 2 and "--dp needs --groups" in no_groups.stderr
    assert run_cli("--role", "public", "budget", "set", "--dataset", "person", "--release", "q4", "--epsilon", "1",
                   lake_root=lake.root).returncode == 2  # a steward's decision
    assert run_cli("budget", "set", "--dataset", "person", "--release", "q4", "--epsilon", "1", lake_root=lake.root).returncode == 0
    released = run_cli("--role", "public", "count", "person", "--by", "sex_at_birth", "--dp", "--epsilon", "1",
                       "--release", "q4", "--groups", "female,male", lake_root=lake.root)
    assert released.returncode == 0 and "budget person/q4: 0 left" in released.stdout
    for attempt in (["--by", "person_id"], ["--by", "zip3; DROP TABLE person"], ["measurement", "--by", "unit"]):
        bad = run_cli("--role", "public", "count", *attempt, lake_root=lake.root)
        assert bad.returncode == 2 and "error:" in bad.stderr, attempt
    assert lake.row_count("person") == 40
    actions = AuditLog(lake.root).entries()["action"].tolist()
    assert actions == ["count", "budget_set", "count"]
