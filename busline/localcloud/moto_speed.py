"""Take the per-request overhead out of moto's server, without changing a single answer.

Profiled on a chunk's calls (SQS send, receive + delete, DynamoDB put, PutEvents; 200 each), moto spent
most of its time outside the service logic:
- choosing the backend: every request listed moto's package folder (≈180 `isdir` calls) and tried the
  service URL patterns one by one, all under one lock that serializes every request of the server;
- `unix_time()` builds two datetimes per call, and SQS calls it per message, several times per request
  (visibility, delay, retention): a queue holding 200 messages cost ≈ 10 ms per call;
- SQS rebuilt every attribute of the queue (counting its messages) to read one of them;
- each request re-listed its handler class's methods with `inspect.getmembers`, and drew its 52-character
  request id (and each SQS receipt handle) one `random.choice` at a time;
- Flask ran in debug mode, which builds a new class for every request (a form-error helper);
- every DynamoDB item in an answer went through the generic, model-driven serializer: for each attribute
  value, ten members tried under four alias rules each, a fifth of the server's time in the flights run;
- while `make bench` records requests (moto's recorder), every S3 object's bytes were base64-encoded into
  the recording: a fifth of the flights run's time, spent in the server every call waits on;
- every UpdateItem tokenized and parsed its UpdateExpression twice (to check the placeholders, then to
  apply it), a quarter of the call's time: Busline's writers send the same few expressions over and over;
- every attribute an UpdateItem sets re-measures the whole item against the 400 KB limit, and measuring
  re-wrapped every nested value and set member in a new DynamoType: with a task's chunk sets growing, a
  fifth of each UpdateItem of the 10x run, and work that grew with the square of the chunks;
- completing a multipart upload read every part from disk twice and copied the whole object four times
  (growing two buffers part by part, then freezing each): about 200 ms for extract's 35 MB staged copy,
  which every range of the task waits for;
- a GET of a byte range read the whole object from its spooled file (on disk past 5 MB) and then sliced
  it: each of a task's ranges read the whole source, and the 10x run's 170 ranges read its 300 MB file
  170 times, in the server every call waits on.

Each replacement returns what the original returns for the same input; the memoized ones are pure
functions of their arguments (a host name, a class, a CamelCase name).
"""

from __future__ import annotations

import copy
import functools
import re
import sys
import threading
import time
from collections import deque
from typing import Any

_applied = False
# moto's own FakeMultipart.complete, kept so a test can hold the replacement to its answers
moto_multipart_complete: Any = None


def make_moto_calls_fast() -> None:
    """For the rest of the process (the local cloud's moto server)."""
    global _applied
    if _applied:
        return
    _memoize_backend_choice()
    _fast_clock()
    _memoize_pure_helpers()
    _sqs_reads_only_what_it_needs()
    _random_strings_in_one_draw()
    _flask_without_debug_helpers()
    _record_s3_bodies_by_size_only()
    _attribute_values_serialized_directly()
    _update_expressions_parsed_once()
    _item_sizes_measured_in_place()
    _update_validation_without_rebuilding()
    _conditions_tokenized_once()
    _ranged_gets_read_only_their_range()
    _multipart_parts_read_once()
    _applied = True


def _memoize_backend_choice() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    chosen: dict[str | None, Any] = {}

    @functools.wraps(original)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        # The answer depends on the host name only (moto's module list and URL patterns are fixed at import).
        try:
            return chosen[host]
        except KeyError:
            backend = chosen[host] = original(self, host)
            return backend

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def _rebind(name: str, original: Any, replacement: Any, modules: tuple[str, ...]) -> None:
    """moto's modules import helpers by name (`from moto.core.utils import unix_time`): swap each copy."""
    for module_name in modules:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, name, None) is original:
            setattr(module, name, replacement)


# the modules a Busline chunk's calls go through, imported up front so their copies can be swapped
_HOT_MODULES = (
    "moto.core.utils", "moto.core.responses", "moto.sqs.models", "moto.sqs.responses", "moto.sqs.utils",
    "moto.dynamodb.models", "moto.dynamodb.models.table", "moto.dynamodb.responses",
    "moto.dynamodbstreams.models", "moto.events.models", "moto.events.responses", "moto.s3.models",
    "moto.s3.responses", "moto.sns.models", "moto.sns.responses",
)


