"""PSI against hand-computed values (bins are (-inf, e0], (e0, e1], ..., (e_last, inf))."""

import math

import numpy as np
import pandas as pd
import pytest

from customer_assets.monitoring.psi import PSI_EPS, feature_psi, psi_from_proportions, psi_table
from customer_assets.registry import reference_distribution


def test_psi_hand_computed_three_bins():
    ref = {"edges": [1.0, 2.0], "proportions": [0.5, 0.3, 0.2], "n": 10}
    # 0, 0 and 1.0 (on the edge: belongs to the left bin) -> bin 0; 1.5 -> bin 1; 3s -> bin 2
    values = [0, 1.0, 1.5, 1.5, 3, 3, 3, 3, 3, 3]
    r = feature_psi(ref, values)
    assert r["current_proportions"] == pytest.approx([0.2, 0.2, 0.6])
    # (0.2-0.5)ln(0.2/0.5) + (0.2-0.3)ln(0.2/0.3) + (0.6-0.2)ln(0.6/0.2)
    # = 0.274887 + 0.040547 + 0.439445
    assert r["psi"] == pytest.approx(0.754879, abs=1e-6)


def test_psi_is_zero_for_identical_shares_and_symmetric():
    assert psi_from_proportions([0.25] * 4, [0.25] * 4) == 0.0
    a, b = [0.1, 0.4, 0.5], [0.3, 0.3, 0.4]
    assert psi_from_proportions(a, b) == pytest.approx(psi_from_proportions(b, a))


def test_psi_empty_bins_use_epsilon():
    assert PSI_EPS == 1e-4
    ref = {"edges": [1.0, 2.0], "proportions": [0.5, 0.5, 0.0], "n": 4}
    r = feature_psi(ref, [5.0, 7.0])  # everything in the bin that was empty in the reference
    # 2 * (1e-4 - 0.5) * ln(1e-4 / 0.5) + (1 - 1e-4) * ln(1 / 1e-4) = 8.515490 + 9.209419
    assert r["psi"] == pytest.approx(17.724909, abs=1e-5)
    assert math.isfinite(r["psi"])


def test_psi_constant_feature():
    df = pd.DataFrame({"c": [5.0] * 50})
    ref = reference_distribution(df, ["c"])["c"]
    assert ref["edges"] == [5.0] and ref["proportions"] == [1.0, 0.0]
    assert feature_psi(ref, [5.0] * 20)["psi"] == 0.0
    # the constant moved: all mass switches bin -> 2 * (1 - 1e-4) * ln(1e4)
    assert feature_psi(ref, [7.0] * 20)["psi"] == pytest.approx(18.418839, abs=1e-5)


def test_psi_same_sample_against_its_own_reference_is_zero_and_shift_is_large():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.lognormal(3, 1, 5000)})
    ref = reference_distribution(train, ["x"])
    assert feature_psi(ref["x"], train["x"])["psi"] == pytest.approx(0.0, abs=1e-12)
    same = rng.lognormal(3, 1, 5000)
    tripled = same * 3
    assert feature_psi(ref["x"], same)["psi"] < 0.02
    assert feature_psi(ref["x"], tripled)["psi"] > 0.5


def test_psi_table_missing_and_empty_inputs_are_reported_not_raised():
    ref = {"a": {"edges": [1.0], "proportions": [0.5, 0.5], "n": 2},
           "empty": {"edges": [], "proportions": [1.0], "n": 0}}
    cur = pd.DataFrame({"a": [0.0, 2.0], "empty": [1.0, 2.0], "b": [1.0, 1.0]})
    t = psi_table(ref, cur, ["a", "b", "empty"]).set_index("feature")
    assert t.loc["a", "psi"] == 0.0
    assert math.isnan(t.loc["b", "psi"]) and "reference" in t.loc["b", "note"]
    assert math.isnan(t.loc["empty", "psi"]) and "no values" in t.loc["empty", "note"]
    t2 = psi_table(ref, pd.DataFrame({"a": [None, None]}), ["a"])
    assert math.isnan(t2.loc[0, "psi"]) and t2.loc[0, "note"] == "no current values"


def test_the_reports_data_fingerprint_is_the_same_for_the_same_data_and_changes_with_it(retail_db, tmp_path):
    """drift_report's data_fingerprint (the sensor's "same data" test against retrain loops): equal on
    the same data, also from a new connection after a write elsewhere; different after any edit."""
    import shutil

    import duckdb

    from customer_assets.monitoring.drift import data_fingerprint

    db = tmp_path / "w.duckdb"
    shutil.copy(retail_db, db)
    con = duckdb.connect(str(db))
    first = data_fingerprint(con)
    con.execute("CREATE TABLE written_by_a_step AS SELECT 1 AS x")
    con.close()
    con = duckdb.connect(str(db))
    assert data_fingerprint(con) == first
    con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1 WHERE rowid = 7")
    assert data_fingerprint(con) != first
