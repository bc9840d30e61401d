"""`RecordExecutor`: graphql-core's executor, minus its per-field machinery where a field
only reads a record.

A record is the decoded REST body (`schema.context.Record`, JSON values), and most
fields of a generated type are *plain*: strawberry's basic resolver over `field_value`,
a scalar or enum type, no arguments. graphql-core spends about 3 µs on each (a resolve
info, a path, the resolver chain, `complete_value`'s type tests), which a 50-record list
of 9 fields pays 450 times. Here a plain field is read from the record and coerced by
its type's own `coerce_output_value`, and a list of records is completed without the
five calls per item that lead to `execute_fields`. A reference (or a compact
multi-valued field) calls the core of its generated resolver (`types.RECORD_RESOLVER`)
without strawberry's per-call wrapper, and is completed by graphql-core.

Whatever is not that simple takes graphql-core's path, field by field: a key the
record lacks (a hidden field, `field_value`'s `Forbidden`), a null for a non-null field,
a value the type refuses, a source that is not a dict, root fields, `__typename`,
`@defer`/`@stream`, and every field of an operation that runs resolver middleware.
Errors, their paths and their order are therefore graphql-core's own.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from graphql import (
    GraphQLField,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    Undefined,
    is_enum_type,
    is_leaf_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import collect_iterator_awaitables, to_nodes
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from graphql.type.scalars import serialize_boolean, serialize_id, serialize_string
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from schema.scalars import passed
from schema.types import RECORD_RESOLVER, RecordResolver, field_value

__all__ = ["Plain", "RecordExecutor", "plain_field", "plain_list_field"]

_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF


class Plain(NamedTuple):
    """How to complete a plain field: the record's key, the type's coercion, non-null."""

    key: str
    coerce: Callable[[Any], Any]
    non_null: bool
    kept: frozenset[type] = frozenset()
    """Types whose values `coerce` returns as they are (then it need not be called)."""


_JSON_TYPES = frozenset({str, int, float, bool, list, dict})
_KEPT: dict[Callable[[Any], Any], frozenset[type]] = {
    serialize_string: frozenset({str}),
    serialize_id: frozenset({str}),
    serialize_boolean: frozenset({bool}),
    passed: _JSON_TYPES,
}
"""By coercion, the types of decoded JSON values it returns unchanged (graphql-core's
String, ID and Boolean keep their own type; the gateway's pass-through scalars all)."""


_PlainField = tuple[str, str, Callable[[Any], Any], bool, frozenset[type]]
"""A plain field's response name, then its `Plain`."""


class _Direct(NamedTuple):
    """A field whose generated resolver has a core `schema.types` exposes (references,
    compact multi-valued fields): called without strawberry's per-call wrapper."""

    field: GraphQLField
    resolve: RecordResolver


class _Entry(NamedTuple):
    response_name: str
    details: FieldDetailsList
    plain: Plain | None
    direct: _Direct | None


class _Plan(NamedTuple):
    entries: tuple[_Entry, ...]
    plain: tuple[_PlainField, ...] | None
    """Each field's response name and `Plain`, if every field is plain."""


_SLOW: Any = object()
"""A plain field that needs graphql-core's path after all (absent, null, refused)."""

_FIELDS: weakref.WeakKeyDictionary[GraphQLObjectType, dict[str, Plain | _Direct | None]] = (
    weakref.WeakKeyDictionary()
)
"""Per object type of any schema built in this process: how each field completes."""


def _basic(field: GraphQLField) -> StrawberryField | None:
    """The field's definition, if strawberry's basic resolver reads it from the record."""
    definition = field.extensions.get(_BACKREF)
    if (
        not getattr(field.resolve, "_is_default", False)
        or field.args
        or not isinstance(definition, StrawberryField)
        or definition.base_resolver is not None
        or definition.extensions
        or definition.default_resolver is not field_value
    ):
        return None
    return definition


def plain_field(field: GraphQLField) -> Plain | None:
    """What strawberry's basic resolver reads for `field` and how its type coerces it."""
    definition = _basic(field)
    if definition is None:
        return None
    non_null = is_non_null_type(field.type)
    leaf = getattr(field.type, "of_type", None) if non_null else field.type
    if not is_leaf_type(leaf):
        return None
    coerce = leaf.coerce_output_value
    if is_enum_type(leaf):
        coerce = _remembered(coerce)
    return Plain(definition.python_name, coerce, non_null, _KEPT.get(coerce, frozenset()))


def plain_list_field(field: GraphQLField) -> Plain | None:
    """`plain_field` for a list of scalars or enums (a multi-valued property, `[T!]!`):
    its coercion takes the whole list and raises where graphql-core's path must decide."""
    definition = _basic(field)
    if definition is None:
        return None
    non_null = is_non_null_type(field.type)
    listed = getattr(field.type, "of_type", None) if non_null else field.type
    if not isinstance(listed, GraphQLList):
        return None
    item_non_null = is_non_null_type(listed.of_type)
    leaf = listed.of_type.of_type if item_non_null else listed.of_type
    if not is_leaf_type(leaf):
        return None
    one = leaf.coerce_output_value
    if is_enum_type(leaf):
        one = _remembered(one)

    def coerce(values: Any) -> list[Any]:
        if type(values) is not list:
            raise TypeError("not a list")  # the compact shape's bare value: executed
        coerced = []
        for value in values:
            item = None if value is None else one(value)
            if item is Undefined or (item is None and (item_non_null or value is not None)):
                raise TypeError("an item graphql-core must complete")
            coerced.append(item)
        return coerced

    return Plain(definition.python_name, coerce, non_null)


def _remembered(coerce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An enum's coercion, remembered for the strings it accepts (a name per value: a
    dict lookup instead of strawberry's `isinstance` and graphql-core's `super()` call)."""
    names: dict[str, Any] = {}

    def coerce_remembered(value: Any) -> Any:
        if type(value) is not str:
            return coerce(value)
        name = names.get(value)
        if name is None:
            name = coerce(value)  # raises for a value the enum lacks: nothing remembered
            if name is not None and name is not Undefined:
                names[value] = name
        return name

    return coerce_remembered


def _direct(field: GraphQLField) -> _Direct | None:
    """The core of a generated resolver without arguments or field extensions."""
    definition = field.extensions.get(_BACKREF)
    if (
        field.args
        or not isinstance(definition, StrawberryField)
        or definition.base_resolver is None
        or definition.extensions
    ):
        return None
    resolve = getattr(definition.base_resolver.wrapped_func, RECORD_RESOLVER, None)
    return None if resolve is None else _Direct(field, resolve)


def _fields(parent_type: GraphQLObjectType) -> dict[str, Plain | _Direct | None]:
    found = _FIELDS.get(parent_type)
    if found is None:
        found = {
            name: plain_field(field) or _direct(field) for name, field in parent_type.fields.items()
        }
        _FIELDS[parent_type] = found
    return found


def _read(plain: Plain, record: dict[str, Any]) -> Any:
    """The completed value of a plain field, or `_SLOW` where graphql-core must decide."""
    value = record.get(plain.key, _SLOW)
    if value is None:
        return _SLOW if plain.non_null else None
    if value is _SLOW:
        return _SLOW
    if type(value) in plain.kept:
        return value
    try:
        coerced = plain.coerce(value)
    except Exception:  # noqa: BLE001 - graphql-core's path raises it again, located
        return _SLOW
    return _SLOW if coerced is None or coerced is Undefined else coerced


def _plain_record(fields: tuple[_PlainField, ...], record: dict[str, Any]) -> dict[str, Any] | None:
    """`_read` of every field of an all-plain selection, inlined (this loop runs once per
    field of every record), or None if one field needs graphql-core's path."""
    completed: dict[str, Any] = {}
    get = record.get
    try:
        for response_name, key, coerce, non_null, kept in fields:
            value = get(key, _SLOW)
            if type(value) in kept:
                completed[response_name] = value
                continue
            if value is None:
                if non_null:
                    return None
                completed[response_name] = None
                continue
            if value is _SLOW:
                return None
            coerced = coerce(value)
            if coerced is None or coerced is Undefined:
                return None
            completed[response_name] = coerced
    except Exception:  # noqa: BLE001 - as in `_read`
        return None
    return completed


class RecordExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor with plain fields of records completed in place."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._records = manager is None or not manager.middlewares
        # strawberry's exception handlers would wrap a resolver: then none is called directly
        schema = getattr(self.schema, "_strawberry_schema", None)
        self._direct = not getattr(schema, "exception_handlers", True)
        self._plans: dict[int, tuple[GroupedFieldSet, _Plan]] = {}

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> _Plan:
        """The entries of one selection set, once per operation (like `collect_subfields`).

        The grouped field set is kept with its plan, so that its id is not reused.
        """
        found = self._plans.get(id(grouped_field_set))
        if found is not None and found[0] is grouped_field_set:
            return found[1]
        fields = _fields(parent_type)
        entries = []
        for name, details in grouped_field_set.items():
            how = fields.get(details[0].node.name.value)
            plain = how if isinstance(how, Plain) else None
            direct = how if isinstance(how, _Direct) and self._direct else None
            entries.append(_Entry(name, details, plain, direct))
        every = tuple(
            (entry.response_name, *entry.plain) for entry in entries if entry.plain is not None
        )
        plan = _Plan(tuple(entries), every if len(every) == len(entries) else None)
        self._plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        if type(source_value) is not dict or position_context is not None or not self._records:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_record(
            parent_type, source_value, path, self._plan(parent_type, grouped_field_set)
        )

    def _execute_record(
        self,
        parent_type: GraphQLObjectType,
        record: dict[str, Any],
        path: Path | None,
        plan: _Plan,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """`execute_fields` of a record: plain fields read in place, the others executed."""
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, details, plain, direct in plan.entries:
                if plain is not None:
                    value = _read(plain, record)
                    if value is not _SLOW:
                        results[response_name] = value
                        continue
                field_path = Path(path, response_name, parent_type.name)
                if direct is not None:
                    result = self._execute_direct(parent_type, record, details, field_path, direct)
                else:
                    result = self.execute_field(parent_type, record, details, field_path, None)
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return self._awaited_fields(results, awaitable_fields)

    def _execute_direct(
        self,
        parent_type: GraphQLObjectType,
        record: dict[str, Any],
        details: FieldDetailsList,
        path: Path,
        direct: _Direct,
    ) -> AwaitableOrValue[Any]:
        """graphql-core's `execute_field`, calling the resolver's core (no middleware runs:
        see `_records`; the field takes no arguments)."""
        field_def, resolve = direct
        return_type = field_def.type
        info = self.build_resolve_info(field_def, to_nodes(details), parent_type, path)
        try:
            result = resolve(record, self.context_value)
            if self.is_awaitable(result):
                return self.complete_awaitable_value(return_type, details, info, path, result, None)
            completed = self.complete_value(return_type, details, info, path, result, None)
            if self.is_awaitable(completed):
                return self._awaited_completed(completed, return_type, details, path)
        except Exception as raw_error:  # noqa: BLE001 - located (or raised again) as graphql-core does
            self.handle_field_error(raw_error, return_type, details, path)
            return None
        return completed

    async def _awaited_completed(
        self,
        completed: Awaitable[Any],
        return_type: GraphQLOutputType,
        details: FieldDetailsList,
        path: Path,
    ) -> Any:
        try:
            return await completed
        except Exception as raw_error:  # noqa: BLE001 - as above
            self.handle_field_error(raw_error, return_type, details, path)
            return None

    @staticmethod
    async def _awaited_fields(results: dict[str, Any], names: list[str]) -> dict[str, Any]:
        if len(names) == 1:
            results[names[0]] = await results[names[0]]
        else:
            awaited = await gather_with_cancel(*(results[name] for name in names))
            results.update(zip(names, awaited, strict=True))
        return results

    def complete_list_value(  # noqa: PLR0917 - graphql-core's signature
        self,
        return_type: GraphQLList[GraphQLOutputType],
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        item_type = return_type.of_type
        object_type = (
            getattr(item_type, "of_type", None) if is_non_null_type(item_type) else item_type
        )
        if (
            type(result) is not list
            or position_context is not None
            or not self._records
            or not is_object_type(object_type)
            or object_type.is_type_of is not None
        ):
            return super().complete_list_value(
                return_type, field_details_list, info, path, result, position_context
            )
        grouped_field_set, new_defer_usages, _ = self.collect_subfields(
            object_type, field_details_list
        )
        if new_defer_usages or self.get_stream_usage(field_details_list, path) is not None:
            return super().complete_list_value(
                return_type, field_details_list, info, path, result, position_context
            )
        return self._complete_records(
            object_type,
            item_type,
            field_details_list,
            info,
            path,
            result,
            self._plan(object_type, grouped_field_set),
        )

    def _complete_records(  # noqa: PLR0917 - complete_list_value's own inputs
        self,
        object_type: GraphQLObjectType,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: list[Any],
        plan: _Plan,
    ) -> AwaitableOrValue[list[Any]]:
        """`complete_iterable_value` for a list of records of an object type."""
        is_awaitable = self.is_awaitable
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        index = 0
        try:
            for index, item in enumerate(items):
                if type(item) is dict:
                    if plan.plain is not None:
                        done = _plain_record(plan.plain, item)
                        if done is not None:
                            completed.append(done)
                            continue
                    if self._complete_record(
                        object_type,
                        item_type,
                        field_details_list,
                        path.add_key(index, None),
                        item,
                        plan,
                        completed,
                    ):
                        awaitable_indices.append(index)
                    continue
                item_path = path.add_key(index, None)
                if is_awaitable(item):
                    completed.append(
                        self.complete_awaitable_list_item_value(
                            item, item_type, field_details_list, info, item_path, None
                        )
                    )
                    awaitable_indices.append(index)
                elif self.complete_list_item_value(
                    item, completed, item_type, field_details_list, info, item_path, None
                ):
                    awaitable_indices.append(index)
        except Exception:
            pending = [completed[i] for i in awaitable_indices]
            pending += collect_iterator_awaitables(iter(items[index + 1 :]), is_awaitable)
            if pending:
                self.settle_in_background(pending)
            raise
        if not awaitable_indices:
            return completed
        return self._awaited_items(completed, awaitable_indices)

    def _complete_record(  # noqa: PLR0917 - complete_list_item_value's own inputs
        self,
        object_type: GraphQLObjectType,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        item_path: Path,
        record: dict[str, Any],
        plan: _Plan,
        completed: list[Any],
    ) -> bool:
        """`complete_list_item_value` of a record; True if what it appended is awaitable."""
        try:
            done = self._execute_record(object_type, record, item_path, plan)
            if self.is_awaitable(done):
                completed.append(self._awaited_item(done, item_type, field_details_list, item_path))
                return True
            completed.append(done)
        except Exception as raw_error:  # noqa: BLE001 - located (or raised again) as graphql-core does
            self.handle_field_error(raw_error, item_type, field_details_list, item_path)
            completed.append(None)
        return False

    async def _awaited_item(
        self,
        done: Awaitable[dict[str, Any]],
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        item_path: Path,
    ) -> dict[str, Any] | None:
        try:
            return await done
        except Exception as raw_error:  # noqa: BLE001 - as above
            self.handle_field_error(raw_error, item_type, field_details_list, item_path)
            return None

    @staticmethod
    async def _awaited_items(completed: list[Any], indices: list[int]) -> list[Any]:
        if len(indices) == 1:
            completed[indices[0]] = await completed[indices[0]]
        else:
            awaited = await gather_with_cancel(*(completed[i] for i in indices))
            for i, value in zip(indices, awaited, strict=True):
                completed[i] = value
        return completed
