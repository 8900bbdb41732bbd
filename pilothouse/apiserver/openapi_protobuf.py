"""The `/openapi/v2` document in gnostic's protobuf encoding, and which encoding a client gets.

client-go's discovery client (`OpenAPISchema`) asks for /openapi/v2 with
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and unmarshals the body
as gnostic's `openapi_v2.Document`; it never reads JSON there. kubectl uses that document for
client-side validation whenever the server cannot validate for it: a `kind: List` (what
`kubectl get -o yaml` prints) has no endpoint of its own, so `kubectl apply -f` of a List checks
every item against these definitions.

kube-openapi makes the protobuf by parsing the JSON document with gnostic (`ParseDocument`)
and marshalling the result. `encode_document` does that conversion straight from the dict
`OpenAPIDocuments.v2()` builds, with gnostic's rules (its compiler, `openapiv2/OpenAPIv2.go`):

- Field numbers and types are those of `openapiv2/OpenAPIv2.proto`. A proto3 scalar at its zero
  value is left out, as proto.Marshal leaves it out; a message field is written even when empty
  (`properties: {}`), and so is a oneof member at its zero value (`additionalProperties: false`).
- Objects keyed by name (definitions, properties, paths, responses, security requirements and
  definitions) become repeated `Named*` pairs, in the document's order.
- `x-` keys become vendor extensions: `NamedAny`s whose `Any.yaml` holds the value as YAML, which
  consumers (kube-openapi's proto models, so kubectl) read back with a YAML decoder. `default`,
  `example` and each `enum` value are `Any`s the same way.
- A oneof member is the one gnostic's parser would pick: a parameter or response with `$ref` is
  a JsonReference, `in: body` a BodyParameter and each other location its own sub-schema,
  `type: file` a FileSchema, a boolean additionalProperties the boolean member.

Only what the served document can hold has an encoder (every schema keyword that
`openapi._swagger2` keeps, since a CRD's schema can use any of them; `xml` is never kept). Any
other key raises `ValueError`: a change to the JSON generator that this module does not follow
fails the tests, rather than publishing a document that kubectl reads differently from the JSON.

`negotiate_v2` picks the encoding for an Accept header as kube-openapi's handler does.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson
import yaml

from pilothouse.machinery import protowire

JSON = "application/json"
#: What the protobuf document is served as, whichever of its two names the client asked for.
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
#: (subtype of `application/` a client may accept, content type served), in the order
#: kube-openapi tries them for each Accept clause. client-go asks for the `@v1.0` spelling.
V2_SERVED = (
    ("json", JSON),
    ("com.github.proto-openapi.spec.v2@v1.0+protobuf", PROTOBUF),
    ("com.github.proto-openapi.spec.v2.v1.0+protobuf", PROTOBUF),
)
#: What the /openapi/v3 documents are served as here: JSON only (kube-openapi also encodes
#: them as protobuf; a client that accepts nothing else gets 406).
V3_SERVED = (("json", JSON),)


def negotiate_v2(accept: str) -> str | None:
    """The content type to serve /openapi/v2 as for this Accept header; None means 406."""
    return negotiate(accept, V2_SERVED)


def negotiate(accept: str, served: tuple[tuple[str, str], ...]) -> str | None:
    """The content type to serve an OpenAPI document as for this Accept header, from
    `served` ((subtype of `application/`, content type), in the order tried); None means 406.

    As kube-openapi's handlers (with goautoneg's parsing): no header means `*/*`; clauses are
    tried by falling quality, a concrete type before a wildcard, each against what is served
    in order, and the first match wins, so `*/*` and `application/*` get JSON. Like the real
    handler, a clause with `q=0` still matches when nothing better does."""
    clauses = []
    for position, part in enumerate((accept or "*/*").split(",")):
        media_range, *params = part.strip().split(";")
        type_, *subtype = media_range.split("/")
        type_ = type_.strip()
        if len(subtype) == 1:
            subtype_ = subtype[0].strip()
        elif not subtype and type_ == "*":
            subtype_ = "*"
        else:
            continue
        quality = 1.0
        for param in params:
            name, sep, value = param.partition("=")
            if sep and name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        clauses.append((-quality, type_ == "*", subtype_ == "*", position, type_, subtype_))
    for *_, type_, subtype_ in sorted(clauses):
        if type_ not in ("application", "*"):
            continue
        for served_subtype, content_type in served:
            if subtype_ in (served_subtype, "*"):
                return content_type
    return None


# --- the wire -----------------------------------------------------------------------------
# Field writers over `machinery.protowire`, which owns the encoding itself.

_Encoder = Callable[[Any], bytes]
"""A JSON value -> the body of the protobuf message it becomes."""


class _Field(NamedTuple):
    """How one JSON key is written: its field number and a writer from its JSON value to the
    field's bytes, key included (empty when proto3 leaves the value out)."""

    number: int
    write: Callable[[Any], bytes]


