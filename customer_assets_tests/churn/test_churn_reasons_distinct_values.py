"""top_reasons formats each distinct value once: the texts must still be the row-by-row ones, also for
values that compare equal but print differently (-0.0 / 0.0) and for NaN."""

import numpy as np
import pandas as pd

from customer_assets_tests.churn.test_churn_fast_paths import _reference_top_reasons


def test_distinct_value_formatting_keeps_every_rows_text():
    from customer_assets.churn.reasons import top_reasons

    cols = ["frequency", "monetary", "price_index", "active_days", "tenure_days"]
    n = 400
    rng = np.random.default_rng(7)
    feats = pd.DataFrame({
        "frequency": np.tile([0.0, -0.0, 3.0, 3.0], n // 4),             # -0.0 prints "-0", 0.0 prints "0"
        "monetary": np.tile([89.5, 89.49999999999999, 89.50000000000001, np.nan], n // 4),
        "price_index": rng.integers(0, 3, n) * 0.5,
        "active_days": np.tile([2.0, 2.0, 1.0, 5.0], n // 4),
        "tenure_days": rng.integers(0, 4, n).astype(float),
    })
    contrib = pd.DataFrame(rng.uniform(0.1, 1.0, size=(n, len(cols))), columns=cols, index=feats.index)
    medians = {c: 1.0 for c in cols}
    got = top_reasons(feats, contrib, medians)
    pd.testing.assert_frame_equal(got, _reference_top_reasons(feats, contrib, medians))
    texts = set(got.stack())
    assert "Only -0 order(s) so far" in texts and "Only 0 order(s) so far" in texts
    assert {"Total spend 90", "Total spend 89"} <= texts and "Low total spend (nan)" in texts
