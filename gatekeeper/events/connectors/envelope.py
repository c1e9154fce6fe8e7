"""The queue envelope every connector relay writes (`connector`, `account`, `receivedAt`, `payload`): apart
from the vendor modules, which read it, and from the package's table, which lists them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from gatekeeper.events.common import number_to_text

ConnectorName = Literal["connectwise", "autotask", "halopsa", "ninjarmm", "dattormm"]
"""The `connector` values a queue message may carry (one per module in this package, listed in `CONNECTORS`)."""


class ConnectorMessage(BaseModel):
    """The queue envelope every connector writes."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)

    connector: ConnectorName
    account: Annotated[str, BeforeValidator(number_to_text), Field(min_length=1, max_length=200)]
    received_at: AwareDatetime = Field(alias="receivedAt")
    payload: dict[str, Any]
