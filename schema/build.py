"""`build_schema(tenant)`: the whole GraphQL schema of one tenant, built once at start."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import strawberry.tools
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types.field import StrawberryField

from resolvers.tenant import Tenant
from schema.accounts import account_mutations
from schema.collections import mutation_fields, query_fields
from schema.commands import command_mutations
from schema.errors import GatewayErrors, GatewaySchema, masked_errors
from schema.execution import RecordExecutor
from schema.limits import Limits, ParseOnceCache, limit_extensions
from schema.scalars import SCALARS
from schema.types import build_types, field_value

__all__ = ["MUTATION_SOURCES", "MutationSource", "build_schema"]

MutationSource = Callable[[Tenant], Iterable[StrawberryField]]
"""Gives extra root mutations for a tenant (e.g. one per registered command)."""

MUTATION_SOURCES: list[MutationSource] = [command_mutations]
"""The mutations beyond collections, keys and accounts: one per command of the tenant
(`schema.commands`); `build_schema` may be given other sources instead."""


def build_schema(
    tenant: Tenant,
    *,
    limits: Limits | None = None,
    mutation_sources: Iterable[MutationSource] | None = None,
) -> GatewaySchema:
    """The schema of `tenant`; operations beyond `limits` (default: `Limits()`) are
    refused before they run."""
    types = build_types(tenant)
    queries = [f for classes in types.values() for f in query_fields(classes)]
    mutations = [f for classes in types.values() for f in mutation_fields(classes)]
    mutations += account_mutations()
    for source in MUTATION_SOURCES if mutation_sources is None else mutation_sources:
        mutations += source(tenant)
    _check_unique(queries, "Query")
    _check_unique(mutations, "Mutation")
    return GatewaySchema(
        query=strawberry.tools.create_type("Query", queries),
        mutation=strawberry.tools.create_type("Mutation", mutations),
        config=StrawberryConfig(
            auto_camel_case=False,  # field names are the tenant's, exactly as in REST's JSON
            scalar_map=SCALARS,
            default_resolver=field_value,
        ),
        extensions=[
            *limit_extensions(limits or Limits()),
            ParseOnceCache,
            ValidationCache,
            masked_errors,
            GatewayErrors,
        ],
        execution_context_class=RecordExecutor,  # plain fields of records read in place
    )


def _check_unique(fields: list[StrawberryField], root: str) -> None:
    """Root fields are generated from type and property names: two must not coincide
    (`Company` and `Companies`), or one would silently replace the other.

    Clashing type names are refused by strawberry itself.
    """
    names = Counter(f.graphql_name or f.python_name for f in fields)
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ValueError(f"{root} fields generated twice from the tenant: {', '.join(twice)}")
