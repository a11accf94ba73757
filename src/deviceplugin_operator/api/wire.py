"""The base model of every API object: snake_case in Python, camelCase on the wire.

One alias generator produces the wire names; the few Go names that are not plain camelCase
(``allowIDs``, ``denyIDs``) carry an explicit alias on their field. Attribute docstrings become
the field descriptions of the generated CRD schemas.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
from pydantic import alias_generators

Int32 = Annotated[int, pydantic.Field(json_schema_extra={"format": "int32"})]
"""An integer the Go API declares as int32."""

Int64 = Annotated[int, pydantic.Field(json_schema_extra={"format": "int64"})]
"""An integer the Go API declares as int64."""


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        frozen=True,
        extra="ignore",
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-compatible wire form: camelCase keys, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
