"""Search index tables: one per search-parameter type, written with the resource.

Every row carries ``pk`` (``resources.pk``), ``rtype`` (the resource type) and ``param`` (the
search parameter code, e.g. ``family``). A resource has zero or more rows per parameter. Rows are
replaced on every write of the resource and removed on delete.

Values:

* string: ``value`` is normalized (case-folded, accents stripped, whitespace collapsed) for the
  default starts-with and ``:contains`` matches; ``exact`` is the original text for ``:exact``.
* token: ``system``, ``code`` and ``text`` (normalized display / text for ``:text``).
* reference: ``target_type`` + ``target_id`` for local references, ``url`` for absolute or
  canonical ones (``version`` holds a canonical ``|version``).
* date: ``low`` and ``high``, microseconds since the epoch (UTC), both inclusive, the range the
  value covers at its precision (``1980`` covers the whole year).
* number: ``value`` and the ``low``/``high`` range its precision implies.
* quantity: ``value``, ``low``, ``high``, ``system``, ``code``, ``unit`` and ``comparator``;
  ``canon_value``/``canon_code`` hold the UCUM-normalized value where the conversion is simple.
* uri: ``value``.
* composite: one row per composite value; ``c1_*`` and ``c2_*`` (and ``c3_*``) hold the
  components as token (system, code), string/uri (``_str``), or number/quantity/date ranges
  (``_low``, ``_high``, plus quantity ``_system``/``_code``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, String, Table, Text

from ehr.storage.tables import PK, metadata

__all__ = [
    "INDEX_TABLES",
    "idx_composite",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_string",
    "idx_token",
    "idx_uri",
]


def _base(name: str, *cols: Column) -> Table:  # type: ignore[type-arg]
    return Table(
        name,
        metadata,
        Column("pk", PK, nullable=False),
        Column("rtype", String(64), nullable=False),
        Column("param", String(100), nullable=False),
        *cols,
    )


idx_string = _base(
    "idx_string",
    Column("value", String(512), nullable=False),
    Column("exact", Text, nullable=False),
)
Index("ix_idx_string_lookup", idx_string.c.rtype, idx_string.c.param, idx_string.c.value)
Index("ix_idx_string_pk", idx_string.c.pk)

idx_token = _base(
    "idx_token",
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=True),
    Column("text", String(512), nullable=True),
)
Index(
    "ix_idx_token_code", idx_token.c.rtype, idx_token.c.param, idx_token.c.code, idx_token.c.system
)
Index("ix_idx_token_pk", idx_token.c.pk)

idx_reference = _base(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("url", String(1024), nullable=True),
    Column("version", String(64), nullable=True),
)
Index(
    "ix_idx_reference_target",
    idx_reference.c.target_id,
    idx_reference.c.target_type,
    idx_reference.c.rtype,
    idx_reference.c.param,
)
Index("ix_idx_reference_url", idx_reference.c.url)
Index("ix_idx_reference_pk", idx_reference.c.pk)

idx_date = _base(
    "idx_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
)
Index("ix_idx_date_lookup", idx_date.c.rtype, idx_date.c.param, idx_date.c.low, idx_date.c.high)
Index("ix_idx_date_pk", idx_date.c.pk)

idx_number = _base(
    "idx_number",
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
)
Index("ix_idx_number_lookup", idx_number.c.rtype, idx_number.c.param, idx_number.c.value)
Index("ix_idx_number_pk", idx_number.c.pk)

idx_quantity = _base(
    "idx_quantity",
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(128), nullable=True),
    Column("unit", String(128), nullable=True),
    Column("comparator", String(4), nullable=True),
    Column("canon_value", Float, nullable=True),
    Column("canon_code", String(128), nullable=True),
)
Index("ix_idx_quantity_lookup", idx_quantity.c.rtype, idx_quantity.c.param, idx_quantity.c.value)
Index("ix_idx_quantity_pk", idx_quantity.c.pk)

idx_uri = _base(
    "idx_uri",
    Column("value", String(1024), nullable=False),
)
Index("ix_idx_uri_lookup", idx_uri.c.rtype, idx_uri.c.param, idx_uri.c.value)
Index("ix_idx_uri_pk", idx_uri.c.pk)

_comp_cols = []
for _n in (1, 2, 3):
    _comp_cols += [
        Column(f"c{_n}_system", String(512), nullable=True),
        Column(f"c{_n}_code", String(512), nullable=True),
        Column(f"c{_n}_str", String(512), nullable=True),
        Column(f"c{_n}_low", Float, nullable=True),
        Column(f"c{_n}_high", Float, nullable=True),
    ]
idx_composite = _base("idx_composite", *_comp_cols)
Index(
    "ix_idx_composite_lookup", idx_composite.c.rtype, idx_composite.c.param, idx_composite.c.c1_code
)
Index("ix_idx_composite_pk", idx_composite.c.pk)

#: search-parameter type -> its index table
INDEX_TABLES: dict[str, Table] = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
    "composite": idx_composite,
}
