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


def test_a_within_margin_claim_is_stated_against_the_models_still_open_only():
    # "within the margin" is shown against the models open at that look; a model stopped
    # before (futile, or within the margin itself) is not covered, so the words must not say
    # "every model".
    results = {"good": [0.990, 0.991], "close": [0.9895, 0.9903]}
    decisions = decide(results, SequentialSettings(min_seeds=2, max_seeds=4, margin=0.01))
    assert {d.model: d.state for d in decisions.models}["close"] == "within margin"
    models = tuple(conclusions.ModelEvidence(m, tuple(v)) for m, v in results.items())
    evidence = conclusions.Evidence(models, n_images=10_000, decisions=decisions)
    text = conclusions.to_markdown(conclusions.write_conclusions(evidence))
    assert "Shown at most 1 points below every model still open when it stopped: close" in text
