"""The local cloud's AWS state kept across restarts: a consistent snapshot of moto's backends on disk.

What is kept is everything moto holds (tables and their items, queues and their messages with receive
counts, S3 objects and multipart uploads, schedules, secrets, Cognito pools and users, topics,
subscriptions…), plus the cloud model the provisioner made from the template, so a restart serves
the same names and ARNs without provisioning again.

- **Consistent:** a snapshot is taken while no AWS request is being served (the gate below), so the
  functions' exactly-once bookkeeping is never cut in two: a message deleted after its chunk was
  counted is either deleted and counted, or neither, in the snapshot. Postgres keeps what it committed
  after the snapshot; the load step's ledger, written in the same transaction as the rows, makes a
  chunk delivered again load nothing twice.
- **When:** every SNAPSHOT_INTERVAL_S while AWS requests are being served, and once more at a clean
  stop, after every function has stopped. A crash (SIGKILL, power loss) loses at most the requests of
  the last interval plus the time a snapshot takes to write.
- **A clean stop hands messages back:** a message still in flight at a clean stop has no consumer left;
  it is made visible again (its receive count kept), as the consumer's ChangeMessageVisibility(0)
  would, instead of waiting out its visibility timeout after the restart.
- **S3 bodies are files of their own:** each object's body is written once, when first seen, to
  `blobs/`; a snapshot stores the objects' metadata and blob names, so a 300 MB source costs its
  copy once, not at every snapshot.
- **Same template, same state:** the state is restored only when the translated template, the
  parameters, the region and the ports are those it was saved with; otherwise the cloud starts empty
  and says why (the model it would restore names resources the new template may not have).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
import threading
import time
import types
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

STATE_DIR = "state"
SNAPSHOT_INTERVAL_S = 2.0
# A snapshot waits this long for the requests in flight to finish, then tries again on the next tick,
# so a long request (a 20 s long poll nobody can end early) never stalls everyone behind the snapshot.
GATE_WAIT_S = 0.5
_BACKENDS_FILE = "aws.pickle"
_MODEL_FILE = "model.pickle"
_FINGERPRINT_FILE = "fingerprint"
_BLOBS = "blobs"
_LOAD_PASSWORD_FILE = "postgres-load-role"
_SQS_RECEIVE_TARGET = "AmazonSQS.ReceiveMessage"


class RequestGate:
    """Requests share the gate; a snapshot holds it alone. A snapshot that cannot get it within its wait
    gives up (requests then go on) rather than making every new request queue behind a slow one."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._serving = 0
        self._closed = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._closed:
                self._condition.wait()
            self._serving += 1
        try:
            yield
        finally:
            with self._condition:
                self._serving -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self, wait_s: float) -> Iterator[bool]:
        deadline = time.monotonic() + wait_s
        with self._condition:
            self._closed = True
            while self._serving and (remaining := deadline - time.monotonic()) > 0:
                self._condition.wait(remaining)
            acquired = self._serving == 0
            if not acquired:
                self._closed = False
                self._condition.notify_all()
        try:
            yield acquired
        finally:
            if acquired:
                with self._condition:
                    self._closed = False
                    self._condition.notify_all()


GATE = RequestGate()
_changes = 0  # requests served since the process started: a snapshot is due only when it moved
_gate_installed = False


