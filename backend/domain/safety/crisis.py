"""The crisis screen returned with a submission whose answers are a safety signal.

The server decides, from the scored answers, whether the patient sees it (`screen`); the app must
show it before any other content and require an acknowledgement (clinical-spec §5.3, point 2).
Resources are data: the shipped defaults here are per region, and a clinic replaces them for its
locales (`resources`).
"""

from functools import cache
from importlib import resources
from typing import Literal

import msgspec

Urgency = Literal["emergency", "urgent", "priority"]


class CrisisResource(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    phone: str


class RegionResources(msgspec.Struct, frozen=True, kw_only=True):
    headline: str
    resources: tuple[CrisisResource, ...]


class CrisisCatalogue(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    note: str
    default_region: str
    regions: dict[str, RegionResources]
    eu_countries: tuple[str, ...]


class CrisisScreen(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Shown first, acknowledged by a tap, never silently dismissed; never a "low risk" verdict."""

    show_first: bool = True
    requires_acknowledgement: bool = True
    urgency: Urgency
    headline: str
    resources: tuple[CrisisResource, ...]
    clinic_contact: str | None = None
    resources_version: str


@cache
def default_catalogue() -> CrisisCatalogue:
    raw = resources.files("backend.domain.safety").joinpath("crisis_resources.json").read_bytes()
    catalogue = msgspec.json.decode(raw, type=CrisisCatalogue)
    if catalogue.default_region not in catalogue.regions:
        msg = "crisis_resources.json: default_region has no resources"
        raise ValueError(msg)
    return catalogue


def region_for_locale(locale: str | None, catalogue: CrisisCatalogue) -> str:
    """'en-GB' → 'GB'; an EU country → 'EU' unless it has its own entry; else the default."""
    if locale:
        country = locale.replace("_", "-").split("-")[-1].upper()
        if country in catalogue.regions:
            return country
        if country in catalogue.eu_countries:
            return "EU"
    return catalogue.default_region


__all__ = ["CrisisScreen", "default_catalogue", "region_for_locale"]
