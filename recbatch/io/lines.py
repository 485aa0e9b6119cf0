"""Raw text lines -> named string fields plus a read-level `reason` (CSV/TSV and JSON lines).

Spark's CSV reader pads short records with nulls and drops extra fields silently, and
its JSON reader turns a broken line into a row of nulls. So lines are read as text and
split here with native functions: fields are counted outside quotes, quotes are checked,
JSON is parsed into a VARIANT whose types are checked per column. A line that fails gets
the first matching read reason (see READ_REASONS) and keeps its raw text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

REASON = "reason"
RAW = "raw"
LINE = "value"  # the text reader's column
LINE_NO = "line_no"  # position of the line in its read split (consecutive lines differ by one)
BLOCK = "block_start"  # byte offset of the split the line was read from
HEADER = "header"  # reason given to header lines; the first per file is not a row (see stage)
# Read-level reasons, in the order they are checked.
CSV_REASONS = (
    "invalid_utf8",
    "line_too_long",
    "blank_line",
    HEADER,
    "unterminated_quote",
    "malformed_quote",
    "too_few_fields",
    "too_many_fields",
)
JSON_REASONS = (
    "invalid_utf8",
    "line_too_long",
    "blank_line",
    "non_finite_number",
    "broken_json",
    "not_an_object",
    "nested_value",
    "wrong_type",
)
# A reason found after the fact: consecutive unterminated lines are one record split by a newline.
NEWLINE_IN_QUOTES = "newline_in_quoted_field"
_NON_FINITE = r"(?i)[:\[,]\s*[-+]?(nan|infinity|inf)\s*[,}\]]"


def _java_char(c: str) -> str:
    """One character as a Java regex escape, valid inside and outside a character class."""
    return f"\\x{{{ord(c):x}}}"


def _first(rules: list[tuple[str, Column]]) -> Column:
    from pyspark.sql import functions as F

    expr = None
    for reason, condition in rules:
        expr = F.when(condition, F.lit(reason)) if expr is None else expr.when(condition, F.lit(reason))
    return expr if expr is not None else F.lit(None).cast("string")


def _common_rules(line: Column, max_line_bytes: int) -> list[tuple[str, Column]]:
    from pyspark.sql import functions as F

    return [
        ("invalid_utf8", ~F.is_valid_utf8(F.col(LINE))),
        ("line_too_long", F.octet_length(F.col(LINE)) > max_line_bytes),
        ("blank_line", F.trim(line) == ""),
    ]


def strip_bom(col: Column) -> Column:
    """The text without a leading UTF-8 byte order mark (Excel writes one; it is not data)."""
    from pyspark.sql import functions as F

    return F.when(col.startswith("\ufeff"), F.substring(col, 2, 1 << 30)).otherwise(col)


def csv_fields(
    lines: DataFrame, names: list[str], delimiter: str, header: str | None, max_line_bytes: int
) -> DataFrame:
    """Text lines -> one string column per name, `raw`, `reason` (null when the line splits cleanly).

    Quotes follow RFC 4180: a field may be wrapped in double quotes, and a quote inside
    is doubled. `header` (the header line's text, BOM removed) marks lines equal to it.
    Other columns of `lines` (source file, positions) are passed through.
    """
    from pyspark.sql import functions as F

    d = _java_char(delimiter)
    field = f'"(?:[^"]++|"")*+"|[^{d}"]*+'
    whole = f"^(?:{field})(?:{d}(?:{field}))*+$"
    line = strip_bom(F.col(LINE))
    quoted = line.contains('"')
    quotes = F.length(line) - F.length(F.replace(line, F.lit('"'), F.lit("")))
    unquote = F.transform(
        F.regexp_extract_all(line, F.lit(f"(?:^|{d})({field})"), F.lit(1)),
        lambda x: F.when(
            x.startswith('"'), F.replace(F.substring(x, F.lit(2), F.length(x) - 2), F.lit('""'), F.lit('"'))
        ).otherwise(x),
    )
    # A plain delimiter (or a backslash and one symbol) takes Java's split fast path, no regex.
    plain = delimiter if delimiter not in ".$|()[{^?*+\\" else "\\" + delimiter
    fields = F.when(quoted, unquote).otherwise(F.split(line, plain, -1))
    n = F.size(F.col("_fields"))
    rules = _common_rules(line, max_line_bytes)
    if header is not None:
        rules.append((HEADER, line == F.lit(header)))
    rules += [
        ("unterminated_quote", quoted & (quotes % 2 == 1)),
        ("malformed_quote", quoted & ~line.rlike(whole)),
        ("too_few_fields", n < len(names)),
        ("too_many_fields", n > len(names)),
    ]
    passthrough = [F.col(c) for c in lines.columns if c != LINE]
    return (
        lines.select(*passthrough, F.col(LINE), fields.alias("_fields"))
        .select(
            *passthrough,
            F.col(LINE).alias(RAW),
            *[F.get(F.col("_fields"), i).alias(name) for i, name in enumerate(names)],
            _first(rules).alias(REASON),
        )
        .select(*passthrough, *[F.col(n) for n in names], F.col(RAW), F.col(REASON))
    )


def _json_path(name: str) -> str:
    return "$['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def json_fields(lines: DataFrame, names: list[str], checked: list[str], max_line_bytes: int) -> DataFrame:
    """JSON lines -> one string column per name, `raw`, `reason` (null when the record is usable).

    Numbers come back as their text; `checked` columns must hold a scalar (nested_value
    otherwise) and not a boolean (wrong_type); a string that is no number in a numeric
    column is left to the value rules (bad_rating, ...). NaN/Infinity are not JSON.
    """
    from pyspark.sql import functions as F

    line = strip_bom(F.col(LINE))
    v = F.col("_v")
    rules = _common_rules(line, max_line_bytes)
    rules += [
        ("non_finite_number", v.isNull() & line.rlike(_NON_FINITE)),
        ("broken_json", v.isNull()),
        ("not_an_object", ~F.schema_of_variant(v).startswith("OBJECT")),
    ]

    kinds = [F.col(f"_k{n}") for n in range(len(checked))]
    nested = [k.startswith("OBJECT") | k.startswith("ARRAY") for k in kinds]
    if nested:
        rules.append(("nested_value", _any(nested)))
        rules.append(("wrong_type", _any([k == "BOOLEAN" for k in kinds])))
    passthrough = [F.col(c) for c in lines.columns if c != LINE]
    # The VARIANT is parsed once and each checked column's type computed once, in their own selects.
    parsed = lines.select(*passthrough, F.col(LINE), F.try_parse_json(line).alias("_v"))
    typed = parsed.select(
        *parsed.columns,
        *[
            F.schema_of_variant(F.try_variant_get(F.col("_v"), _json_path(c), "variant")).alias(f"_k{n}")
            for n, c in enumerate(checked)
        ],
    )
    return typed.select(
        *passthrough,
        *[F.try_variant_get(F.col("_v"), _json_path(n), "string").alias(n) for n in names],
        F.col(LINE).alias(RAW),
        _first(rules).alias(REASON),
    )


def _any(conditions: list[Column]) -> Column:
    from pyspark.sql import functions as F

    out = F.lit(False)
    for c in conditions:
        out = out | F.coalesce(c, F.lit(False))
    return out