def install_request_gate() -> None:
    """Every request moto serves holds the gate, except SQS receives, which hold it only while they look
    at the queue and not while they wait for a message (see _gate_sqs_receives)."""
    global _gate_installed
    if _gate_installed:
        return
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    serve = DomainDispatcherApplication.__call__

    def gated(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        global _changes
        _changes += 1
        if environ.get("HTTP_X_AMZ_TARGET") == _SQS_RECEIVE_TARGET:
            return serve(self, environ, start_response)
        with GATE.shared():
            # read the body here: a lazily produced one would be read after the gate is released
            return list(serve(self, environ, start_response))

    DomainDispatcherApplication.__call__ = gated  # type: ignore[method-assign]
    _gate_sqs_receives()
    _gate_installed = True


def _gate_sqs_receives() -> None:
    """A receive without a wait is one look at the queue: gated. moto_patches' endable long polls call it
    between their waits; a plain long poll (no poller token) waits inside moto, so it is left ungated
    and a snapshot taken meanwhile may catch it marking a message received, which is harmless: the
    message is then either received (visible again after its timeout) or not yet."""
    from moto.sqs.models import SQSBackend

    receive = SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, count: int, wait_seconds_timeout: int,
                        visibility_timeout: int, message_attribute_names: list[str] | None = None) -> Any:
        if wait_seconds_timeout:
            return receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names)
        with GATE.shared():
            return receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names)

    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def snapshot_file(data_dir: Path) -> Path:
    """Where the last snapshot of a data dir is; its mtime is when it was written, just after its quiet moment."""
    return data_dir / STATE_DIR / _BACKENDS_FILE


