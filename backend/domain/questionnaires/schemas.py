"""Response bodies for the catalogue. Instrument definitions themselves are served as defined."""

import msgspec


class InstrumentSummary(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    version: str
    title: str
    respondent: str
    recall: str
    trajectory_key: str
    validated: bool
    requires_licensed_text: bool
    licence_status: str
    href: str
    fhir_href: str


class InstrumentList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[InstrumentSummary]
