"""Every binary column is either a registered field ciphertext or listed as something else, so
DEK rotation cannot miss a new encrypted column (it would destroy the key under it)."""

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table
from sqlmodel import SQLModel

import backend.db.models  # noqa: F401  (registers every table)
from backend.keyring.encrypted_columns import (
    ENCRYPTED_TABLES,
    NOT_FIELD_CIPHERTEXTS,
    EncryptedTable,
    UnclassifiedColumnsError,
    check_registry,
    unclassified_binary_columns,
)


def test_every_binary_column_of_the_schema_is_classified() -> None:
    assert unclassified_binary_columns(SQLModel.metadata) == []
    check_registry(SQLModel.metadata)


def test_registered_columns_and_not_encrypted_ones_do_not_overlap() -> None:
    registered = {(e.table, c) for e in ENCRYPTED_TABLES for c in e.columns}
    assert not registered & set(NOT_FIELD_CIPHERTEXTS)
    assert all(reason.strip() for reason in NOT_FIELD_CIPHERTEXTS.values())


def _metadata() -> MetaData:
    metadata = MetaData()
    Table(
        "notes",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("patient_id", Integer),
        Column("body_ct", LargeBinary),
        Column("title", String(20)),
    )
    return metadata


def test_a_new_binary_column_in_neither_list_is_reported() -> None:
    problems = unclassified_binary_columns(_metadata(), registry=(), not_encrypted={})
    assert len(problems) == 1
    assert problems[0].startswith("notes.body_ct:")
    registry = (EncryptedTable("notes", "patient_id", "id", ("body_ct",)),)
    assert unclassified_binary_columns(_metadata(), registry=registry, not_encrypted={}) == []
    exempt = {("notes", "body_ct"): "a plain document"}
    assert unclassified_binary_columns(_metadata(), registry=(), not_encrypted=exempt) == []


def test_a_registered_column_that_is_gone_or_not_binary_is_reported() -> None:
    registry = (
        EncryptedTable("notes", "patient_id", "id", ("body_ct", "title", "renamed_ct")),
        EncryptedTable("missing", "patient_id", "id", ("x_ct",)),
        EncryptedTable("notes", "owner", "id", ()),
    )
    problems = unclassified_binary_columns(_metadata(), registry=registry, not_encrypted={})
    assert sorted(problems) == [
        "missing: registered as encrypted but no such table",
        "notes.owner: registered owner/row id column missing",
        "notes.renamed_ct: registered as encrypted but not binary",
        "notes.title: registered as encrypted but not binary",
    ]


def test_check_registry_raises_naming_the_column() -> None:
    with pytest.raises(UnclassifiedColumnsError, match=r"notes\.body_ct"):
        check_registry(_metadata())