def fingerprint(cfn: dict[str, Any], parameters: dict[str, str], region: str, endpoints: dict[str, Any]) -> str:
    """What the saved state depends on: the stack, and the shapes of what was pickled (the cloud model's
    classes, moto's). Hashed, because the parameters carry the database password."""
    import moto

    from busline.localcloud import model

    shapes = [hashlib.sha256(Path(model.__file__).read_bytes()).hexdigest(), moto.__version__]
    text = json.dumps([cfn, parameters, region, endpoints, shapes], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Restored:
    model: Any
    snapshot_age_s: float


def _moto_backend_dicts() -> list[tuple[str, str, Any]]:
    """(module, attribute, BackendDict) of every moto service that holds something."""
    import sys

    from moto.core.base_backend import BackendDict

    found = []
    instances: list[Any] = BackendDict._instances  # type: ignore[misc]
    for backend_dict in list(instances):
        module_name = backend_dict.backend.__module__
        module = sys.modules.get(module_name)
        attribute = next((name for name, value in vars(module).items() if value is backend_dict), None) if module else None
        if attribute is None:  # moto kept it somewhere we cannot name again: it cannot be restored
            continue
        found.append((module_name, attribute, backend_dict))
    return found


class StateStore:
    """Snapshots of moto's backends (and the cloud model) under `<data dir>/state/`."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / STATE_DIR
        self.blobs = self.folder / _BLOBS
        # S3 bodies already on disk, by the object holding them (objects are immutable once stored)
        self._blob_of: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        # Blob files this process wrote or read (a stat per object inside the quiet moment cost more, under
        # load, than the pickling), and bodies taken inside the moment, written to disk just after it.
        self._on_disk: set[str] = set()
        self._taken: dict[str, bytes] = {}
        self._saved_at_change = -1
        self._lock = threading.Lock()
        self.snapshots = 0
        self.longest_quiet_s = 0.0  # the longest time requests waited for a snapshot

    # -- restore ---------------------------------------------------------------------------------

    def saved_fingerprint(self) -> str | None:
        path = self.folder / _FINGERPRINT_FILE
        return path.read_text().strip() if path.is_file() and (self.folder / _BACKENDS_FILE).is_file() else None

    def load_role_password(self) -> str:
        """The database password the saved stack's secret holds: kept (this user only) so it still opens."""
        from busline.localcloud.postgres import new_load_password

        path = self.folder / _LOAD_PASSWORD_FILE
        if path.is_file():
            return path.read_text().strip()
        self.folder.mkdir(parents=True, exist_ok=True)
        password = new_load_password()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as stream:
            stream.write(password)
        return password

    def forget(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def restore(self) -> Restored:
        """Put the saved backends into this process's moto (call before it serves anything)."""
        import importlib

        backends_path = self.folder / _BACKENDS_FILE
        age = time.time() - backends_path.stat().st_mtime
        with backends_path.open("rb") as stream:
            saved: list[tuple[str, str, dict[str, dict[str, Any]]]] = _Unpickler(stream, self).load()
        for module_name, attribute, accounts in saved:
            live = getattr(importlib.import_module(module_name), attribute)
            for account_id, regions in accounts.items():
                account = live[account_id]
                for region, backend in regions.items():
                    dict.__setitem__(account, region, backend)
        model_path = self.folder / _MODEL_FILE
        model = pickle.loads(model_path.read_bytes()) if model_path.is_file() else None
        return Restored(model, age)

    # -- save ------------------------------------------------------------------------------------

    def save_model(self, model: Any, fingerprint_text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_atomically(self.folder / _MODEL_FILE, pickle.dumps(model))
        self._write_atomically(self.folder / _FINGERPRINT_FILE, fingerprint_text.encode())

    def snapshot_if_changed(self) -> bool:
        if _changes == self._saved_at_change:
            return False
        return self.snapshot()

    def snapshot(self, hand_back_messages: bool = False) -> bool:
        """Save every backend, at one instant; False when requests in flight kept the gate busy."""
        with self._lock:
            self.blobs.mkdir(parents=True, exist_ok=True)
            self._write_new_bodies()
            return self._snapshot(hand_back_messages)

    def _write_new_bodies(self) -> None:
        """Copy the bodies of objects stored since the last snapshot while requests go on: a body never
        changes once stored (a PUT makes a new object), and each copy holds the object's own lock, as moto's
        reads do. Only what appears meanwhile is copied inside the snapshot's quiet moment, so a 300 MB
        upload does not stop every request for the time its copy takes."""
        from moto.s3.models import s3_backends

        backends: list[Any] = [backend for _account, _region, backend in s3_backends.iter_backends()]
        try:
            objects = [
                fake_key
                for backend in backends
                for bucket in list(backend.buckets.values())
                for fake_key in [
                    *(version for name in list(bucket.keys.keys()) for version in bucket.keys.getlist(name, [])),
                    *(part for upload in list(bucket.multiparts.values()) for part in list(upload.parts.values())),
                ]
            ]
        except RuntimeError:  # a bucket changed while listed: whatever was missed is copied in the snapshot
            return
        for fake_key in objects:
            if fake_key not in self._blob_of:
                self._copy_body(fake_key)

    def _snapshot(self, hand_back_messages: bool) -> bool:
        with GATE.exclusive(GATE_WAIT_S) as acquired:
            if not acquired:
                return False
            quiet_since = time.monotonic()
            changes = _changes
            if hand_back_messages:
                _make_in_flight_messages_visible()
            saved = [
                (module_name, attribute,
                 {account_id: dict(account) for account_id, account in backend_dict.items()})
                for module_name, attribute, backend_dict in _moto_backend_dicts()
            ]
            self._referenced: set[str] = set()
            # pickled to memory (S3 bodies are files already): writing and syncing the file need no quiet moment
            pickled = io.BytesIO()
            _Pickler(pickled, self).dump(saved)
            self._saved_at_change = changes
            referenced = self._referenced
            self.snapshots += 1
            self.longest_quiet_s = max(self.longest_quiet_s, time.monotonic() - quiet_since)
        taken, self._taken = self._taken, {}
        for name, body in taken.items():  # before the snapshot that names them replaces the previous one
            self._write_blob(name, body)
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".aws-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(pickled.getbuffer())
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.folder / _BACKENDS_FILE)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        for blob in self.blobs.iterdir():  # bodies of objects deleted since: nothing names them any more
            if blob.name not in referenced and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)
                self._on_disk.discard(blob.name)
        return True

    # -- S3 bodies -------------------------------------------------------------------------------

    def blob_name(self, fake_key: Any) -> str:
        """The blob of an object being pickled (inside the quiet moment): a body stored since the copies
        made before the moment is taken into memory now and written to disk right after the moment."""
        name = self._blob_of.get(fake_key)
        if name is None or (name not in self._on_disk and name not in self._taken):
            name = uuid.uuid4().hex
            body = io.BytesIO()
            self._read_body(fake_key, body)
            self._taken[name] = body.getvalue()
            self._blob_of[fake_key] = name
        self._referenced.add(name)
        return name

    def _copy_body(self, fake_key: Any) -> str:
        name = uuid.uuid4().hex
        temporary = self.blobs / f".{name}.tmp"
        with temporary.open("wb") as stream:
            self._read_body(fake_key, stream)
        os.replace(temporary, self.blobs / name)
        self._on_disk.add(name)
        self._blob_of[fake_key] = name
        return name

    @staticmethod
    def _read_body(fake_key: Any, into: Any) -> None:
        with fake_key.lock:
            buffer = fake_key._value_buffer
            # moto closes the body of an object it deleted or replaced; one still referenced (by an
            # upload's parts, say) keeps no bytes, as moto's own __getstate__ does
            if not buffer.closed:
                buffer.seek(0)
                shutil.copyfileobj(buffer, into, 1 << 20)

    def _write_blob(self, name: str, body: bytes) -> None:
        temporary = self.blobs / f".{name}.tmp"
        temporary.write_bytes(body)
        os.replace(temporary, self.blobs / name)
        self._on_disk.add(name)

    def read_blob_into(self, name: str, fake_key: Any) -> None:
        with (self.blobs / name).open("rb") as stream:
            shutil.copyfileobj(stream, fake_key._value_buffer, 1 << 20)
        self._blob_of[fake_key] = name
        self._on_disk.add(name)

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        # the model holds the stack's parameters, the database URL among them: this user only
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)


