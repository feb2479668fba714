"""The JSON column mapping: canonical field -> source column name, plus options.

Flat form (the same the earlier analytics tools used):

    {"customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate",
     "product_id": "StockCode", "quantity": "Quantity", "unit_price": "UnitPrice",
     "cancellation_prefix": "C", "date_format": "%d/%m/%Y %H:%M", "non_product_codes": ["POST"]}

Options (all optional): cancellation_prefix, date_format (strptime format), non_product_codes,
delimiter (CSV; auto-detected when absent; "whitespace" for runs of spaces/tabs), header (CSV;
default true), column_names (names for a headerless file), encoding (CSV; UTF-8, falling back to latin-1 with a
warning), sheet (Excel: a sheet name or list; default every sheet holding the mapped columns).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from customer_assets.ingestion.schema import CANONICAL_FIELDS, REQUIRED_FIELDS

OPTION_KEYS = (
    "cancellation_prefix", "date_format", "non_product_codes", "delimiter", "encoding", "sheet",
    "header", "column_names",
)


class MappingError(ValueError):
    """The mapping file is missing, malformed, or does not fit the source."""


@dataclass
class Mapping:
    path: str
    columns: dict  # canonical field -> source column
    cancellation_prefix: Optional[str] = None
    date_format: Optional[str] = None
    non_product_codes: list = field(default_factory=list)
    delimiter: Optional[str] = None
    encoding: Optional[str] = None
    sheet: Optional[object] = None
    header: bool = True
    column_names: Optional[list] = None

    def has(self, canonical: str) -> bool:
        return canonical in self.columns

    @property
    def amount_mode(self) -> str:
        """How line_total is derived: 'line_total', 'order_total' or 'quantity_x_price'."""
        if self.has("line_total"):
            return "line_total"
        if self.has("quantity") and self.has("unit_price"):
            return "quantity_x_price"
        return "order_total"

    def check_columns(self, available: list, where: str) -> None:
        """Raise MappingError naming every mapped column missing from `available`."""
        missing = [(f, c) for f, c in self.columns.items() if c not in available]
        if missing:
            names = ", ".join(f"{f} -> {c!r}" for f, c in missing)
            raise MappingError(
                f"{where}: the mapping {self.path} names column(s) that do not exist: {names}. "
                f"Columns in the file: {', '.join(repr(a) for a in available)}. "
                f"Fix the mapping (names are case- and space-sensitive)."
            )


def load_mapping(path: str | Path) -> Mapping:
    p = Path(path)
    if not p.exists():
        raise MappingError(
            f"Column mapping file not found: {p}. Set CUSTOMER_ASSETS_MAPPING to a JSON file like "
            f'{{"customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate", ...}}'
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MappingError(f"Column mapping {p} is not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}") from e
    if not isinstance(raw, dict):
        raise MappingError(f"Column mapping {p} must be a JSON object of canonical field -> source column")
    return mapping_from_dict(raw, str(p))


def mapping_from_dict(raw: dict, path: str = "<mapping>") -> Mapping:
    unknown = [k for k in raw if k not in CANONICAL_FIELDS and k not in OPTION_KEYS]
    if unknown:
        raise MappingError(
            f"Column mapping {path}: unknown key(s) {unknown}. Canonical fields: {', '.join(CANONICAL_FIELDS)}; "
            f"options: {', '.join(OPTION_KEYS)}"
        )
    columns = {}
    for f in CANONICAL_FIELDS:
        v = raw.get(f)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            raise MappingError(f"Column mapping {path}: {f} must be a column name (a string), got {v!r}")
        columns[f] = v
    missing = [f for f in REQUIRED_FIELDS if f not in columns]
    if missing == ["order_id"] and "order_total" in columns:
        # One row per order and no order id (e.g. CDNOW): each source row is its own order.
        missing = []
    if missing:
        raise MappingError(
            f"Column mapping {path}: required canonical field(s) not mapped: {', '.join(missing)}. "
            f"Every source needs customer_id, order_id and order_datetime."
        )
    has_lines = "quantity" in columns and "unit_price" in columns
    if not (has_lines or "line_total" in columns or "order_total" in columns):
        raise MappingError(
            f"Column mapping {path}: no money field. Map quantity and unit_price, or line_total, "
            f"or order_total (for sources with one row per order)."
        )
    codes = raw.get("non_product_codes") or []
    if not isinstance(codes, list):
        raise MappingError(f"Column mapping {path}: non_product_codes must be a list of codes")
    return Mapping(
        path=path,
        columns=columns,
        cancellation_prefix=raw.get("cancellation_prefix") or None,
        date_format=raw.get("date_format") or None,
        non_product_codes=[str(c) for c in codes],
        delimiter=raw.get("delimiter") or None,
        encoding=raw.get("encoding") or None,
        sheet=raw.get("sheet") or None,
        header=bool(raw.get("header", True)),
        column_names=_column_names(raw.get("column_names"), path),
    )


def _column_names(value, path):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MappingError(f"Column mapping {path}: column_names must be a list of strings")
    return value
