"""Dead stock: products that sell too slowly against what is available.

With an inventory file (method "inventory"):
    sold_ratio = units sold in the window / units_stocked
    The window runs from the stock snapshot's `date` (opening stock of that day) to as_of, both
    included; without a date column it is the last `window_days` days up to as_of.
Without one (method "proxy: velocity"):
    sold_ratio = units sold in the last `window_days` / units the product would have sold in that
    time at its own earlier velocity (units per day over the `baseline_days` before the window).
    Products with no sale in the baseline cannot be judged and are left out (counted in metadata).
Either way sold_ratio < dead_ratio is dead stock (sold_ratio == dead_ratio is not).

Inventory file: CSV, Parquet or Excel with the columns `product_id`, `units_stocked` and optionally
`date` (names matched case-insensitively). Other column names: put a JSON object next to the file,
named `<file name without extension>.mapping.json`, e.g. {"product_id": "SKU", "units_stocked": "OnHand"}.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import duckdb
import pandas as pd

from customer_assets.bundles.tables import empty_sql, write_typed

INVENTORY_FIELDS = ("product_id", "units_stocked", "date")
METHOD_INVENTORY = "inventory"
METHOD_PROXY = "proxy: velocity"

DEAD_STOCK_COLUMNS = {
    "product_id": "VARCHAR",
    "product_name": "VARCHAR",
    "units_sold": "DOUBLE",
    "units_available": "DOUBLE",   # units_stocked (inventory); NULL for the proxy
    "expected_units": "DOUBLE",    # proxy: units at the earlier velocity; inventory: = units_available
    "sold_ratio": "DOUBLE",
    "is_dead_stock": "BOOLEAN",
    "method": "VARCHAR",
    "window_start": "DATE",
    "window_end": "DATE",
    "last_sold_date": "DATE",
}


class InventoryError(ValueError):
    """The inventory file cannot be used (missing, unreadable, or without the needed columns)."""


@dataclass
class DeadStockResult:
    frame: pd.DataFrame
    method: str
    notes: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _mapping_for(path: Path) -> dict:
    sidecar = path.with_name(path.name.split(".")[0] + ".mapping.json")
    if not sidecar.exists():
        return {}
    try:
        m = json.loads(sidecar.read_text())
    except json.JSONDecodeError as e:
        raise InventoryError(f"inventory mapping {sidecar} is not valid JSON: {e}") from e
    unknown = set(m) - set(INVENTORY_FIELDS)
    if not isinstance(m, dict) or unknown:
        raise InventoryError(f"inventory mapping {sidecar}: keys must be among {INVENTORY_FIELDS}, got {sorted(unknown)}")
    return m


def _leading_comment_lines(path: Path) -> int:
    """How many lines at the top start with '#' (e.g. the SYNTHETIC label of the shipped file)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    n = 0
    with opener(path, "rt", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            n += 1
    return n


def read_inventory(path: str) -> tuple[pd.DataFrame, list[str]]:
    """The inventory file as (product_id str, units_stocked float, date date|NaT) + notes.

    Rows with no product_id or a units_stocked that is not a number >= 0 are dropped (counted in
    the notes). Raises InventoryError for a missing/unreadable file or missing columns."""
    p = Path(path)
    if not p.exists():
        raise InventoryError(f"inventory file not found: {path}")
    suffixes = "".join(p.suffixes).lower()
    try:
        if suffixes.endswith((".parquet", ".pq")):
            raw = pd.read_parquet(p)
        elif suffixes.endswith((".xlsx", ".xlsm", ".xls")):
            raw = pd.read_excel(p, dtype=str)
        elif suffixes.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
            raw = pd.read_csv(p, dtype=str, sep=None, engine="python", skiprows=_leading_comment_lines(p))
        else:
            raise InventoryError(f"inventory file {path}: unsupported type (use .csv, .parquet or .xlsx)")
    except InventoryError:
        raise
    except Exception as e:  # parser errors of three libraries
        raise InventoryError(f"inventory file {path} could not be read: {type(e).__name__}: {e}") from e
    mapping = _mapping_for(p)
    by_lower = {str(c).strip().lower(): c for c in raw.columns}
    cols = {}
    for f in INVENTORY_FIELDS:
        src = mapping.get(f, f)
        if src in raw.columns:
            cols[f] = src
        elif str(src).strip().lower() in by_lower:
            cols[f] = by_lower[str(src).strip().lower()]
    missing = [f for f in ("product_id", "units_stocked") if f not in cols]
    if missing:
        raise InventoryError(
            f"inventory file {path} lacks column(s) {missing}; found {list(map(str, raw.columns))}. "
            f"Rename them or add {p.name.split('.')[0]}.mapping.json next to it."
        )
    inv = pd.DataFrame(
        {
            "product_id": raw[cols["product_id"]].astype("string").str.strip(),
            "units_stocked": pd.to_numeric(raw[cols["units_stocked"]], errors="coerce"),
            "date": pd.to_datetime(raw[cols["date"]], errors="coerce").dt.date if "date" in cols else None,
        }
    )
    notes = []
    bad = inv["product_id"].isna() | (inv["product_id"] == "") | inv["units_stocked"].isna() | (inv["units_stocked"] < 0)
    if "date" in cols:
        bad |= inv["date"].isna()
    if bad.any():
        notes.append(f"{int(bad.sum())} inventory row(s) dropped: no product_id, units_stocked not a number >= 0, or bad date")
    inv = inv[~bad].reset_index(drop=True)
    if "date" not in cols:
        inv["date"] = pd.NaT
    inv["date"] = pd.to_datetime(inv["date"]).dt.date
    return inv, notes


def dead_stock_from_inventory(
    con: duckdb.DuckDBPyConnection,
    inventory: pd.DataFrame,
    as_of: dt.date,
    dead_ratio: float,
    window_days: int,
) -> DeadStockResult:
    """Sold ratio per inventory product (see module docstring)."""
    notes: list[str] = []
    inv = inventory.copy()
    if inv["date"].notna().any():
        future = inv["date"].notna() & (inv["date"] > as_of)
        if future.any():
            notes.append(f"{int(future.sum())} snapshot row(s) dated after as_of {as_of} ignored")
        inv = inv[~future]
    default_start = as_of - dt.timedelta(days=window_days - 1)
    inv["window_start"] = [d if pd.notna(d) else default_start for d in inv["date"]]  # NaT is a date too
    # Several snapshots of one product: the latest one on or before as_of.
    inv = inv.sort_values(["product_id", "window_start"]).drop_duplicates("product_id", keep="last")
    zero = inv["units_stocked"] <= 0
    if zero.any():
        notes.append(f"{int(zero.sum())} product(s) with 0 units stocked left out (no sold ratio)")
    inv = inv[~zero][["product_id", "units_stocked", "window_start"]]
    # every product (the join below keeps the inventory's): an IN filter here costs twice the scan
    names, params = _names_sql(con, as_of, last_sold=True)
    con.register("__inventory", inv)
    try:
        frame = con.execute(
            f"""
            WITH sold AS (
                SELECT i.product_id, coalesce(sum(t.quantity), 0) AS units_sold
                FROM __inventory i LEFT JOIN cleaned_transactions t
                  ON t.product_id = i.product_id AND t.order_date >= i.window_start AND t.order_date <= ?
                GROUP BY i.product_id),
            names AS ({names})
            SELECT i.product_id, n.product_name, s.units_sold::DOUBLE AS units_sold,
                   i.units_stocked::DOUBLE AS units_available, i.units_stocked::DOUBLE AS expected_units,
                   s.units_sold / i.units_stocked AS sold_ratio,
                   (s.units_sold / i.units_stocked) < ? AS is_dead_stock,
                   '{METHOD_INVENTORY}' AS method, i.window_start::DATE AS window_start, ?::DATE AS window_end,
                   n.last_sold_date
            FROM __inventory i JOIN sold s USING (product_id) LEFT JOIN names n USING (product_id)
            ORDER BY sold_ratio, product_id
            """,
            [as_of, *params, dead_ratio, as_of],
        ).df()
        matched = con.execute(
            "SELECT count(*) FROM __inventory WHERE product_id IN (SELECT DISTINCT product_id FROM cleaned_transactions)"
        ).fetchone()[0]
    finally:
        con.unregister("__inventory")
    stats = {"inventory_products": len(inv), "inventory_products_ever_sold": int(matched)}
    return DeadStockResult(frame=frame, method=METHOD_INVENTORY, notes=notes, stats=stats)


def _names_sql(con: duckdb.DuckDBPyConnection, as_of: dt.date, last_sold: bool = False) -> tuple[str, list]:
    """(SELECT, params) of product_id -> its most frequent name (a NULL name counts; a tie goes to the
    alphabetically last) over the lines dated on or before as_of, and with `last_sold` the date of
    its last such line: read from the star's name counts when they describe those lines
    (bundles.rules.from_star), else scanned."""
    from customer_assets.bundles.rules import from_star
    from customer_assets.warehouse.star import product_names_sql

    star_sql = from_star(con, as_of, lambda c: product_names_sql(c, named_only=False, last_sold=last_sold))
    if star_sql is not None:
        return star_sql, []
    last, inner = (", max(last_date) AS last_sold_date", ", max(order_date) AS last_date") if last_sold else ("", "")
    return f"""SELECT product_id, arg_max(product_name, (n, product_name)) AS product_name{last} FROM (
                   SELECT product_id, product_name, count(*) AS n{inner}
                   FROM cleaned_transactions WHERE order_date <= ? GROUP BY ALL)
               GROUP BY product_id""", [as_of]


def dead_stock_proxy(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    dead_ratio: float,
    window_days: int,
    baseline_days: int,
) -> DeadStockResult:
    """Recent velocity against the product's own earlier velocity (see module docstring)."""
    window_start = as_of - dt.timedelta(days=window_days - 1)
    baseline_start = window_start - dt.timedelta(days=baseline_days)
    first = con.execute("SELECT min(order_date) FROM cleaned_transactions").fetchone()[0]
    eff_start = max(baseline_start, first) if first else baseline_start
    baseline_len = (window_start - eff_start).days
    notes = []
    if baseline_len <= 0:
        notes.append(f"no history before the recent window ({window_start}): the proxy cannot judge any product")
        empty = con.execute(empty_sql(DEAD_STOCK_COLUMNS)).df()
        return DeadStockResult(frame=empty, method=METHOD_PROXY, notes=notes, stats={"baseline_days_used": 0})
    if baseline_len < baseline_days:
        notes.append(f"baseline shortened to {baseline_len} days (data starts {first})")
    names, params = _names_sql(con, as_of)
    frame = con.execute(
        f"""
        WITH per AS (
            SELECT product_id,
                   sum(quantity) FILTER (WHERE order_date >= ? AND order_date < ?) AS base_units,
                   coalesce(sum(quantity) FILTER (WHERE order_date >= ?), 0) AS units_sold,
                   max(order_date) AS last_sold_date
            FROM cleaned_transactions
            WHERE product_id IS NOT NULL AND order_date >= ? AND order_date <= ?
            GROUP BY product_id),
        names AS ({names})
        SELECT p.product_id, n.product_name, p.units_sold::DOUBLE AS units_sold,
               NULL::DOUBLE AS units_available,
               p.base_units / ? * ? AS expected_units,
               p.units_sold / (p.base_units / ? * ?) AS sold_ratio,
               p.units_sold / (p.base_units / ? * ?) < ? AS is_dead_stock,
               '{METHOD_PROXY}' AS method, ?::DATE AS window_start, ?::DATE AS window_end, p.last_sold_date
        FROM per p LEFT JOIN names n USING (product_id)
        WHERE p.base_units > 0
        ORDER BY sold_ratio, product_id
        """,
        [eff_start, window_start, window_start, eff_start, as_of, *params,
         baseline_len, window_days, baseline_len, window_days, baseline_len, window_days, dead_ratio,
         window_start, as_of],
    ).df()
    unjudged = con.execute(
        """SELECT count(DISTINCT product_id) FROM cleaned_transactions WHERE order_date >= ? AND order_date <= ?
           AND product_id NOT IN (SELECT product_id FROM cleaned_transactions
                                  WHERE order_date >= ? AND order_date < ? AND product_id IS NOT NULL)""",
        [window_start, as_of, eff_start, window_start],
    ).fetchone()[0]
    notes.append(
        f"PROXY (no inventory file): sold_ratio = units sold {window_start}..{as_of} / units expected at the "
        f"product's velocity {eff_start}..{window_start - dt.timedelta(days=1)}; {unjudged} product(s) new in the "
        "window have no earlier velocity and are not judged"
    )
    stats = {"baseline_days_used": baseline_len, "products_not_judged_new": int(unjudged)}
    return DeadStockResult(frame=frame, method=METHOD_PROXY, notes=notes, stats=stats)


def compute_dead_stock(
    con: duckdb.DuckDBPyConnection,
    inventory_path: Optional[str],
    as_of: dt.date,
    dead_ratio: float,
    window_days: int,
    baseline_days: int,
) -> DeadStockResult:
    """Inventory method when a usable inventory file is given, else the velocity proxy.

    An inventory that shares no product with the transactions (e.g. the shipped synthetic file with
    another data source) is not used: the proxy runs and the notes say why."""
    if window_days < 1 or baseline_days < 1:
        raise ValueError("dead_stock_window_days and dead_stock_baseline_days must be >= 1")
    if inventory_path:
        inv, notes = read_inventory(inventory_path)
        if len(inv):
            res = dead_stock_from_inventory(con, inv, as_of, dead_ratio, window_days)
            res.notes = notes + res.notes
            res.stats["inventory_file"] = str(inventory_path)
            if res.stats["inventory_products_ever_sold"] > 0:
                return res
            reason = f"inventory file {inventory_path} shares no product_id with the transactions"
        else:
            reason = f"inventory file {inventory_path} has no usable row"
        proxy = dead_stock_proxy(con, as_of, dead_ratio, window_days, baseline_days)
        proxy.notes = notes + [f"{reason}: fell back to the proxy"] + proxy.notes
        return proxy
    return dead_stock_proxy(con, as_of, dead_ratio, window_days, baseline_days)


def write_dead_stock(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, table: str = "dead_stock") -> int:
    return write_typed(con, table, frame, DEAD_STOCK_COLUMNS)
