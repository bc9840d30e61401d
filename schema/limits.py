"""Limits on GraphQL operations and who may introspect, all checked before anything runs.

- tokens: the parser stops past `max_tokens` (graphql-core's `max_tokens`);
- depth: the longest path of fields, at most `max_depth`; paths through introspection
  fields (`__schema`, `__type`) are bounded apart, by `INTROSPECTION_MAX_DEPTH`, which
  lets the standard introspection query of GraphQL tools through;
- aliases: counted per operation after fragment expansion (a fragment spread ten times
  counts its aliases ten times), at most `max_aliases`;
- introspection: only for principals holding `introspection`; for everyone else it is a
  validation error, and the "Did you mean ...?" suggestions that would reveal the schema
  are stripped from every error message.

Each refusal is a GraphQL error with `extensions.code` (`too_many_tokens`,
`query_too_deep`, `too_many_aliases`, `introspection_disabled`) and `extensions.limit`.

Strawberry's `QueryDepthLimiter` and `MaxAliasesLimiter` are not used: they walk every
fragment spread again (exponential time for fragments that spread the next one twice,
which a few hundred tokens can write), report no code, and are built anew per request,
which would defeat the validation cache (its key holds the rule classes). The rules here
measure each fragment once and are built once per schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    is_introspection_type,
)
from graphql.language.visitor import SKIP, VisitorAction
from strawberry.extensions import ParserCache, SchemaExtension

from resolvers.tenant import Permission
from schema.context import GraphQLContext

__all__ = [
    "INTROSPECTION_MAX_DEPTH",
    "Limits",
    "OperationLimits",
    "ParseOnceCache",
    "limit_extensions",
    "size_rules",
]

INTROSPECTION_MAX_DEPTH = 15
"""graphql-js's introspection query (as GraphQL Code Generator and GraphiQL send it)
reaches 15 fields deep: `__schema types fields args type` and nine `ofType` levels."""

_CEILING = 10**9
"""Alias counts stop here: spreads of spreads can multiply past any useful number."""
_TOO_MANY_TOKENS = re.compile(r"Document contains more than \d+ tokens")
_NESTED_TOO_DEEPLY = "Document is nested too deeply"
"""graphql-core's parser stops at a fixed nesting depth (its `MAX_NESTING_DEPTH`)."""
_SUGGESTION = re.compile(r" Did you mean [^?]*\?")
_INTROSPECTION_TOO_DEEP = "Maximum introspection depth exceeded"
"""graphql-core's own rule against `fields { type { fields ...` (it has no code)."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 10
    """Fields on the longest path of an operation."""
    max_aliases: int = 30
    """Aliases in one operation, counted after fragment expansion."""
    max_tokens: int = 2000
    """Tokens in one document (names, punctuation, values)."""
    introspection: Permission = Permission.USE_API
    """Who may introspect the schema (and read its SDL)."""


class _Size(NamedTuple):
    depth: int = 0
    """The longest path of fields with no introspection field on it."""
    introspection: int = 0
    """The longest path through an introspection field (0: there is none)."""
    aliases: int = 0


def _measure(selection_set: SelectionSetNode, fragments: Mapping[str, _Size]) -> _Size:
    """The size of a selection set; spreads take their fragment's measured size."""
    depth = introspection = aliases = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = _Size()
            if selection.selection_set is not None:
                inner = _measure(selection.selection_set, fragments)
            aliases += inner.aliases + (selection.alias is not None)
            if selection.name.value.startswith("__") and selection.selection_set is not None:
                introspection = max(introspection, 1 + max(inner.depth, inner.introspection))
                continue
            depth = max(depth, 1 + inner.depth)
            if inner.introspection:
                introspection = max(introspection, 1 + inner.introspection)
            continue
        if isinstance(selection, InlineFragmentNode):
            inner = _measure(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            inner = fragments.get(selection.name.value, _Size())
        else:  # pragma: no cover - graphql-core has no other selection kind
            continue
        depth = max(depth, inner.depth)
        introspection = max(introspection, inner.introspection)
        aliases += inner.aliases
    return _Size(depth, introspection, min(aliases, _CEILING))


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            yield selection.name.value
        elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
            yield from _spreads(selection.selection_set)


def _fragment_sizes(document: DocumentNode) -> dict[str, _Size]:
    """Every fragment's size, each measured once, after the fragments it spreads.

    An iterative post-order walk of the spread graph: a chain of thousands of fragments
    needs no deep recursion. A cycle (refused by graphql-core's `NoFragmentCyclesRule`)
    is cut where it closes.
    """
    definitions = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    sizes: dict[str, _Size] = {}
    entered: set[str] = set()
    for root in definitions:
        stack = [(root, False)]
        while stack:
            name, children_done = stack.pop()
            if name in sizes or name not in definitions:
                continue
            if children_done:
                sizes[name] = _measure(definitions[name].selection_set, sizes)
                continue
            if name in entered:  # a cycle: measure with what is known
                continue
            entered.add(name)
            stack.append((name, True))
            stack.extend((child, False) for child in _spreads(definitions[name].selection_set))
    return sizes


def _operation_name(operation: OperationDefinitionNode) -> str:
    kind = operation.operation.value
    return f"{kind} '{operation.name.value}'" if operation.name else f"The {kind}"


def _size_rule(limits: Limits) -> type[ValidationRule]:
    """Depth and alias limits as one rule: the document is measured once."""

    class OperationSizeRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
            fragments = _fragment_sizes(node)
            for operation in node.definitions:
                if isinstance(operation, OperationDefinitionNode):
                    self._check(operation, _measure(operation.selection_set, fragments))
            return SKIP

        def _check(self, operation: OperationDefinitionNode, size: _Size) -> None:
            name = _operation_name(operation)
            name = name[0].upper() + name[1:]
            if size.depth > limits.max_depth:
                self._refuse(
                    operation,
                    f"{name} is {size.depth} fields deep; at most {limits.max_depth} are allowed.",
                    "query_too_deep",
                    limits.max_depth,
                )
            if size.introspection > INTROSPECTION_MAX_DEPTH:
                self._refuse(
                    operation,
                    f"{name} introspects {size.introspection} fields deep; at most "
                    f"{INTROSPECTION_MAX_DEPTH} are allowed.",
                    "query_too_deep",
                    INTROSPECTION_MAX_DEPTH,
                )
            if size.aliases > limits.max_aliases:
                count = f"{size.aliases}" if size.aliases < _CEILING else f"over {_CEILING}"
                self._refuse(
                    operation,
                    f"{name} uses {count} aliases (counted after fragment expansion); "
                    f"at most {limits.max_aliases} are allowed.",
                    "too_many_aliases",
                    limits.max_aliases,
                )

        def _refuse(
            self, operation: OperationDefinitionNode, message: str, code: str, limit: int
        ) -> None:
            extensions = {"code": code, "limit": limit}
            self.report_error(GraphQLError(message, operation, extensions=extensions))

    return OperationSizeRule


def _no_introspection_rule(permission: Permission) -> type[ValidationRule]:
    """graphql-core's `NoSchemaIntrospectionCustomRule`, reported once per document.

    The graphql-core rule reports every introspection field: the standard introspection
    query would answer with a hundred errors and "Too many validation errors".
    """

    class NoIntrospectionRule(ValidationRule):
        reported = False

        def enter_field(self, node: FieldNode, *_args: object) -> VisitorAction:
            named = get_named_type(self.context.get_type())
            if named is None or not is_introspection_type(named):
                return None
            if not self.reported:
                self.reported = True
                self.report_error(
                    GraphQLError(
                        "Introspection is not allowed for this user: it needs the "
                        f"{permission.value} permission.",
                        node,
                        extensions={"code": "introspection_disabled"},
                    )
                )
            return SKIP

    return NoIntrospectionRule


class OperationLimits(SchemaExtension):
    """Sets the token limit, adds the size (and, per user, introspection) rules, and
    gives the errors of the limits a code.

    The rule classes are made once per schema: the validation cache keys on them, and
    the two sets of rules (may introspect or not) are two keys, so a cached validation
    is never shared between a user who may introspect and one who may not.
    """

    def __init__(
        self,
        limits: Limits,
        rules: tuple[type[ValidationRule], ...],
        refused: tuple[type[ValidationRule], ...],
    ) -> None:
        self.limits = limits
        self.rules = rules
        self.refused = refused

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        may_introspect = self._may_introspect(context.context)
        context.parse_options["max_tokens"] = self.limits.max_tokens
        added = self.rules if may_introspect else self.rules + self.refused
        context.validation_rules = (*context.validation_rules, *added)
        yield
        result = context.result
        errors = getattr(result, "errors", None)
        if errors:
            # A new list of new errors: the validation cache holds the old ones.
            result.errors = [self._coded(e, hide=not may_introspect) for e in errors]  # type: ignore[union-attr]

    def _may_introspect(self, context: Any) -> bool:
        principal = context.principal if isinstance(context, GraphQLContext) else None
        return principal is not None and principal.has(self.limits.introspection)

    def _coded(self, error: GraphQLError, *, hide: bool) -> GraphQLError:
        message = error.message
        extensions = error.extensions
        if isinstance(error, GraphQLSyntaxError) and _TOO_MANY_TOKENS.search(message):
            message = (
                f"The document has more than {self.limits.max_tokens} tokens; at most "
                f"{self.limits.max_tokens} are allowed."
            )
            extensions = {"code": "too_many_tokens", "limit": self.limits.max_tokens}
        elif isinstance(error, GraphQLSyntaxError) and _NESTED_TOO_DEEPLY in message:
            message = (
                "The document nests too deeply to be parsed; at most "
                f"{self.limits.max_depth} fields deep are allowed."
            )
            extensions = {"code": "query_too_deep", "limit": self.limits.max_depth}
        elif message == _INTROSPECTION_TOO_DEEP and not extensions:
            message = "The introspection nests fields, interfaces or types too deeply."
            extensions = {"code": "query_too_deep"}
        if hide:
            message = _SUGGESTION.sub("", message)
        if message == error.message and extensions is error.extensions:
            return error
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=error.original_error,
            extensions=extensions,
        )


class ParseOnceCache(ParserCache):
    """strawberry's `ParserCache`, but a document that fails to parse (a syntax error,
    too many tokens) is left to strawberry's own parse, which answers it as an error
    inside the operation: raised from this hook instead, it would skip every extension's
    end of operation, and the error would get no code.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except GraphQLError:
            context.graphql_document = None
        yield


def size_rules(limits: Limits) -> tuple[type[ValidationRule], ...]:
    """The validation rules of `limits` that hold for every user (depth and aliases)."""
    return (_size_rule(limits),)


def limit_extensions(limits: Limits) -> list[Any]:
    """The schema extensions (factories) that apply `limits`."""
    rules = (_size_rule(limits),)
    refused = (_no_introspection_rule(limits.introspection),)

    def factory() -> OperationLimits:
        return OperationLimits(limits, rules, refused)

    return [factory]