def _unencodable(what: str, value: Any) -> ValueError:
    return ValueError(f"{what} has no OpenAPI v2 protobuf encoding: {value!r:.80}")


def _text(value: Any) -> str:
    """A string field's value, read as gnostic reads a scalar: integers by their digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return ""
    raise _unencodable("a non-string value of a string field", value)


def _string(number: int) -> _Field:
    def write(value: Any) -> bytes:
        text = _text(value)
        return protowire.delimited(number, text.encode()) if text else b""
    return _Field(number, write)


def _strings(number: int) -> _Field:
    return _Field(number, lambda values: b"".join(
        protowire.delimited(number, _text(v).encode()) for v in _sequence(values)))


def _bool(number: int) -> _Field:
    key = protowire.key(number, protowire.VARINT)

    def write(value: Any) -> bytes:
        if not isinstance(value, bool):
            raise _unencodable("a non-boolean value of a boolean field", value)
        return key + b"\x01" if value else b""
    return _Field(number, write)


def _double(number: int) -> _Field:
    key = protowire.key(number, protowire.FIXED64)

    def write(value: Any) -> bytes:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _unencodable("a non-number value of a number field", value)
        data = struct.pack("<d", value)
        return key + data if data != bytes(8) else b""
    return _Field(number, write)


def _int64(number: int) -> _Field:
    key = protowire.key(number, protowire.VARINT)

    def write(value: Any) -> bytes:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _unencodable("a non-integer value of an integer field", value)
        return key + protowire.varint(value) if value else b""
    return _Field(number, write)


def _message(number: int, encoder: _Encoder) -> _Field:
    return _Field(number, lambda value: protowire.delimited(number, encoder(value)))


def _repeated(number: int, encoder: _Encoder) -> _Field:
    return _Field(number, lambda values: b"".join(
        protowire.delimited(number, encoder(v)) for v in _sequence(values)))


def _named(number: int, encoder: _Encoder) -> _Field:
    """A JSON object as repeated `Named*` pairs: {string name = 1; <message> value = 2}."""
    name = _string(1).write
    return _Field(number, lambda values: b"".join(
        protowire.delimited(number, name(k) + protowire.delimited(2, encoder(v)))
        for k, v in _mapping(values).items()))


def _sequence(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _unencodable("a non-array value of a repeated field", value)
    return list(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _unencodable("a non-object value of a message field", value)
    return value


def _fields(fields: Mapping[str, _Field], extensions: int | None = None) -> _Encoder:
    """The encoder of a message whose JSON object maps keys to fields; `x-` keys go to the
    vendor extension field `extensions`. Fields are written in field-number order."""
    vendor = _named(extensions, _any) if extensions is not None else None

    def encode(value: Any) -> bytes:
        written = []
        extension_values = {}
        for name, item in _mapping(value).items():
            field = fields.get(name)
            if field is not None:
                written.append((field.number, field.write(item)))
            elif vendor is not None and name.startswith("x-"):
                extension_values[name] = item
            else:
                raise _unencodable(f"the key {name!r}", value)
        if vendor is not None and extension_values:
            written.append((vendor.number, vendor.write(extension_values)))
        written.sort(key=lambda pair: pair[0])
        return b"".join(data for _, data in written)
    return encode


# --- Any: a JSON value carried as YAML ----------------------------------------------------


_ANY_YAML = _string(2)


def _any(value: Any) -> bytes:
    """`Any{string yaml = 2}`: the value as block YAML, as gnostic's compiler writes it."""
    return _any_from_json(orjson.dumps(value))


