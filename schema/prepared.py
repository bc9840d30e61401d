"""Prepared reads: a GraphQL query that only reads records, answered without executing it.

Most operations a front-end proxy sends over and over are *plain reads*: root fields that
are generated list, get and get-by-property fields, each selecting plain scalar and enum
fields of its records (and `total`, `next`, `__typename`) and references to records
selected the same way. For those, executing the document adds nothing to what the
resolvers give: the answer is REST's bodies, each record cut down to the selection. So
a plain read is answered here, in three steps:

1. the document is parsed, validated (graphql-core's rules and the gateway's size
   limits) and planned once; with its variables it is bound once to the requests it
   makes (the same `ListQuery` values the field resolvers build) — both remembered in
   bounded LRU tables (a plan holds no user, a `ListQuery` is not yet scoped);
2. each request is made through `resolvers.reads`, exactly as the field resolvers make
   it, with the caller's `Principal`: permissions, time rules and the Valkey cache entry
   are the same as REST's and the full GraphQL path's;
3. references are loaded as the fields' DataLoaders load them (per level, one list read
   `id in [...]` per type of the ids not loaded yet, through the same cache entries), and
   each body is cut to the selection; the JSON of that cut is remembered by the ETags
   of the bodies it was cut from: a pure function of the bytes Valkey returned, never
   a source of freshness (which the cache decides on every request). The cuts kept
   are bounded by their bytes (8 MiB: some 18,000 single records), not their number:
   a cut costs a GraphQL get about a tenth of its work, and a page of 50 records
   weighs as much as 60 single ones.

A GET's answer has an ETag made from the ETags of the bodies it was cut from
(`Answer.etag`), without hashing the answer itself.

Anything else returns `None` and takes the full path (`schema.execute`), which also
answers every error: a document that does not validate, a variable of the wrong type,
a request the resolvers refuse, a field hidden from the caller, a null where the schema
says non-null, a type with `read_access_logging` (whose single reads write audit rows).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

import msgspec
from graphql import (
    BooleanValueNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    IntValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_operation_ast,
    is_non_null_type,
    is_object_type,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import coerce_variable_values, get_argument_values
from litestar._parsers import parse_qsl, parse_query_string
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from resolvers import reads
from resolvers.cache import Cached
from resolvers.errors import GatewayError, NotFound
from resolvers.memo import Lru
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.tenant import Kind, Tenant
from schema.collections import READ_ROOT, ReadRoot, list_query
from schema.errors import GatewaySchema
from schema.execution import plain_field, plain_list_field
from schema.types import RECORD_RESOLVER

__all__ = ["Answer", "Bound", "PreparedReads"]

_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
_TYPENAME = "__typename"
_MAX_QUERY = 16 * 1024
"""Longer documents are answered but not remembered (the tables' keys hold them)."""


_ABSENT: Any = object()


class _NotPlain(Exception):
    """The operation (or this request of it) takes the full path."""


@dataclass(frozen=True, slots=True)
class _Leaf:
    """One selected field of a record or a page: a key to read, or a constant."""

    name: str
    key: str
    coerce: Callable[[Any], Any] | None
    """None: `key` is the constant value (`__typename`)."""
    non_null: bool
    kept: frozenset[type] = frozenset()
    """Types whose values `coerce` returns as they are (`schema.execution.Plain`)."""


@dataclass(frozen=True, slots=True, eq=False)
class _Ref:
    """A selected reference: the records it names, loaded as the field's DataLoader does
    (one list read per type and level, `id in [...]`), each cut to `record`."""

    name: str
    key: str
    target: str
    multiple: bool
    non_null: bool
    item_non_null: bool
    record: tuple[_Leaf | _Ref, ...]


Selection = tuple[_Leaf | _Ref, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _Root:
    """One root field of a plain read: what it asks and how its answer is cut."""

    serial: int
    """Tells the cuts of two roots apart."""
    token: str
    """Names the operation the root belongs to (`Answer.etag`), the same in every process."""
    name: str
    read: ReadRoot
    field: GraphQLField
    node: FieldNode
    record: Selection
    """The selection on each record."""
    page: tuple[_Leaf, ...] = ()
    """A list's selection on its page; the leaf keyed `items` holds the records."""
    references: bool = False
    """Whether `record` selects references (then they are loaded before the cut)."""
    member: bytes = dataclasses.field(init=False)
    """`"name":`, which opens the field's member of `data`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "member", b'"%s":' % self.name.encode())


class _Plan(NamedTuple):
    roots: tuple[_Root, ...]
    operation: OperationDefinitionNode
    binders: tuple[_Binder, ...] | None = None
    """Per root, its request from the variables without graphql-core's coercion, when
    every argument is a literal or a plain `BigInt!`/`String!` variable (gets)."""


_INT64 = 2**63
_SCALAR_OF = {"one": ("id", "BigInt"), "by": ("value", "String")}


class _Slow(Exception):
    """A variable `_Binder` does not decide on: graphql-core's coercion does."""


class _Binder(NamedTuple):
    """A get's request from the variables: its key is a literal or one variable."""

    root: _Root
    constant: Any
    variable: str | None
    scalar: str
    fresh: bool

    def bind(self, variables: dict[str, Any]) -> _Request:
        if self.variable is None:
            return _Request(self.root, self.constant, self.fresh)
        value = variables.get(self.variable)
        if self.scalar == "BigInt":
            if type(value) is not int or not -_INT64 <= value < _INT64:
                raise _Slow
        elif type(value) is not str:
            raise _Slow
        return _Request(self.root, value, self.fresh)


class _Request(NamedTuple):
    root: _Root
    argument: Any
    """A list's `ListQuery`, a get's id, a get-by-property's value."""
    fresh: bool
    """`noCache: true` on the field."""


_NOT_PLAIN: Any = ()
"""What the tables remember for an operation or request that is not a plain read."""
_MAX_BODY_KEY = 4096
"""Longer request bodies (and query strings) are bound but not remembered by their bytes."""
_GET_PARAMETERS = frozenset({"query", "variables", "operationName"})
_SHORT_PART = 64
"""Parts of a query string shorter than this are decoded each time (a `variables=...`)."""


class Bound(NamedTuple):
    """A plain read's requests, bound to its variables (see `PreparedReads.bind`)."""

    requests: tuple[_Request, ...]


class Answer(NamedTuple):
    """A plain read's response body and the reads it was cut from."""

    body: bytes
    reads: list[Cached]
    """Every read made, references' included; a get that found nothing made none."""
    token: str
    """The operation's token, and which roots found nothing when some did not."""

    def etag(self) -> str:
        """The answer's ETag (for a GET that names the operation and its variables).

        Given the operation, the body is a function of the bodies it was cut from and of
        which roots found nothing, so their ETags (each scoped to the caller) and
        `token` name it as well as its own bytes would, at the cost of a concatenation
        for one read instead of a hash of the answer on every request.
        """
        if len(self.reads) == 1:
            return f'"{self.token}{self.reads[0].etag.strip(chr(34))}"'
        material = "\0".join([self.token, *(cached.etag for cached in self.reads)])
        return f'"{hashlib.sha256(material.encode()).hexdigest()[:32]}"'


class _Body(msgspec.Struct, frozen=True):
    query: str
    variables: dict[str, Any] | None = None
    operationName: str | None = None  # noqa: N815 - GraphQL over HTTP's name


_BODY = msgspec.json.Decoder(_Body)


def _operation(body: bytes) -> tuple[str, str | None, dict[str, Any] | None]:
    """The operation of a JSON request body; `_NotPlain` unless one plain object."""
    try:
        decoded = _BODY.decode(body)
    except msgspec.ValidationError:
        raise _NotPlain from None
    if not decoded.query:
        raise _NotPlain
    return decoded.query, decoded.operationName, decoded.variables


def _get_operation(
    pairs: Sequence[tuple[str, str]],
) -> tuple[str, str | None, dict[str, Any] | None]:
    """The operation of a GET's query parameters; `_NotPlain` unless `query` (and
    `variables`, `operationName`) once each and nothing else, with no value the API
    routes refuse (a key: `jgw_...`)."""
    given = dict(pairs)
    if len(given) != len(pairs) or not given.keys() <= _GET_PARAMETERS:
        raise _NotPlain
    if any(value.startswith("jgw_") for value in given.values()):
        raise _NotPlain
    query = given.get("query")
    if not query:
        raise _NotPlain
    variables = None
    if "variables" in given:
        try:
            variables = _DECODER.decode(given["variables"])
        except msgspec.DecodeError:
            raise _NotPlain from None
        if not isinstance(variables, dict | None):
            raise _NotPlain
    return query, given.get("operationName"), variables


class PreparedReads:
    """Plain reads of one schema (see the module docstring)."""

    def __init__(
        self,
        schema: GatewaySchema,
        tenant: Tenant,
        rules: Sequence[type[ValidationRule]],
        *,
        max_tokens: int,
        cut_memory: int = 8 * 1024 * 1024,
    ) -> None:
        """`cut_memory` bounds the bytes of the cuts remembered (`_cut_weight`)."""
        self._schema = schema
        self._core: GraphQLSchema = schema._schema  # graphql-core's schema
        self._tenant = tenant
        self._rules = (*specified_rules, *rules)
        self._max_tokens = max_tokens
        self._plans: Lru[tuple[str, str | None], _Plan] = Lru(256)
        self._requests: Lru[tuple[str, str | None, bytes], tuple[_Request, ...]] = Lru(1024)
        self._bodies: Lru[bytes, tuple[_Request, ...]] = Lru(1024)
        self._queries: Lru[bytes, tuple[_Request, ...]] = Lru(1024)  # GETs' query strings
        self._parts: Lru[bytes, tuple[tuple[str, str], ...]] = Lru(256)  # and their long parts
        self._heads: Lru[bytes, tuple[_Binder, ...]] = Lru(256)  # and what precedes `variables`
        self._cuts: Lru[tuple[int, str, tuple[str, ...]], bytes] = Lru(
            cut_memory, weigh=_cut_weight
        )
        self._counter = itertools.count()

    async def answer(
        self,
        services: Services,
        principal: Principal,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        *,
        fresh: bool,
    ) -> Answer | None:
        """The response body and the reads behind it, or None: take the full path."""
        bound = self.bind(query, operation_name, variables)
        if bound is None:
            return None
        return await self.answer_bound(services, principal, bound, fresh=fresh)

    def bind(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> Bound | None:
        """The operation's requests with these variables, or None if it is not plain."""
        try:
            requests, _ = self._bind(query, operation_name, variables)
        except _NotPlain:
            return None
        return Bound(requests)

    def bind_json(self, body: bytes) -> Bound | None:
        """`bind` of a JSON request body `{query, variables?, operationName?}` (remembered
        by its bytes when short, unless binders bound it: a client repeats the same
        bodies, but a get cycling through thousands of ids would only churn the table)."""
        requests = self._bodies.get(body)
        if requests is None:
            try:
                requests, remember = self._bind(*_operation(body))
            except (_NotPlain, msgspec.DecodeError):
                requests, remember = _NOT_PLAIN, True
            if remember and len(body) <= _MAX_BODY_KEY:
                self._bodies.put(body, requests)
        return None if requests is _NOT_PLAIN else Bound(requests)

    def bind_query(self, query_string: bytes) -> Bound | None:
        """`bind` of a GET's query string `query=...&variables=...&operationName=...`
        (remembered by its bytes as `bind_json` remembers bodies)."""
        if (bound := self._bind_variables(query_string)) is not None:
            return Bound(bound)  # a get's usual form: its query string is never remembered
        requests = self._queries.get(query_string)
        if requests is None:
            try:
                requests, remember = self._bind(*_get_operation(self._parameters(query_string)))
            except _NotPlain:
                requests, remember = _NOT_PLAIN, True
            if remember and len(query_string) <= _MAX_BODY_KEY:
                self._queries.put(query_string, requests)
        return None if requests is _NOT_PLAIN else Bound(requests)

    def _bind_variables(self, query_string: bytes) -> tuple[_Request, ...] | None:
        """`bind_query`'s result for a get's usual form, `<document>&variables=<JSON>`
        (variables last), whose document has binders: the part before the variables is
        read once (`_heads`), the variables decoded as `_parameters` decodes them. None
        where `bind_query` must decide, which then reads the query string in full."""
        head, found, value = query_string.partition(b"&variables=")
        if not found or value.find(b"&") >= 0:  # `find`, not `in`: see `_unquoted`
            return None
        binders = self._heads.get(head)
        if binders is None:
            try:
                query, operation_name, variables = _get_operation(self._parameters(head))
                binders = (
                    None if variables is not None else self._plan(query, operation_name).binders
                )
            except _NotPlain:
                binders = None
            if binders is None:
                binders = _NOT_PLAIN  # no binders, or `variables` twice: `bind_query` decides
            if len(head) <= _MAX_BODY_KEY:
                self._heads.put(head, binders)
        if binders is _NOT_PLAIN or not value.isascii():
            return None
        # What `parse_qsl` makes of an ASCII value, as bytes: the same text when they are
        # UTF-8; if they are not, the JSON decoder refuses them (and `bind_query` decides).
        text = _unquoted(value)
        if text.startswith(b"jgw_"):
            return None
        try:
            given = _DECODER.decode(text)
            if type(given) is not dict:
                return None
            if len(binders) == 1:
                return (binders[0].bind(given),)
            return tuple(binder.bind(given) for binder in binders)
        except (msgspec.DecodeError, UnicodeDecodeError, _Slow):
            return None

    def _parameters(self, query_string: bytes) -> list[tuple[str, str]]:
        """The query string's parameters as Litestar reads them (`parse_query_string`,
        which splits at `&` first), each long `&`-separated part decoded once: the
        document repeats from request to request where the variables change. Short parts
        are decoded each time, without `parse_query_string`'s table, which they churn."""
        pairs: list[tuple[str, str]] = []
        for part in query_string.split(b"&"):
            if len(part) < _SHORT_PART:
                pairs += parse_qsl(part, separator="&")
                continue
            decoded = self._parts.get(part)
            if decoded is None:
                decoded = parse_query_string(part)
                if len(part) <= _MAX_BODY_KEY:
                    self._parts.put(part, decoded)
            pairs += decoded
        return pairs

    async def answer_bound(
        self, services: Services, principal: Principal, bound: Bound, *, fresh: bool
    ) -> Answer | None:
        """`answer` for requests already bound."""
        requests = bound.requests
        try:
            if len(requests) == 1:  # the usual case, without the general one's lists
                request = requests[0]
                root = request.root
                cached = await self._read(services, principal, request, fresh=fresh)
                if cached is None:
                    return Answer(b'{"data":{%snull}}' % root.member, [], root.token + "-0")
                reads_made = [cached]
                if root.references:
                    value = await self._cut(services, principal, root, cached, reads_made, fresh)
                else:
                    value = self._plain_cut(root, cached)
                return Answer(b'{"data":{%s%s}}' % (root.member, value), reads_made, root.token)
            found = await asyncio.gather(
                *(self._read(services, principal, r, fresh=fresh) for r in requests)
            )
            reads_made = [cached for cached in found if cached is not None]
            parts = [b'{"data":{']
            for i, (request, cached) in enumerate(zip(requests, found, strict=True)):
                root = request.root
                parts.append(root.member if not i else b"," + root.member)
                if cached is None or not root.references:
                    parts.append(self._plain_cut(root, cached))
                else:
                    parts.append(
                        await self._cut(services, principal, root, cached, reads_made, fresh)
                    )
        except (_NotPlain, GatewayError):
            return None
        parts.append(b"}}")
        token = requests[0].root.token
        if len(reads_made) < len(found):
            token += "-" + "".join("0" if cached is None else "1" for cached in found)
        return Answer(b"".join(parts), reads_made, token)

    # --- planning ------------------------------------------------------------------

    def _bind(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> tuple[tuple[_Request, ...], bool]:
        """The requests of the operation with these variables, and whether they are worth
        remembering by the request's bytes: they are remembered here unless simple
        binders make them (a get asked for thousands of ids would churn the tables)."""
        if variables is not None:
            plan = self._plan(query, operation_name)
            if (binders := plan.binders) is not None:
                try:
                    if len(binders) == 1:
                        return (binders[0].bind(variables),), False
                    return tuple(binder.bind(variables) for binder in binders), False
                except _Slow:
                    pass
        given = _ENCODER.encode(variables) if variables else b""
        key = (query, operation_name, given)
        requests = self._requests.get(key)
        if requests is None:
            try:
                requests = tuple(self._arguments(query, operation_name, variables or {}))
            except (_NotPlain, GatewayError, GraphQLError):
                requests = _NOT_PLAIN
            if len(query) <= _MAX_QUERY:
                self._requests.put(key, requests)
        if requests is _NOT_PLAIN:
            raise _NotPlain
        return requests, True

    def _arguments(
        self, query: str, operation_name: str | None, variables: dict[str, Any]
    ) -> list[_Request]:
        roots, operation, _ = self._plan(query, operation_name)
        errors: list[GraphQLError] = []
        values = coerce_variable_values(
            self._core, operation.variable_definitions or (), variables, errors.append
        )
        if errors:
            raise _NotPlain
        converter = self._schema.schema_converter
        requests = []
        for root in roots:
            given = get_argument_values(root.field, root.node, values)
            definition: StrawberryField = root.field.extensions[_BACKREF]
            arguments = convert_arguments(
                given, definition.arguments, converter.scalar_registry, self._schema.config
            )
            fresh = bool(arguments.pop("noCache", False))
            match root.read.kind:
                case "list":
                    argument: Any = list_query(**arguments)
                case "one":
                    argument = int(arguments["id"])
                case "by":
                    argument = str(arguments["value"])
            requests.append(_Request(root, argument, fresh))
        return requests

    def _plan(self, query: str, operation_name: str | None) -> _Plan:
        key = (query, operation_name)
        plan = self._plans.get(key)
        if plan is None:
            try:
                plan = self._roots(query, operation_name)
            except _NotPlain:
                plan = _NOT_PLAIN
            if len(query) <= _MAX_QUERY:
                self._plans.put(key, plan)
        if plan is _NOT_PLAIN:
            raise _NotPlain
        return plan

    def _roots(self, query: str, operation_name: str | None) -> _Plan:
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError:
            raise _NotPlain from None
        operation = get_operation_ast(document, operation_name)
        if operation is None or operation.operation is not OperationType.QUERY:
            raise _NotPlain
        if validate(self._core, document, self._rules):
            raise _NotPlain
        query_type = self._core.query_type
        assert query_type is not None  # noqa: S101 - a schema has a query type
        named = "\0".join((self._tenant.digest, query, operation_name or ""))
        token = hashlib.sha256(named.encode()).hexdigest()[:8]
        roots = []
        for node in _fields(operation.selection_set):
            field = query_type.fields.get(node.name.value)
            definition = field and field.extensions.get(_BACKREF)
            read = isinstance(definition, StrawberryField) and definition.metadata.get(READ_ROOT)
            if field is None or not isinstance(read, ReadRoot) or node.selection_set is None:
                raise _NotPlain
            if read.kind != "list" and self._tenant.types[read.type_name].read_access_logging:
                raise _NotPlain  # each such read writes an audit row: never read twice
            record_type = _object(field)
            if read.kind == "list":
                items = _object(record_type.fields["items"])
                page, records = _page(record_type, node.selection_set)
                record = self._record(items, records)
            else:
                page, record = (), self._record(record_type, node.selection_set)
            serial = next(self._counter)
            references = any(isinstance(leaf, _Ref) for leaf in record)
            roots.append(
                _Root(
                    serial, token, _response_name(node), read, field, node, record, page, references
                )
            )
        if len({root.name for root in roots}) != len(roots):
            raise _NotPlain  # one response name twice: graphql-core merges them
        return _Plan(tuple(roots), operation, _binders(roots, operation))

    def _record(self, record_type: GraphQLObjectType, selection_set: SelectionSetNode) -> Selection:
        """A record's selection: plain leaves, and references to records cut the same way."""
        return tuple(
            self._reference(record_type, node) or _leaf(record_type, node)
            for node in _fields(selection_set)
        )

    def _reference(self, record_type: GraphQLObjectType, node: FieldNode) -> _Ref | None:
        """The reference `node` selects, if it is one of the tenant's, read as generated."""
        field = record_type.fields.get(node.name.value)
        type_def = self._tenant.types.get(record_type.name)
        definition = field.extensions.get(_BACKREF) if field is not None else None
        if type_def is None or not isinstance(definition, StrawberryField):
            return None
        prop = type_def.properties.get(definition.python_name)
        if prop is None or prop.kind is not Kind.REFERENCE or prop.to is None:
            return None
        resolver = definition.base_resolver
        wrapped = resolver.wrapped_func if resolver is not None else None
        if getattr(wrapped, RECORD_RESOLVER, None) is None or node.arguments:
            raise _NotPlain  # not the generated resolver (or arguments): let it run
        if node.selection_set is None or field is None:
            raise _NotPlain
        listed = field.type.of_type if is_non_null_type(field.type) else field.type
        item = getattr(listed, "of_type", None) if prop.multiple else None
        return _Ref(
            name=_response_name(node),
            key=prop.name,
            target=prop.to,
            multiple=prop.multiple,
            non_null=is_non_null_type(field.type),
            item_non_null=item is not None and is_non_null_type(item),
            record=self._record(_object(field), node.selection_set),
        )

    # --- reading and cutting -------------------------------------------------------

    async def _read(
        self, services: Services, principal: Principal, request: _Request, *, fresh: bool
    ) -> Cached | None:
        read = request.root.read
        fresh = fresh or request.fresh
        if read.kind == "list":
            return await reads.list_body(
                services, principal, read.type_name, request.argument, fresh=fresh
            )
        try:
            if read.kind == "one":
                return await reads.record_body(
                    services,
                    principal,
                    read.type_name,
                    request.argument,
                    fresh=fresh,
                    transport="graphql",
                )
            return await reads.record_by_body(
                services,
                principal,
                read.type_name,
                str(read.property),
                request.argument,
                fresh=fresh,
                transport="graphql",
            )
        except NotFound:
            return None

    def _plain_cut(self, root: _Root, cached: Cached | None) -> bytes:
        """The value of a root field without references, remembered by its body's ETag."""
        if cached is None:
            return b"null"
        key = (root.serial, cached.etag, ())
        found = self._cuts.get(key)
        return found if found is not None else self._cuts.put(key, _cut(root, cached.body))

    async def _cut(  # noqa: PLR0917 - a private step of `answer`
        self,
        services: Services,
        principal: Principal,
        root: _Root,
        cached: Cached,
        reads_made: list[Cached],
        fresh: bool,
    ) -> bytes:
        """The value of a root field with references (loaded first), remembered by the
        ETags of every body it is cut from."""
        document = _DECODER.decode(cached.body)
        records = document["data"] if root.read.kind == "list" else [document["data"]]
        loaded = _Loaded(principal)
        await loaded.load(services, root.record, records, fresh=fresh)
        reads_made += loaded.reads
        key = (root.serial, cached.etag, tuple(c.etag for c in loaded.reads))
        found = self._cuts.get(key)
        if found is None:
            found = self._cuts.put(key, _cut(root, cached.body, document, loaded))
        return found


class _Loaded:
    """The records a selection's references name, by type and id (None: not readable)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.records: dict[str, dict[int, Any]] = {}
        self.reads: list[Cached] = []

    def readable(self, target: str) -> bool:
        return not self.principal.on(target).read.none

    async def load(
        self, services: Services, selection: Selection, records: list[Any], *, fresh: bool
    ) -> None:
        """Level by level, as the DataLoaders would: per type, the ids not loaded yet."""
        frontier = [(selection, records)]
        while frontier:
            wanted: dict[str, set[int]] = {}
            for leaves, rows in frontier:
                for ref in leaves:
                    if isinstance(ref, _Ref) and self.readable(ref.target):
                        have = self.records.setdefault(ref.target, {})
                        missing = wanted.setdefault(ref.target, set())
                        missing.update(i for row in rows for i in _ids(ref, row) if i not in have)
            batches = [
                (target, ids[start : start + reads.MAX_IDS])
                for target, every in wanted.items()
                if (ids := sorted(every))
                for start in range(0, len(ids), reads.MAX_IDS)
            ]
            found = await asyncio.gather(
                *(self._fetch(services, target, ids, fresh) for target, ids in batches)
            )
            for (target, ids), cached in zip(batches, found, strict=True):
                self.reads.append(cached)
                by_id = {r["id"]: r for r in _DECODER.decode(cached.body)["data"]}
                self.records[target].update((i, by_id.get(i)) for i in ids)
            frontier = [
                (ref.record, [r for row in rows for i in _ids(ref, row) if (r := got.get(i))])
                for leaves, rows in frontier
                for ref in leaves
                if isinstance(ref, _Ref)
                and any(isinstance(leaf, _Ref) for leaf in ref.record)
                and (got := self.records.get(ref.target)) is not None
            ]

    async def _fetch(self, services: Services, target: str, ids: list[int], fresh: bool) -> Cached:
        return await reads.by_ids_body(services, self.principal, target, ids, fresh=fresh)


def _ids(ref: _Ref, row: Any) -> list[int]:
    """The ids a reference of `row` names (the compact shape's bare value or null too)."""
    if type(row) is not dict:
        raise _NotPlain
    value = row.get(ref.key, _ABSENT)
    if value is _ABSENT:
        raise _NotPlain  # hidden from the caller: graphql-core answers the error
    ids = value if isinstance(value, list) else [] if value is None else [value]
    if not all(type(i) is int for i in ids):
        raise _NotPlain
    return ids


def _cut_weight(cut: bytes) -> int:
    """About what a remembered cut holds: its bytes, its key (an ETag or more) and the
    table's own slot."""
    return len(cut) + 256


def _cut(root: _Root, body: bytes, document: Any = None, loaded: _Loaded | None = None) -> bytes:
    document = _DECODER.decode(body) if document is None else document
    if root.read.kind != "list":
        return _ENCODER.encode(_record_value(root.record, document["data"], loaded))
    meta = document["meta"]
    page: dict[str, Any] = {}
    for leaf in root.page:
        if leaf.key == "items":
            page[leaf.name] = [_record_value(root.record, r, loaded) for r in document["data"]]
        elif leaf.coerce is None:
            page[leaf.name] = leaf.key
        else:
            page[leaf.name] = _value(leaf, meta.get(leaf.key))
    return _ENCODER.encode(page)


def _record_value(leaves: Selection, record: Any, loaded: _Loaded | None) -> dict[str, Any]:
    if type(record) is not dict:
        raise _NotPlain
    cut: dict[str, Any] = {}
    get = record.get
    for leaf in leaves:
        if isinstance(leaf, _Ref):
            assert loaded is not None  # noqa: S101 - roots with references load them first
            cut[leaf.name] = _reference_value(leaf, record, loaded)
        elif leaf.coerce is None:
            cut[leaf.name] = leaf.key
        else:
            value = get(leaf.key, _ABSENT)
            cut[leaf.name] = value if type(value) in leaf.kept else _value(leaf, value)
    return cut


def _reference_value(ref: _Ref, record: dict[str, Any], loaded: _Loaded) -> Any:
    """What the reference resolver of `schema.types` completes to for this record."""
    ids = _ids(ref, record)
    found = loaded.records.get(ref.target, {}) if loaded.readable(ref.target) else {}
    targets = [found.get(i) for i in ids]
    if ref.multiple:
        if None in targets and ref.item_non_null:
            raise _NotPlain
        return [None if t is None else _record_value(ref.record, t, loaded) for t in targets]
    target = targets[0] if targets else None
    if target is None:
        if ref.non_null:
            raise _NotPlain
        return None
    return _record_value(ref.record, target, loaded)


def _value(leaf: _Leaf, value: Any) -> Any:
    """A field's value as graphql-core would complete it (or the full path decides)."""
    if value is _ABSENT:
        raise _NotPlain  # hidden from the caller: graphql-core answers the error
    if value is None:
        if leaf.non_null:
            raise _NotPlain
        return None
    assert leaf.coerce is not None  # noqa: S101 - constants are handled by the callers
    try:
        coerced = leaf.coerce(value)
    except Exception:  # noqa: BLE001 - the full path raises it again, located
        raise _NotPlain from None
    if coerced is None:
        raise _NotPlain
    return coerced


# --- binding --------------------------------------------------------------------------


def _unquoted(value: bytes) -> bytes:
    """`unquote_to_bytes` of a query string's value (`+` a space), in C for what a URL
    encoder makes of a JSON object of numbers and plain strings: its escapes of `"{}:,[]`
    replaced one by one, anything else (a `%` left) decoded in full. The same bytes
    either way: a replacement makes no `%`, so when none is left, each one began such an
    escape, which `unquote_to_bytes` decodes alike.

    It asks `find`, not `in`: CPython 3.11's `bytes.__contains__` first tries its operand
    as an integer, and raising and clearing that TypeError costs about 1,900 instructions
    a test (callgrind), more than the rest of this function."""
    text = value.replace(b"+", b" ")
    if text.find(b"%") < 0:
        return text
    replaced = (
        text.replace(b"%22", b'"')
        .replace(b"%7B", b"{")
        .replace(b"%7D", b"}")
        .replace(b"%3A", b":")
        .replace(b"%2C", b",")
        .replace(b"%5B", b"[")
        .replace(b"%5D", b"]")
    )
    return replaced if replaced.find(b"%") < 0 else unquote_to_bytes(text)


def _binders(
    roots: Sequence[_Root], operation: OperationDefinitionNode
) -> tuple[_Binder, ...] | None:
    """Binders for every root, if each is a get whose key is a literal or a variable of
    exactly its type (`BigInt!`, `String!`, no default) and every variable is such a key;
    None otherwise (then graphql-core coerces the variables)."""
    definitions = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    used: set[str] = set()
    binders = []
    constant: Any
    for root in roots:
        if root.read.kind not in _SCALAR_OF:
            return None
        name, scalar = _SCALAR_OF[root.read.kind]
        given = {a.name.value: a.value for a in root.node.arguments or ()}
        fresh = given.pop("noCache", None)
        key = given.pop(name, None)
        if given or key is None or not (fresh is None or isinstance(fresh, BooleanValueNode)):
            return None
        if isinstance(key, VariableNode):
            variable = key.name.value
            definition = definitions.get(variable)
            if (
                definition is None
                or definition.default_value is not None
                or not isinstance(definition.type, NonNullTypeNode)
                or not isinstance(definition.type.type, NamedTypeNode)
                or definition.type.type.name.value != scalar
            ):
                return None
            used.add(variable)
            constant = None
        elif isinstance(key, IntValueNode) and scalar == "BigInt":
            variable, constant = None, int(key.value)
        elif isinstance(key, StringValueNode) and scalar == "String":
            variable, constant = None, key.value
        else:
            return None
        if constant is not None and scalar == "BigInt" and not -_INT64 <= constant < _INT64:
            return None
        on = fresh is not None and fresh.value
        binders.append(_Binder(root, constant, variable, scalar, on))
    return tuple(binders) if used == set(definitions) else None


# --- selections ----------------------------------------------------------------------


def _fields(selection_set: SelectionSetNode) -> list[FieldNode]:
    """The fields of a selection set with no fragment and no directive, else not plain."""
    fields = []
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            raise _NotPlain
        fields.append(selection)
    return fields


def _response_name(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _object(field: GraphQLField) -> GraphQLObjectType:
    named = get_named_type(field.type)
    if not is_object_type(named):
        raise _NotPlain
    return named


def _page(
    page_type: GraphQLObjectType, selection_set: SelectionSetNode
) -> tuple[tuple[_Leaf, ...], SelectionSetNode]:
    """A list's page selection; `items` must be selected exactly once."""
    leaves = []
    records: SelectionSetNode | None = None
    for node in _fields(selection_set):
        name = node.name.value
        if name == "items" and node.selection_set is not None and records is None:
            records = node.selection_set
            leaves.append(_Leaf(_response_name(node), "items", _no_coercion, non_null=True))
        elif name in {"total", "next", _TYPENAME}:
            leaves.append(_leaf(page_type, node))
        else:
            raise _NotPlain
    if records is None:
        raise _NotPlain
    return tuple(leaves), records


def _leaf(parent: GraphQLObjectType, node: FieldNode) -> _Leaf:
    name = _response_name(node)
    if node.name.value == _TYPENAME:
        return _Leaf(name, parent.name, None, non_null=True)
    field = parent.fields.get(node.name.value)
    if field is None or node.arguments or node.selection_set is not None:
        raise _NotPlain
    # A scalar or enum (or a list of them) that strawberry reads from the record.
    plain = plain_field(field) or plain_list_field(field)
    if plain is None:
        raise _NotPlain
    return _Leaf(name, plain.key, plain.coerce, plain.non_null, plain.kept)


def _no_coercion(value: Any) -> Any:
    return value