def _make_in_flight_messages_visible() -> None:
    from moto.sqs.models import sqs_backends

    backend: Any
    for _account, _region, backend in sqs_backends.iter_backends():
        for queue in backend.queues.values():
            for message in queue._messages:
                if not message.visible:
                    message.change_visibility(0)
            queue.pending_messages.clear()


# -- pickling what plain pickle refuses -------------------------------------------------------------

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _new_lock(kind: str) -> Any:
    return threading.RLock() if kind == "rlock" else threading.Lock()


def _new_condition() -> threading.Condition:
    return threading.Condition()


def _new_event() -> threading.Event:
    return threading.Event()


def _empty_defaultdict(cls: type[defaultdict[Any, Any]], factory: Any) -> defaultdict[Any, Any]:
    made = cls.__new__(cls)
    defaultdict.__init__(made, factory)
    return made


def _with_attributes(cls: Any, attributes: dict[str, Any]) -> Any:
    made = cls.__new__(cls)
    made.__dict__.update(attributes)
    return made


def _private_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)


def _public_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem)


_PLAIN_TYPES: set[type] = set()


class _Pickler(cloudpickle.CloudPickler):
    def __init__(self, stream: Any, store: StateStore) -> None:
        super().__init__(stream, protocol=pickle.HIGHEST_PROTOCOL)  # lambdas and local classes by value
        self._store = store
        from cryptography.hazmat.primitives.asymmetric import types as key_types
        from moto.s3.models import FakeKey

        self._fake_key = FakeKey
        from moto.dynamodbstreams.models import DynamoDBStreamsBackend

        self._streams_backend = DynamoDBStreamsBackend
        # Cognito's token-signing keys and KMS keys: the same key after a restart, so tokens stay valid
        self._private_keys = key_types.PrivateKeyTypes.__args__  # type: ignore[attr-defined]
        self._public_keys = key_types.PublicKeyTypes.__args__  # type: ignore[attr-defined]

    def reducer_override(self, obj: Any) -> Any:
        # Called for nearly every object (tens of thousands in a stack with tasks): the types that need
        # nothing special, which the checks below and cloudpickle's decide by type alone, are remembered.
        kind = type(obj)
        if kind in _PLAIN_TYPES:
            return NotImplemented
        reduced = self._reduce(obj)
        if reduced is NotImplemented and not issubclass(kind, type) and kind is not types.FunctionType:
            _PLAIN_TYPES.add(kind)
        return reduced

    def _reduce(self, obj: Any) -> Any:
        # Locks and conditions guard a running process: a restored one starts with fresh, free ones.
        if isinstance(obj, threading.Condition):
            return _new_condition, ()
        if isinstance(obj, threading.Event):
            return _new_event, ()
        if isinstance(obj, _LOCK_TYPES):
            return _new_lock, ("rlock" if isinstance(obj, type(threading.RLock())) else "lock",)
        if isinstance(obj, self._private_keys):
            from cryptography.hazmat.primitives import serialization as pem

            return _private_key, (obj.private_bytes(
                pem.Encoding.PEM, pem.PrivateFormat.PKCS8, pem.NoEncryption()),)
        if isinstance(obj, self._public_keys):
            from cryptography.hazmat.primitives import serialization as pem

            return _public_key, (obj.public_bytes(pem.Encoding.PEM, pem.PublicFormat.SubjectPublicKeyInfo),)
        if isinstance(obj, defaultdict) and type(obj) is not defaultdict:
            # defaultdict pickles as cls(factory), which a subclass with its own __init__ (moto's SSM
            # ParameterDict) refuses: make it empty, then give it its attributes and items
            return _empty_defaultdict, (type(obj), obj.default_factory), dict(vars(obj)), None, iter(obj.items())
        if isinstance(obj, self._fake_key):
            state = {k: v for k, v in obj.__dict__.items() if k not in ("_value_buffer", "lock")}
            return _s3_object_placeholder, (self._store.blob_name(obj), state)
        if isinstance(obj, self._streams_backend):
            # Shard iterators live 15 minutes and a restarted cloud's readers take new ones; an idle reader
            # leaves one a second, which every snapshot would pickle inside its quiet moment.
            return _with_attributes, (type(obj), {**vars(obj), "shard_iterators": {}})
        return super().reducer_override(obj)