@functools.lru_cache(maxsize=4096)
def _any_from_json(json_text: bytes) -> bytes:
    # Most are the same few values (group-version-kinds, actions, patch strategies).
    text = yaml.safe_dump(orjson.loads(json_text), default_flow_style=False, sort_keys=False,
                          allow_unicode=True, width=1 << 20)
    text = text.removesuffix("...\n")  # PyYAML's end marker after a bare scalar
    return _ANY_YAML.write(text)


# --- Schema -------------------------------------------------------------------------------


def _schema(value: Any) -> bytes:
    return _SCHEMA(value)


_NAMED_SCHEMAS = _named(1, _schema)
_TYPE_VALUES = _strings(1)
_ITEMS_SCHEMAS = _repeated(1, _schema)


def _schemas_by_name(value: Any) -> bytes:
    """Properties and Definitions: {repeated NamedSchema additional_properties = 1}."""
    return _NAMED_SCHEMAS.write(value)


def _type_item(value: Any) -> bytes:
    """TypeItem{repeated string value = 1}: one type name or several."""
    return _TYPE_VALUES.write([value] if isinstance(value, str) else value)


def _items_item(value: Any) -> bytes:
    """ItemsItem{repeated Schema schema = 1}: one schema or a tuple of them."""
    return _ITEMS_SCHEMAS.write([value] if isinstance(value, Mapping) else value)


_ADDITIONAL_SCHEMA = _message(1, _schema)
_ADDITIONAL_BOOLEAN = protowire.key(2, protowire.VARINT)


def _additional_properties(value: Any) -> bytes:
    """AdditionalPropertiesItem, oneof {Schema schema = 1; bool boolean = 2}; a oneof member is
    written even when false."""
    if isinstance(value, bool):
        return _ADDITIONAL_BOOLEAN + (b"\x01" if value else b"\x00")
    return _ADDITIONAL_SCHEMA.write(value)


_EXTERNAL_DOCS = _fields({"description": _string(1), "url": _string(2)}, extensions=3)

_SCHEMA = _fields({
    "$ref": _string(1),
    "format": _string(2),
    "title": _string(3),
    "description": _string(4),
    "default": _message(5, _any),
    "multipleOf": _double(6),
    "maximum": _double(7),
    "exclusiveMaximum": _bool(8),
    "minimum": _double(9),
    "exclusiveMinimum": _bool(10),
    "maxLength": _int64(11),
    "minLength": _int64(12),
    "pattern": _string(13),
    "maxItems": _int64(14),
    "minItems": _int64(15),
    "uniqueItems": _bool(16),
    "maxProperties": _int64(17),
    "minProperties": _int64(18),
    "required": _strings(19),
    "enum": _repeated(20, _any),
    "additionalProperties": _message(21, _additional_properties),
    "type": _message(22, _type_item),
    "items": _message(23, _items_item),
    "allOf": _repeated(24, _schema),
    "properties": _message(25, _schemas_by_name),
    "discriminator": _string(26),
    "readOnly": _bool(27),
    "externalDocs": _message(29, _EXTERNAL_DOCS),
    "example": _message(30, _any),
}, extensions=31)

_FILE_SCHEMA = _fields({
    "format": _string(1),
    "title": _string(2),
    "description": _string(3),
    "default": _message(4, _any),
    "required": _strings(5),
    "type": _string(6),
    "readOnly": _bool(7),
    "externalDocs": _message(8, _EXTERNAL_DOCS),
    "example": _message(9, _any),
}, extensions=10)

_SCHEMA_ITEM_SCHEMA = _message(1, _schema)
_SCHEMA_ITEM_FILE = _message(2, _FILE_SCHEMA)


def _schema_item(value: Any) -> bytes:
    """SchemaItem, oneof {Schema schema = 1; FileSchema file_schema = 2}."""
    if _mapping(value).get("type") == "file":
        return _SCHEMA_ITEM_FILE.write(value)
    return _SCHEMA_ITEM_SCHEMA.write(value)