def _import_hot_modules() -> None:
    import importlib

    for module_name in _HOT_MODULES:
        try:
            importlib.import_module(module_name)
        except ImportError:  # a module moto reorganised away: nothing to swap there
            continue


def _fast_clock() -> None:
    from moto.core import utils

    _import_hot_modules()
    original_unix_time = utils.unix_time
    original_unix_time_millis = utils.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        # Without an argument the original computes utcnow() - epoch, which is time.time().
        return time.time() if dt is None else original_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else original_unix_time_millis(dt)

    _rebind("unix_time", original_unix_time, unix_time, _HOT_MODULES)
    _rebind("unix_time_millis", original_unix_time_millis, unix_time_millis, _HOT_MODULES)


def _memoize_pure_helpers() -> None:
    from moto.core import utils

    _import_hot_modules()
    for name in ("camelcase_to_underscores", "underscores_to_camelcase", "method_names_from_class"):
        original = getattr(utils, name)
        _rebind(name, original, functools.lru_cache(maxsize=4096)(original), _HOT_MODULES)


def _sqs_reads_only_what_it_needs() -> None:
    from moto.sqs.models import Queue, SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        # The original asks for every attribute of the queue (counting its messages) to read this one.
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_period + message.sent_timestamp / 1000 > time.time())

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )

    # The counts are three properties, each a pass over the messages with a clock read per message.
    def _counts(queue: Any) -> tuple[int, int, int]:
        now_ms = time.time() * 1000.0
        visible = not_visible = delayed = 0
        for message in queue._messages:
            is_visible = now_ms > message.visible_at
            is_delayed = now_ms < message.delayed_until
            if is_delayed:
                delayed += 1
            if not is_visible:
                not_visible += 1
            elif not is_delayed:
                visible += 1
        return visible, not_visible, delayed

    Queue.approximate_number_of_messages = property(lambda queue: _counts(queue)[0])  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(  # type: ignore[method-assign,assignment]
        lambda queue: _counts(queue)[1]
    )
    Queue.approximate_number_of_messages_delayed = property(lambda queue: _counts(queue)[2])  # type: ignore[method-assign,assignment]


