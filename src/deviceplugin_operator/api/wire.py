"""The base model of every API object: snake_case in Python, camelCase on the wire.

One alias generator produces the wire names; the few Go names that are not plain camelCase
(``allowIDs``, ``denyIDs``) carry an explicit alias on their field. Attribute docstrings become
the field descriptions of the generated CRD schemas (``manifests.crd`` reads them from the
source, ``attribute_docstrings``).

Nothing is built at import: a model's validator and serializer are built on its first use
(``defer_build``), and its attribute docstrings are read only when a CRD is generated. Both
cost start-up time of the operator (about 25 ms for reading the docstrings of some 30 models
from their source, 10 ms for the schemas of kinds and reviews that a process may never see).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
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
        frozen=True,
        extra="ignore",
        defer_build=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-compatible wire form: camelCase keys, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def attribute_docstrings(model: type[pydantic.BaseModel]) -> dict[str, str]:
    """The docstrings under ``model``'s fields by field name, as pydantic's
    ``use_attribute_docstrings`` finds them: a field takes the docstring in the body of the
    nearest class of its MRO that declares it (none when that class has none)."""
    found: dict[str, str | None] = {}
    for cls in reversed(model.__mro__):
        declared = inspect.get_annotations(cls)
        if not declared or not issubclass(cls, Model):
            continue
        docstrings = _class_docstrings(cls)
        found.update({name: docstrings.get(name) for name in declared})
    return {name: doc for name, doc in found.items() if doc is not None}


def _class_docstrings(cls: type) -> dict[str, str]:
    """A string literal right after an annotated assignment in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docstrings: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docstrings[statement.target.id] = inspect.cleandoc(following.value.value)
    return docstrings
