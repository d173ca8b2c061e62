"""All tables. Importing this package registers every model on ``SQLModel.metadata``.

Models are persistence only: they never leave the service layer (DESIGN §3). This package must not
use ``from __future__ import annotations`` (it breaks SQLModel relationships, sqlmodel#196).
"""

from backend.db.models.data_key import DataKey as DataKey
from backend.db.models.service_instance import ServiceInstance

__all__ = ["ServiceInstance"]
