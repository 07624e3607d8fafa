"""Promotion gates: the gates file is read strictly, and the paired bootstrap agrees with DeLong's closed form."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medml.errors import ConfigError
from medml.monitor.gates import (
    GATE_TYPES,
    GATES_FILE,
    AurocDifference,
    CalibrationSlope,
    Leakage,
    paired_auroc_difference,
    parse_gates,
    patient_hashes,
    read_gates,
)


def test_the_shipped_gates_file_names_every_metric_with_its_documented_defaults() -> None:
    gates = read_gates()
    assert gates.names() == list(GATE_TYPES)
    by_type = {type(g): g for g in gates.gates}
    assert by_type[AurocDifference] == AurocDifference(margin=0.02, alpha=0.05, n_boot=2000, seed=0)
    assert by_type[CalibrationSlope] == CalibrationSlope(low=0.8, high=1.25)
    text = GATES_FILE.read_text()
    for name in GATE_TYPES:  # each metric is explained in the file, not only listed
        assert f"  {name}:" in text


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({"gates": {"auroc_diference": {"margin": 0.02}}}, "unknown metric 'auroc_diference'"),
        ({"gates": {"calibration_slope": {"lo": 0.8}}}, "calibration_slope has no setting 'lo'"),
        ({"gates": {"auroc_difference": {"margin": "small"}}}, "auroc_difference.margin must be a number"),
        ({"gates": {"auroc_difference": {"n_boot": 1000.5}}}, "must be a whole number"),
        ({"gates": {"auroc_difference": {"alpha": 0.7}}}, "alpha must be between 0 and 0.5"),
        ({"gates": {"calibration_slope": {"low": 1.1, "high": 1.3}}}, "must hold 1"),
        ({"gates": [{"metric": "auroc_difference"}]}, "one mapping 'gates:'"),
        ({"gate": {}}, "one mapping 'gates:'"),
    ],
)
def test_a_gates_file_medml_cannot_follow_is_refused_naming_what_is_wrong(doc: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_gates(doc, source="/somewhere/my-gates.yaml")
    assert fragment in str(e.value)
    assert "my-gates.yaml" in str(e.value)


def test_leakage_is_always_among_the_gates() -> None:
    gates = parse_gates({"gates": {"calibration_slope": {"low": 0.7}}})
    assert [type(g) for g in gates.gates] == [CalibrationSlope, Leakage]
    assert gates.gates[0] == CalibrationSlope(low=0.7, high=1.25)


def test_an_unreadable_gates_file_is_one_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "gates.yaml"
    bad.write_text("gates: {auroc_difference: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_gates(bad)


def _delong_difference_se(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong, DeLong and Clarke-Pearson (1988): the variance of AUROC(a) - AUROC(b) from placement values."""
    pos, neg = y == 1, y == 0
    comps = []
    for s in (a, b):
        x, z = s[pos], s[neg]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps.append((psi.mean(axis=1), psi.mean(axis=0)))
    v10 = np.cov(np.vstack([comps[0][0], comps[1][0]]))
    v01 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    s = v10 / pos.sum() + v01 / neg.sum()
    return float(np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1]))


def test_the_paired_bootstrap_matches_scikit_learn_and_delongs_standard_error() -> None:
    """Two correlated scores of 600 patients: the difference equals scikit-learn's AUROCs subtracted, and the
    bootstrap spread of the paired difference is DeLong's standard error within 10%."""
    rng = np.random.default_rng(3)
    n = 600
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(size=n)
    a = 1.2 * y + shared + 0.6 * rng.normal(size=n)
    b = 1.0 * y + shared + 0.6 * rng.normal(size=n)
    diff, draws = paired_auroc_difference(y, a, b, n_boot=4000, seed=1)
    assert diff == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    assert draws.size == 4000 and np.isfinite(draws).all()
    assert np.std(draws) == pytest.approx(_delong_difference_se(y, a, b), rel=0.10)
    # unpaired resampling would ignore the shared component: the paired spread is well below the unpaired one
    se_a = np.std([roc_auc_score(y[i], a[i]) for i in rng.integers(0, n, size=(300, n))])
    assert np.std(draws) < 0.8 * np.sqrt(2) * se_a


def test_identical_scores_give_a_difference_of_exactly_zero_in_every_resample() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).astype(int)
    p = rng.random(300)
    diff, draws = paired_auroc_difference(y, p, p, n_boot=500)
    assert diff == 0.0 and np.all(draws == 0.0)


def test_patient_hashes_are_keyed_blake2b_of_the_id() -> None:
    got = patient_hashes(np.array(["va-1", "va-2"], dtype=object), "salt")
    want = [hashlib.blake2b(s.encode(), key=b"salt", digest_size=8).hexdigest() for s in ("va-1", "va-2")]
    assert got.tolist() == want
    assert patient_hashes(np.array(["va-1"], dtype=object), "other")[0] != want[0]
