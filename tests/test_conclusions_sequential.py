"""Conclusions of a study run until decided: the procedure's claims, seeds per model, budget."""

from __future__ import annotations

from cnnlab import conclusions
from cnnlab.sequential import Budget, SequentialSettings, decide


def evidence(with_decisions: bool) -> conclusions.Evidence:
    results = {
        "good": [0.990, 0.991, 0.989, 0.9905],
        "close": [0.9895, 0.9903, 0.989, 0.9908],
        "bad": [0.50, 0.51, 0.49],
    }
    settings = SequentialSettings(min_seeds=2, max_seeds=4, budget=Budget(runs=40))
    decisions = decide(results, settings)
    used = {d.model: tuple(results[d.model][: d.seeds]) for d in decisions.models}
    models = tuple(conclusions.ModelEvidence(name, acc) for name, acc in used.items())
    return conclusions.Evidence(
        models, n_images=10_000, decisions=decisions if with_decisions else None
    )


def test_conclusions_state_the_procedure_the_seeds_per_model_and_the_budget():
    found = conclusions.write_conclusions(evidence(True))
    text = conclusions.to_markdown(found)
    assert "Seeds were added only while a model's place was open (sequential Welch" in text
    assert "Shown worse than another model: bad: worse than good by" in text
    assert "Seeds per model: good " in text and "of a budget of 40 runs" in text
    assert "Significantly worse than" not in text  # no fixed-sample test on stopped seeds
    assert found.best is not None and "bad" not in found.best.not_worse


def test_a_fixed_seed_study_keeps_the_fixed_sample_tests():
    text = conclusions.to_markdown(conclusions.write_conclusions(evidence(False)))
    assert "Seeds were added" not in text and "Significantly worse than" in text
