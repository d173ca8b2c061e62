"""The one list of every encrypted column: which table, whose data key, which row id in the AAD.

Every field ciphertext (format engineering-notes §D.7) is bound to its table, column, row id and
owner; this registry says where each of those comes from, so code that must visit *every*
ciphertext of an owner (``interlude keys rotate-deks``) has one place to ask. A binary column that
is not a field ciphertext (a blind index, a wrapped key, a hashed code, a plain document) is listed
in ``NOT_FIELD_CIPHERTEXTS`` with the reason. ``unclassified_binary_columns`` finds a binary
column in neither list; a test fails on it and DEK rotation refuses to start, because rotating
would destroy the old key version under a ciphertext it never re-encrypted.

Owners (backend.keyring.service): a patient (``patients.id``; their devices, responses, sessions
and alerts point at it through ``patient_id``), a staff member (``staff.id``), or an export job or
study (its own ``id``).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import LargeBinary, MetaData, Table

__all__ = [
    "ENCRYPTED_TABLES",
    "NOT_FIELD_CIPHERTEXTS",
    "EncryptedTable",
    "UnclassifiedColumnsError",
    "check_registry",
    "unclassified_binary_columns",
]


@dataclass(frozen=True, slots=True)
class EncryptedTable:
    """One table's field ciphertexts and where their AAD's owner and row id come from."""

    table: str
    owner_column: str
    """The column holding the owner id, whose data key encrypts every column below."""
    row_id_column: str
    """The AAD's row id is ``str()`` of this column's value."""
    columns: tuple[str, ...]
    """Nullable or not; a NULL holds no ciphertext."""

    def sql_table(self, metadata: MetaData) -> Table:
        return metadata.tables[self.table]


ENCRYPTED_TABLES: Final[tuple[EncryptedTable, ...]] = (
    EncryptedTable(
        "patients",
        owner_column="id",
        row_id_column="id",
        columns=(
            "name_ciphertext",
            "email_ciphertext",
            "phone_ciphertext",
            "date_of_birth_ciphertext",
            "mrn_ciphertext",
        ),
    ),
    EncryptedTable(
        "staff",
        owner_column="id",
        row_id_column="id",
        columns=(
            "email_ciphertext",
            "name_ciphertext",
            "totp_secret_ciphertext",
            "totp_pending_ciphertext",
        ),
    ),
    EncryptedTable(
        "devices", owner_column="patient_id", row_id_column="id", columns=("push_token_ciphertext",)
    ),
    EncryptedTable(
        "questionnaire_responses",
        owner_column="patient_id",
        row_id_column="id",
        columns=("answers_ct", "score_ct"),
    ),
    EncryptedTable(
        "treatment_sessions",
        owner_column="patient_id",
        row_id_column="id",
        columns=("observations_ct", "notes_ct"),
    ),
    EncryptedTable(
        "alerts", owner_column="patient_id", row_id_column="id", columns=("resolution_ct",)
    ),
    EncryptedTable(
        "alert_occurrences",
        owner_column="patient_id",
        row_id_column="id",
        columns=("evidence_ct",),
    ),
    # An export's pseudonym key is its own owner: destroying that data key retires the mapping.
    EncryptedTable(
        "export_jobs", owner_column="id", row_id_column="id", columns=("pseudonym_key_ct",)
    ),
    EncryptedTable(
        "export_studies", owner_column="id", row_id_column="id", columns=("pseudonym_key_ct",)
    ),
)

_BLIND_INDEX: Final = (
    "HMAC blind index (engineering-notes §D.6): a keyed hash for equality lookups, no data key"
)

NOT_FIELD_CIPHERTEXTS: Final[Mapping[tuple[str, str], str]] = {
    ("data_keys", "wrapped_dek"): "a data key wrapped by the KEK (§D.2); KEK rotation re-wraps it",
    ("patients", "email_index"): _BLIND_INDEX,
    ("patients", "mrn_index"): _BLIND_INDEX,
    ("patients", "phone_index"): _BLIND_INDEX,
    ("staff", "email_index"): _BLIND_INDEX,
    ("enrolment_codes", "code_index"): "HMAC of the one-time enrolment code, found by equality",
    ("clinic_protocol_overrides", "document"): "the clinic's protocol as a plain JSON document",
}


class UnclassifiedColumnsError(RuntimeError):
    """A binary column is in neither list, or a registered column does not exist."""

    message_is_safe_to_log = True  # names tables and columns only


def _binary_columns(metadata: MetaData) -> Iterable[tuple[str, str]]:
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, LargeBinary):
                yield table.name, column.name


def unclassified_binary_columns(
    metadata: MetaData,
    registry: Iterable[EncryptedTable] = ENCRYPTED_TABLES,
    not_encrypted: Mapping[tuple[str, str], str] = NOT_FIELD_CIPHERTEXTS,
) -> list[str]:
    """Problems as ``table.column: why``: binary columns in neither list, and registered columns
    that are missing or not binary (a rename the registry did not follow)."""
    registered = {(entry.table, column) for entry in registry for column in entry.columns}
    problems = [
        f"{table}.{column}: binary column neither registered as encrypted nor listed as not"
        " encrypted (backend/keyring/encrypted_columns.py)"
        for table, column in sorted(_binary_columns(metadata))
        if (table, column) not in registered and (table, column) not in not_encrypted
    ]
    for entry in registry:
        table = metadata.tables.get(entry.table)
        if table is None:
            problems.append(f"{entry.table}: registered as encrypted but no such table")
            continue
        for name in (entry.owner_column, entry.row_id_column):
            if name not in table.columns:
                problems.append(f"{entry.table}.{name}: registered owner/row id column missing")
        for name in entry.columns:
            if name not in table.columns or not isinstance(table.columns[name].type, LargeBinary):
                problems.append(f"{entry.table}.{name}: registered as encrypted but not binary")
            if (entry.table, name) in not_encrypted:
                problems.append(f"{entry.table}.{name}: in both lists")
    return problems


def check_registry(metadata: MetaData) -> None:
    """Raise ``UnclassifiedColumnsError`` unless every binary column is classified."""
    problems = unclassified_binary_columns(metadata)
    if problems:
        raise UnclassifiedColumnsError("; ".join(problems))