@dataclass(frozen=True)
class _S3Object:
    blob: str
    state: dict[str, Any]


def _s3_object_placeholder(blob: str, state: dict[str, Any]) -> _S3Object:
    return _S3Object(blob, state)


class _Unpickler(pickle.Unpickler):
    """Turns the S3 placeholders back into moto's objects, their bodies read from their blob."""

    def __init__(self, stream: Any, store: StateStore) -> None:
        super().__init__(stream)
        self._store = store

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name == "_s3_object_placeholder":
            return self._s3_object
        return super().find_class(module, name)

    def _s3_object(self, blob: str, state: dict[str, Any]) -> Any:
        from moto.s3.models import FakeKey

        fake_key: Any = FakeKey.__new__(FakeKey)
        fake_key.__dict__.update(state)
        # the object owns its body for its lifetime, as in moto (which closes it when the object goes)
        fake_key._value_buffer = tempfile.SpooledTemporaryFile(max_size=fake_key._max_buffer_size)  # noqa: SIM115
        fake_key.lock = threading.Lock()
        self._store.read_blob_into(blob, fake_key)
        return fake_key


class StateKeeper:
    """Takes a snapshot every SNAPSHOT_INTERVAL_S while requests come in, and a last one at stop()."""

    def __init__(self, store: StateStore, interval_s: float = SNAPSHOT_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state keeper", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.store.snapshot_if_changed()
                self.last_error = None
            except Exception as exc:  # moto changed something mid-pickle (an ungated long poll): next tick
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:  # once per kind, not every tick
                    from busline.localcloud.runtime import console_line

                    console_line(f"the AWS state could not be saved (trying again): {error}")
                self.last_error = error

    def stop(self) -> None:
        """The clean stop's snapshot: every function has stopped by now, so nothing is in flight."""
        self._stopping.set()
        self._thread.join(timeout=30)
        for _attempt in range(20):
            with contextlib.suppress(RuntimeError):  # a request still finishing mutated a dict: again
                if self.store.snapshot(hand_back_messages=True):
                    from busline.localcloud.runtime import console_line

                    console_line(f"AWS state saved in {self.store.folder} ({self.store.snapshots} snapshots this "
                                 f"run; requests waited at most {self.store.longest_quiet_s * 1000:.0f} ms for one)")
                    return
        raise RuntimeError("could not take the last snapshot: requests kept arriving")
