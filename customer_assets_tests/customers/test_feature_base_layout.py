"""A feature base built by another version of the build statements is rebuilt, not reused."""

import duckdb

from customer_assets.customers import features


def test_base_from_an_older_layout_is_rebuilt(tmp_path, retail_db):
    import shutil

    db = tmp_path / "wh.duckdb"
    shutil.copy(retail_db, db)
    con = duckdb.connect(str(db))
    first = features.ensure_feature_base(con)
    assert features.ensure_feature_base(con).build_id == first.build_id  # same data, same code: reused
    # pretend the stored base was built by an older version of the code (same data)
    con.execute(f"UPDATE {first.prefix}meta SET fingerprint = split_part(fingerprint, ':', 1) || ':older'")
    rebuilt = features.ensure_feature_base(con)
    assert rebuilt.build_id != first.build_id
    con.close()