def _random_strings_in_one_draw() -> None:
    import string

    from moto.moto_api._internal.moto_random import MotoRandom

    def get_random_string(self: Any, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
        pool = string.ascii_letters + (string.digits if include_digits else "")
        text = "".join(self.choices(pool, k=length))  # the same distribution as `length` choice() calls
        return text.lower() if lower_case else text

    MotoRandom.get_random_string = get_random_string  # type: ignore[method-assign]

    from moto.moto_api._internal import mock_random
    from moto.sqs import models as sqs_models
    from moto.sqs import utils as sqs_utils

    original_receipt_handle = sqs_utils.generate_receipt_handle

    def generate_receipt_handle() -> str:
        return "".join(mock_random.choices(string.ascii_lowercase, k=185))  # as the original: 185 letters

    _rebind("generate_receipt_handle", original_receipt_handle, generate_receipt_handle,
            (sqs_utils.__name__, sqs_models.__name__))


def _flask_without_debug_helpers() -> None:
    from moto.moto_server import threaded_moto_server

    create_backend_app = threaded_moto_server.create_backend_app

    def create_app(service: Any) -> Any:
        app = create_backend_app(service)
        app.debug = False  # answers are the same; an unexpected error still becomes a 500
        return app

    threaded_moto_server.create_backend_app = create_app  # type: ignore[assignment]


# Larger S3 bodies (objects, multipart parts) are recorded without their bytes; their Content-Length header
# stays, which is all the bench reads of them (busline/bench/calls.py).
RECORDED_S3_BODY_LIMIT = 64 * 1024


def _record_s3_bodies_by_size_only() -> None:
    from moto.moto_api._internal.recorder.models import Recorder

    record_request = Recorder._record_request

    def record_without_s3_object_bytes(self: Any, request: Any, body: bytes | None = None) -> None:
        if body is None and getattr(self, "_user_enabled", False):
            headers = getattr(request, "headers", {})
            try:
                size = int(headers.get("Content-Length") or 0)
            except ValueError:
                size = 0
            if size > RECORDED_S3_BODY_LIMIT and "/s3/aws4_request" in str(headers.get("Authorization", "")):
                body = b""  # given, so the recorder leaves the request's own stream unread for moto
        record_request(self, request, body)

    Recorder._record_request = record_without_s3_object_bytes  # type: ignore[method-assign]


# DynamoDB's AttributeValue, in the order of its model's members (the order the generic serializer writes).
_ATTRIBUTE_VALUE_MEMBERS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")
# Binary values need the serializer's blob encoding: those items take the generic path.
_DIRECT_MEMBERS = frozenset(_ATTRIBUTE_VALUE_MEMBERS) - {"B", "BS"}


class _NotDirect(Exception):
    """A value the direct path does not cover: the generic serializer writes it."""


def _string(value: Any) -> Any:
    return value if value in ({}, []) else str(value)  # the generic string rule (None never gets here)


def _attribute_value(value: Any) -> dict[str, Any]:
    """What the generic serializer writes for one AttributeValue given as moto's plain dict."""
    if not isinstance(value, dict) or not value.keys() <= _DIRECT_MEMBERS:
        raise _NotDirect
    written: dict[str, Any] = {}
    for member in _ATTRIBUTE_VALUE_MEMBERS:
        item = value.get(member)
        if item is None:
            continue  # the generic serializer leaves out a member whose value is None
        if member in ("S", "N"):
            written[member] = _string(item)
        elif member in ("SS", "NS"):
            if not isinstance(item, list) or any(element is None for element in item):
                raise _NotDirect
            written[member] = [_string(element) for element in item]
        elif member == "M":
            if not isinstance(item, dict):
                raise _NotDirect
            written[member] = {name: _attribute_value(element) for name, element in item.items()}
        elif member == "L":
            if not isinstance(item, list):
                raise _NotDirect
            written[member] = [_attribute_value(element) for element in item]
        else:  # NULL, BOOL: booleans are written as they are
            written[member] = item
    return written


def _attribute_values_serialized_directly() -> None:
    from moto.core.serialize import BaseJSONSerializer

    serialize_structure = BaseJSONSerializer._serialize_type_structure

    def serialize_attribute_values_directly(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and tuple(shape.members) == _ATTRIBUTE_VALUE_MEMBERS:
            try:
                serialized[self.get_serialized_name(shape, key)] = _attribute_value(value)
                return
            except _NotDirect:
                pass
        serialize_structure(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = serialize_attribute_values_directly  # type: ignore[method-assign]


def _update_expressions_parsed_once() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    # Sharing one tree between calls is safe: moto only reads the parsed tree (find_clauses) and its
    # validator works on a deep copy (Validator.__init__). A parse error is raised again on every call.
    parse = functools.lru_cache(maxsize=1024)(UpdateExpressionParser.make)
    UpdateExpressionParser.make = staticmethod(parse)  # type: ignore[method-assign,assignment]


def _update_validation_without_rebuilding() -> None:
    """moto validates an UpdateExpression with ten tree walks, and each walk rebuilt its processor's
    class -> method map twice per node (~110 nodes for a chunk's count); the walk starts from a deep copy of
    the parsed tree. A third of an UpdateItem's CPU went to those two alone."""
    from moto.dynamodb.parsing import validators  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    def processing_map(self: Any) -> dict[type, Any]:
        # Every processor's map is fixed (classes to its own bound methods): built once per processor.
        built = self.__dict__.get("_busline_processing_map")
        if built is None:
            built = self.__dict__["_busline_processing_map"] = self._processing_map()
        return built  # type: ignore[no-any-return]

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        kinds = self.__dict__.get("_busline_node_kinds")
        if kinds is None:
            kinds = self.__dict__["_busline_node_kinds"] = tuple(processing_map(self))
        return kinds  # type: ignore[no-any-return]

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed
    DepthFirstTraverser.process = process

    def copied_tree(value: Any, memo: Any = None) -> Any:
        # A parsed tree is Nodes (type, children, parent) over str tokens: copied node by node, parents
        # re-pointed into the copy, as deepcopy would. Anything else goes to deepcopy.
        if isinstance(value, Node) and value.parent is None and _plain_tree(value):
            return _copy_node(value, None)
        return copy.deepcopy(value, memo)

    validators.deepcopy = copied_tree  # type: ignore[assignment]
    _tree_checks_once_per_expression(validators)


def _conditions_tokenized_once() -> None:
    """moto tokenizes a condition (or filter) expression with a dozen regexes per token on every call; the
    tokens depend on the expression's text alone. Each call still gets its own deque of fresh tokens (each
    with its own empty children list, as the lexer makes them), and a bad expression raises every time."""
    from moto.dynamodb.comparisons import ConditionExpressionParser  # type: ignore[attr-defined]

    original = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=1024)
    def tokens(expression: str) -> tuple[Any, ...]:
        parser = object.__new__(ConditionExpressionParser)
        parser.condition_expression = expression
        return tuple(original(parser))

    def lex_condition_expression(self: Any) -> Any:
        return deque(token._replace(children=[]) for token in tokens(self.condition_expression))

    ConditionExpressionParser._lex_condition_expression = lex_condition_expression  # type: ignore[method-assign]


# Expressions whose tree-only checks passed, by the parsed tree (kept alive here, so its id is its own).
_TREES_CHECKED: dict[int, tuple[Any, set[tuple[Any, ...]]]] = {}


def _tree_checks_once_per_expression(validators: Any) -> None:
    """Three of moto's update checks read only the expression's tree, its names and the table's key (too
    many clauses, overlapping paths, a key updated); the first two run on every subtree, so their cost
    grows with the square of the expression. The parsed tree is shared (_update_expressions_parsed_once):
    once a tree passed them with given names and key, they are skipped for it. A failing expression is
    never recorded, so it fails the same way every time."""
    tree_only = (validators.ActionCountValidator, validators.OverlappingPathsValidator,
                 validators.UpdateHashRangeKeyValidator)
    validator_class = validators.UpdateExpressionValidator
    original_init, original_processors, original_validate = (
        validator_class.__init__, validator_class.get_ast_processors, validator_class.validate)

    def checks_key(self: Any) -> tuple[Any, ...]:
        names = self.expression_attribute_names or {}
        return tuple(sorted(names.items())), tuple(self.table.table_key_attrs)

    def init(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        self._busline_tree = expression
        original_init(self, expression, *args, **kwargs)

    def get_ast_processors(self: Any) -> list[Any]:
        processors = original_processors(self)
        checked = _TREES_CHECKED.get(id(self._busline_tree))
        if checked is not None and checked[0] is self._busline_tree and checks_key(self) in checked[1]:
            return [processor for processor in processors if not isinstance(processor, tree_only)]
        return processors  # type: ignore[no-any-return]

    def validate(self: Any) -> Any:
        validated = original_validate(self)
        tree = self._busline_tree
        if len(_TREES_CHECKED) >= 1024:
            _TREES_CHECKED.clear()
        entry = _TREES_CHECKED.get(id(tree))
        if entry is None or entry[0] is not tree:
            entry = _TREES_CHECKED[id(tree)] = (tree, set())
        entry[1].add(checks_key(self))
        return validated

    validator_class.__init__ = init
    validator_class.get_ast_processors = get_ast_processors
    validator_class.validate = validate


def _plain_tree(node: Any) -> bool:
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    if set(vars(node)) != {"type", "children", "parent"}:
        return False
    return all(
        _plain_tree(child) if isinstance(child, Node) else isinstance(child, str | int | type(None))
        for child in node.children or ()
    )


def _copy_node(node: Any, parent: Any) -> Any:
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    clone = object.__new__(type(node))
    clone.type = node.type
    clone.parent = parent
    clone.children = (
        None
        if node.children is None
        else [_copy_node(child, clone) if isinstance(child, Node) else child for child in node.children]
    )
    return clone


_SET_TYPES = frozenset(("SS", "NS", "BS"))


def _value_size(kind: str, value: Any) -> int:
    """DynamoType(...).size() for a value of `kind`, without building a DynamoType per member."""
    if kind == "N":
        return len(str(value))
    if kind in _SET_TYPES:
        member = kind[0]
        return sum(_value_size(member, item) for item in value)
    if kind == "L":
        return sum(_nested_size(item) for item in value)
    if kind == "M":
        return sum(len(key.encode("utf-8")) + _nested_size(item) for key, item in value.items())
    if isinstance(value, bool):
        return 1
    return len(value if isinstance(value, bytes) else value.encode("utf-8"))


def _nested_size(value: Any) -> int:
    """A list member or map value: a DynamoType, or the {type: value} it is built from."""
    kind = getattr(value, "type", None)
    if kind is not None:
        return _value_size(kind, value.value)
    ((kind, inner),) = value.items()
    return _value_size(kind, inner)


def _item_sizes_measured_in_place() -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    def size(self: Any) -> int:
        return _value_size(self.type, self.value)

    DynamoType.size = size  # type: ignore[method-assign]


def _multipart_parts_read_once() -> None:
    """Each part is read once and the object is made in one copy; a whole-object checksum is taken over
    the object instead of a second copy of it. Same checks, same errors, same object, ETag and checksum."""
    from moto.s3 import models
    from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
    from moto.s3.utils import compute_checksum

    global moto_multipart_complete
    moto_multipart_complete = models.FakeMultipart.complete

    def complete(self: Any, body: Any) -> tuple[bytes, str, tuple[str, str, int] | None]:
        checksums = models.MultipartChecksumBuilder(
            self.metadata.get("x-amz-checksum-algorithm"), self.metadata.get("x-amz-checksum-type")
        )
        composite = checksums.checksum_type == "COMPOSITE"
        parts = []
        md5s = bytearray()
        last = None
        for number, etag in body:
            part = self.parts.get(number)
            if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
                raise InvalidPart()
            if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
                raise EntityTooSmall()
            md5s.extend(bytes.fromhex(part.etag.replace('"', "")))
            parts.append(part)
            last = part
        if not parts:
            raise MalformedXML
        values = [part.value for part in parts]
        whole = b"".join(values)
        if composite:
            for value in values:
                checksums.addPart(value)
        del values
        if composite:
            checksum = checksums.build()
        else:
            algorithm = checksums.checksum_algorithm
            checksum = (checksums.checksum_type, compute_checksum(whole, algorithm).decode(), 1)
        return whole, f"{models.md5_hash(bytes(md5s)).hexdigest()}-{len(parts)}", checksum

    models.FakeMultipart.complete = complete  # type: ignore[method-assign]


# A plain single range ("bytes=first-" or "bytes=first-last", first <= last): the one kind taken apart here.
# Anything else (a suffix, several ranges, nonsense) goes to moto's own path, whole object and all.
_PLAIN_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class _RangeOfObject:
    """What a ranged GET's body is until moto slices it (S3Response._handle_range_header): its length is
    the object's size, and it holds the requested bytes, read while the request held the key (a later
    overwrite of the object cannot change them)."""

    def __init__(self, size: int, start: int, data: bytes) -> None:
        self._size, self._start, self._data = size, start, data

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, span: slice) -> bytes:
        start, stop, _ = span.indices(self._size)
        if not self._start <= start <= stop <= self._start + len(self._data):
            raise LookupError(f"bytes {start}-{stop} of a body holding {self._start}-{self._start + len(self._data)}")
        return self._data[start - self._start : stop - self._start]


def _ranged_gets_read_only_their_range() -> None:
    from moto.s3 import models, responses

    whole_value: Any = vars(models.FakeKey)["value"]  # the property itself
    get_object = responses.S3Response.get_object
    ranged = threading.local()

    def value(self: Any) -> Any:
        span: tuple[int, int | None] | None = getattr(ranged, "span", None)
        if span is None:
            return whole_value.fget(self)
        first, last = span
        size = int(self.size)
        if first >= size:
            return _RangeOfObject(size, first, b"")  # moto answers InvalidRange from the size alone
        stop = size if last is None else min(last + 1, size)
        with self.lock:
            self._value_buffer.seek(first)
            return _RangeOfObject(size, first, bytes(self._value_buffer.read(stop - first)))

    def get_object_of_a_range(self: Any) -> Any:
        match = _PLAIN_RANGE.fullmatch(str(self.headers.get("range") or "").strip())
        span = None
        if match is not None and not self._get_int_param("partNumber"):
            first, last = int(match.group(1)), int(match.group(2)) if match.group(2) else None
            if last is None or first <= last:
                span = (first, last)
        ranged.span = span
        try:
            return get_object(self)
        finally:
            ranged.span = None

    models.FakeKey.value = property(value, whole_value.fset)  # type: ignore[assignment]
    responses.S3Response.get_object = get_object_of_a_range  # type: ignore[method-assign]
