"""On the real Online Retail data the lifetimes fits are fragile: the ladder records it and the
kept BG/NBD is flagged in words (the behaviour the issue describes), without stopping anything."""

import duckdb
import pytest

from customer_assets.ltv import clv
from customer_assets.ltv.summary import calibration_with_holdout


@pytest.mark.slow
def test_online_retail_ladder_flags_the_degenerate_fit(retail_db):
    con = duckdb.connect(str(retail_db), read_only=True)
    cal = calibration_with_holdout(con, "2011-09-10", "2011-12-09")
    con.close()
    ladder = tuple(r for r in clv.BUYING_LADDER if r[0] == "BetaGeoFitter")
    res = clv.fit_ladder(cal, ladder)
    by_pen = {a.penalizer: a for a in res.attempts}
    assert by_pen[0.0].status == "degenerate" and by_pen[0.0].params["a"] < 1e-3
    assert "nobody ever stops buying" in by_pen[0.0].flags[0]
    assert by_pen[0.001].status == by_pen[0.01].status == "failed"
    assert "ConvergenceError" in by_pen[0.001].error
    assert res.best is by_pen[0.0]  # the best converged fit is still kept, flagged
    predicted = clv.build_fitter("BetaGeoFitter", res.best.params).conditional_expected_number_of_purchases_up_to_time(
        90 / 7, cal["frequency"], cal["recency"], cal["T"]).sum()
    actual = cal["actual_purchases"].sum()
    assert 4400 <= actual <= 4500  # the Christmas-season holdout
    assert 0.7 < predicted / actual < 0.78  # ~3,300 predicted: the model misses the seasonal peak