# --- parameters ---------------------------------------------------------------------------


def _primitives_items(value: Any) -> bytes:
    return _PRIMITIVES_ITEMS(value)


#: The keywords of a Swagger 2.0 primitive (non-body parameters, their items, headers), in the
#: order of their field numbers: one consecutive run in each message that has them.
_PRIMITIVE_KEYWORDS: tuple[tuple[str, Callable[[int], _Field]], ...] = (
    ("type", _string), ("format", _string),
    ("items", lambda n: _message(n, _primitives_items)),
    ("collectionFormat", _string), ("default", lambda n: _message(n, _any)),
    ("maximum", _double), ("exclusiveMaximum", _bool), ("minimum", _double),
    ("exclusiveMinimum", _bool), ("maxLength", _int64), ("minLength", _int64),
    ("pattern", _string), ("maxItems", _int64), ("minItems", _int64),
    ("uniqueItems", _bool), ("enum", lambda n: _repeated(n, _any)),
    ("multipleOf", _double),
)
_PRIMITIVE_COUNT = len(_PRIMITIVE_KEYWORDS)


def _primitive_fields(first: int) -> dict[str, _Field]:
    """The primitive keywords numbered from `first`."""
    return {name: kind(first + i) for i, (name, kind) in enumerate(_PRIMITIVE_KEYWORDS)}


_PRIMITIVES_ITEMS = _fields(_primitive_fields(1), extensions=1 + _PRIMITIVE_COUNT)

_PARAMETER_HEAD = {"required": _bool(1), "in": _string(2), "description": _string(3),
                   "name": _string(4)}
#: PathParameterSubSchema and HeaderParameterSubSchema.
_LOCATED_PARAMETER = _fields({**_PARAMETER_HEAD, **_primitive_fields(5)},
                             extensions=5 + _PRIMITIVE_COUNT)
#: QueryParameterSubSchema and FormDataParameterSubSchema, which add allowEmptyValue.
_VALUED_PARAMETER = _fields({**_PARAMETER_HEAD, "allowEmptyValue": _bool(5),
                             **_primitive_fields(6)}, extensions=6 + _PRIMITIVE_COUNT)
#: NonBodyParameter's oneof: location -> its member.
_NON_BODY = {
    "header": _message(1, _LOCATED_PARAMETER),
    "formData": _message(2, _VALUED_PARAMETER),
    "query": _message(3, _VALUED_PARAMETER),
    "path": _message(4, _LOCATED_PARAMETER),
}
_BODY_PARAMETER = _message(1, _fields({
    "description": _string(1), "name": _string(2), "in": _string(3), "required": _bool(4),
    "schema": _message(5, _schema),
}, extensions=6))
#: Parameter's field number of its NonBodyParameter member.
_NON_BODY_PARAMETER = 2
_JSON_REFERENCE = _fields({"$ref": _string(1), "description": _string(2)})


def _parameter(value: Any) -> bytes:
    """Parameter, oneof {BodyParameter = 1; NonBodyParameter = 2}; NonBodyParameter is itself
    a oneof by location."""
    location = _mapping(value).get("in")
    if location == "body":
        return _BODY_PARAMETER.write(value)
    member = _NON_BODY.get(location)
    if member is None:
        raise _unencodable(f"a parameter in {location!r}", value)
    return protowire.delimited(_NON_BODY_PARAMETER, member.write(value))


_PARAMETERS_ITEM_PARAMETER = _message(1, _parameter)
_PARAMETERS_ITEM_REFERENCE = _message(2, _JSON_REFERENCE)


def _parameters_item(value: Any) -> bytes:
    """ParametersItem, oneof {Parameter parameter = 1; JsonReference json_reference = 2}."""
    if "$ref" in _mapping(value):
        return _PARAMETERS_ITEM_REFERENCE.write(value)
    return _PARAMETERS_ITEM_PARAMETER.write(value)


# --- paths and operations -----------------------------------------------------------------

