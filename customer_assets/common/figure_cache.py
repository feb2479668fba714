"""Figures drawn from warehouse tables alone, rendered once per content of those tables.

Several assets draw a figure of the table they just wrote for their metadata in the UI, and the
report (customer_report) shows the same figures. Rendering a figure costs 0.05-0.2 s of CPU and the
report is the last step of a run, so drawing them twice was work on the run's critical path.

`table_figure_png(con, tables, draw)` returns the PNG of `draw(con)`, where `draw` is a function that
reads only the warehouse tables named in `tables` (and constants). The PNG is kept in this process
under (draw's module and name, dpi, each table's content key); a step that asks for the same figure
of the same table contents later in the run (the report after the asset) gets the same bytes
without drawing. The content key is the table's row count and the sum of its rows' hashes, computed
by DuckDB (a scan of a customer-level table: milliseconds): a table written again, by anyone, with
other rows gives another key, so a figure of old rows is never returned.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import duckdb

from customer_assets.common.db import quote_ident

MAX_FIGURES = 32
_PNGS: OrderedDict = OrderedDict()
_LOCK = threading.Lock()


def table_content_key(con: duckdb.DuckDBPyConnection, table: str) -> tuple:
    """(rows, sum of the rows' hashes) of `table`: changes whenever its rows do."""
    rows, hashed = con.execute(
        f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {quote_ident(table)} AS t").fetchone()
    return int(rows), int(hashed)


def table_figure_png(con: duckdb.DuckDBPyConnection, tables: tuple, draw: Callable, dpi: int = 90) -> bytes:
    """PNG of the figure `draw(con)` returns, drawn from the tables in `tables` only (see module)."""
    from customer_assets.common.metadata import fig_to_png_bytes

    key = (draw.__module__, draw.__qualname__, dpi, tuple((t, table_content_key(con, t)) for t in tables))
    with _LOCK:
        png = _PNGS.get(key)
        if png is not None:
            _PNGS.move_to_end(key)
            return png
    png = fig_to_png_bytes(draw(con), dpi)
    with _LOCK:
        _PNGS[key] = png
        while len(_PNGS) > MAX_FIGURES:
            _PNGS.popitem(last=False)
    return png


def clear() -> None:
    with _LOCK:
        _PNGS.clear()
