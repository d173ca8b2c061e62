"""The type of a Core result row of any shape (SQLAlchemy 2.1 rows are variadic generics)."""

from typing import Any

from sqlalchemy import Row

AnyRow = Row[*tuple[Any, ...]]