_RESPONSE = _fields({"description": _string(1), "schema": _message(2, _schema_item)},
                    extensions=5)
_RESPONSE_VALUE_RESPONSE = _message(1, _RESPONSE)
_RESPONSE_VALUE_REFERENCE = _message(2, _JSON_REFERENCE)


def _response_value(value: Any) -> bytes:
    """ResponseValue, oneof {Response response = 1; JsonReference json_reference = 2}."""
    if "$ref" in _mapping(value):
        return _RESPONSE_VALUE_REFERENCE.write(value)
    return _RESPONSE_VALUE_RESPONSE.write(value)


def _split_extensions(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the entries of an object keyed by name, its `x-` vendor extensions)."""
    entries: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for name, item in _mapping(value).items():
        (extensions if name.startswith("x-") else entries)[name] = item
    return entries, extensions


_RESPONSE_CODES = _named(1, _response_value)
_RESPONSES_EXTENSIONS = _named(2, _any)


def _responses(value: Any) -> bytes:
    """Responses{repeated NamedResponseValue response_code = 1; vendor_extension = 2}."""
    codes, extensions = _split_extensions(value)
    return _RESPONSE_CODES.write(codes) + _RESPONSES_EXTENSIONS.write(extensions)


#: SecurityRequirement{repeated NamedStringArray additional_properties = 1}, where
#: StringArray is {repeated string value = 1}.
_SECURITY_REQUIREMENT = _named(1, _strings(1).write)

_OPERATION = _fields({
    "tags": _strings(1),
    "summary": _string(2),
    "description": _string(3),
    "externalDocs": _message(4, _EXTERNAL_DOCS),
    "operationId": _string(5),
    "produces": _strings(6),
    "consumes": _strings(7),
    "parameters": _repeated(8, _parameters_item),
    "responses": _message(9, _responses),
    "schemes": _strings(10),
    "deprecated": _bool(11),
    "security": _repeated(12, _SECURITY_REQUIREMENT.write),
}, extensions=13)

_PATH_ITEM = _fields({
    "$ref": _string(1),
    "get": _message(2, _OPERATION),
    "put": _message(3, _OPERATION),
    "post": _message(4, _OPERATION),
    "delete": _message(5, _OPERATION),
    "options": _message(6, _OPERATION),
    "head": _message(7, _OPERATION),
    "patch": _message(8, _OPERATION),
    "parameters": _repeated(9, _parameters_item),
}, extensions=10)

_PATHS_EXTENSIONS = _named(1, _any)
_PATHS = _named(2, _PATH_ITEM)


def _paths(value: Any) -> bytes:
    """Paths{vendor_extension = 1; repeated NamedPathItem path = 2}."""
    paths, extensions = _split_extensions(value)
    return _PATHS_EXTENSIONS.write(extensions) + _PATHS.write(paths)


# --- the document -------------------------------------------------------------------------

_API_KEY_SECURITY = _message(2, _fields({
    "type": _string(1), "name": _string(2), "in": _string(3), "description": _string(4),
}, extensions=5))


def _security_definitions_item(value: Any) -> bytes:
    """SecurityDefinitionsItem, a oneof by `type`; the server declares bearer tokens, an
    apiKey in the authorization header."""
    if _mapping(value).get("type") != "apiKey":
        raise _unencodable("a security definition other than apiKey", value)
    return _API_KEY_SECURITY.write(value)


_DOCUMENT = _fields({
    "swagger": _string(1),
    "info": _message(2, _fields({"title": _string(1), "version": _string(2),
                                 "description": _string(3)}, extensions=7)),
    "paths": _message(8, _paths),
    "definitions": _message(9, _schemas_by_name),
    "security": _repeated(12, _SECURITY_REQUIREMENT.write),
    "securityDefinitions": _message(13, _named(1, _security_definitions_item).write),
}, extensions=16)


def encode_document(document: Mapping[str, Any]) -> bytes:
    """A Swagger 2.0 document (as `OpenAPIDocuments.v2()` builds it) as gnostic's
    `openapi_v2.Document` in protobuf encoding; ValueError for what it cannot encode."""
    return _DOCUMENT(document)
