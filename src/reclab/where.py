"""``--where`` row filters over a table, with errors and warnings in the user's terms.

A ``--where`` expression is a pandas query (``DataFrame.eval``) over one of
the tables (:mod:`reclab.tables`). Before pandas sees it, the expression is
read with Python's own parser so that:

- a name that is not a column is reported with the table's columns;
- a text compared with a categorical column (``type == 'DATA'``) matches its
  category whatever the case (``info`` and ``timeline`` print frame types in
  capitals, the tables in lower case); a text that is no category at all
  gives a warning, since the comparison can match nothing;
- a date/time text without a zone compared with a time column is taken as
  UTC, as every time in the tables is;
- ``argv.str`` (argv is a list) means the text of ``command_line``.

Expressions in pandas' own syntax that Python cannot parse (backquoted
names) go to pandas as they are.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["Where", "WhereError"]

from .errors import ExportError


class WhereError(ExportError):
    """A ``--where`` expression that cannot be used; the message is one line for the CLI."""


# A list column and the text column that spells it out, for ``.str`` methods.
_TEXT_OF = {"argv": "command_line"}
_COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)


class Where:
    """A ``--where`` expression checked against the first batch of ``table``.

    :meth:`filter` keeps the rows of a batch for which it is true; the
    first call checks the expression (raising :class:`WhereError`) and fills
    :attr:`warnings` with one line per comparison that can match nothing.
    """

    def __init__(self, expression: str, table: str):
        self.expression = expression
        self.table = table
        self.warnings: list[str] = []
        self._prepared: str | None = None

    def _columns(self, df: Any) -> str:
        return ", ".join(map(str, df.columns))

    def _prepare(self, df: Any) -> str:
        """The expression as pandas will evaluate it, checked against ``df``'s columns."""
        try:
            tree = ast.parse(self.expression.strip(), mode="eval")
        except SyntaxError:
            if _is_assignment(self.expression.strip()):
                raise WhereError(
                    f"bad --where expression {self.expression!r}: compare with ==, not ="
                ) from None
            return self.expression  # pandas syntax (backquotes): pandas judges it
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and id(node) not in called and node.id not in df.columns:
                hint = f" (text goes in quotes: '{node.id}')" if self._is_value(df, node.id) else ""
                raise WhereError(
                    f"bad --where expression {self.expression!r}: the {self.table} table has no"
                    f" column {node.id!r}{hint}; its columns are {self._columns(df)}"
                )
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                self._fix_compare(node, df)
            # argv is a list; its text methods (argv.str.contains, as before argv was
            # a list) apply to the command line it makes
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "str"
                and isinstance(node.value, ast.Name)
                and node.value.id in _TEXT_OF
                and _TEXT_OF[node.value.id] in df.columns
            ):
                node.value.id = _TEXT_OF[node.value.id]
        return ast.unparse(tree)

    def _fix_compare(self, node: ast.Compare, df: Any) -> None:
        import pandas as pd

        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            if not isinstance(op, _COMPARISONS):
                continue
            for column, value in ((operands[i], operands[i + 1]), (operands[i + 1], operands[i])):
                if not (isinstance(column, ast.Name) and column.id in df.columns):
                    continue
                dtype = df[column.id].dtype
                if isinstance(dtype, pd.CategoricalDtype):
                    for const in _texts(value):
                        const.value = self._category(column.id, dtype, str(const.value))
                elif isinstance(dtype, pd.DatetimeTZDtype):
                    if isinstance(value, ast.Constant) and isinstance(value.value, (int, float)):
                        raise WhereError(
                            f"bad --where expression {self.expression!r}: {column.id} is a time;"
                            " compare it with a date/time in quotes, e.g. '2026-01-01T12:00Z'"
                        )
                    for const in _texts(value):
                        const.value = self._utc(column.id, str(const.value))

    @staticmethod
    def _is_value(df: Any, name: str) -> bool:
        """Whether ``name`` is a value of a categorical column (any case): a text unquoted."""
        import pandas as pd

        return any(
            name.casefold() in {str(c).casefold() for c in df[col].dtype.categories}
            for col in df.columns
            if isinstance(df[col].dtype, pd.CategoricalDtype)
        )

    def _category(self, column: str, dtype: Any, text: str) -> str:
        categories = [str(c) for c in dtype.categories]
        if text in categories:
            return text
        folded = {c.casefold(): c for c in categories}
        if text.casefold() in folded:
            return folded[text.casefold()]
        self.warnings.append(
            f"--where: {text!r} is not a value of {column} ({', '.join(categories)}):"
            " a comparison with it matches nothing"
        )
        return text

    def _utc(self, column: str, text: str) -> str:
        import pandas as pd

        try:
            when = pd.Timestamp(text)
        except (ValueError, TypeError):
            raise WhereError(
                f"bad --where expression {self.expression!r}: {column} is a time and"
                f" {text!r} is not one (write e.g. '2026-01-01T12:00Z')"
            ) from None
        if pd.isna(when):  # "NaT": pandas' own missing time
            return text
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
        return str(when.isoformat())

    def filter(self, df: Any) -> Any:
        """The rows of ``df`` for which the expression is true."""
        import pandas as pd

        if self._prepared is None:
            self._prepared = self._prepare(df)
        try:
            mask = df.eval(self._prepared)
        except WhereError:
            raise
        except Exception as exc:  # pandas raises many types for a bad expression
            detail = str(exc).strip().splitlines()
            message = detail[0] if detail else type(exc).__name__
            if isinstance(exc, SyntaxError):
                message = f"{exc.msg}: it must be a pandas condition, e.g. 'exit_code != 0'"
            elif isinstance(exc, TypeError):  # numpy's words for comparing a number with text
                message = "it compares values of different types (a number with text?)"
            raise WhereError(
                f"bad --where expression {self.expression!r}: {message}; the {self.table}"
                f" table's columns are {self._columns(df)}"
            ) from None
        if not isinstance(mask, pd.Series) or not (
            pd.api.types.is_bool_dtype(mask.dtype) or (len(mask) == 0 and mask.dtype == object)
        ):
            raise WhereError(
                f"bad --where expression {self.expression!r}: it is not a true/false condition"
            )
        if mask.dtype != bool:
            mask = mask.fillna(False).astype(bool)
        return df[mask]


def _texts(node: ast.expr) -> list[ast.Constant]:
    """The text constants of a comparison's other side: one, or those of a list/tuple/set."""
    items = node.elts if isinstance(node, (ast.List, ast.Tuple, ast.Set)) else [node]
    return [n for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _is_assignment(expression: str) -> bool:
    """Whether ``expression`` is ``name = value`` (a comparison mistyped)."""
    try:
        tree = ast.parse(expression, mode="exec")
    except SyntaxError:
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign)
