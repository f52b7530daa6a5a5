"""Files dropped in the inbox start tasks: an object created at `inbox/<owner>/<pipeline>/<path>` in the stack's
InboxBucket starts a task of that named pipeline (pipelines.py) for that owner, with the file as its source.

- **Once per object version.** The task id is derived from the bucket, the key and the version id (the S3
  sequencer where the bucket does not version), and the task is submitted with task_api.submit_once, so a
  repeated S3 delivery or a Lambda retry finds it recorded and starts nothing more. Another PUT of the key is
  another version, and another task.
- **The task reads a copy of that version**, at `uploads/<owner>/inbox/<task id>/<file name>` in the data
  bucket: the owner's own uploads, the place source_access.py lets its tasks read, so the S3 tenancy rule and
  the steps' IAM policies stay as they are, and a later PUT of the key cannot change what a task reads.
- **Who drops is who runs.** `<owner>` is the owner's id as its uploads spell it (source_access's key segment);
  whoever may put objects under `inbox/<owner>/` acts as that owner, so IAM on the inbox bucket says who may.
- **Never a poison loop.** A key naming no owner, pipeline or file, an unknown pipeline, a file the pipeline's
  spec refuses, a version gone before it was copied: logged and dropped, since retrying cannot mend them.
  Anything else (DynamoDB, EventBridge, S3 unavailable) is raised: Lambda retries the event twice, then the
  function's dead-letter queue keeps it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from aws_lambda_powertools import Logger

from . import correlation, task_api
from .contracts import PipelineRequest, TaskSnapshot
from .deps import SubmitDeps, build_scheduled_run_deps
from .errors import BuslineError, InvalidTask
from .inbox_store import InboxStore
from .pipelines import pipeline_named
from .settings import ScheduledRunSettings
from .source_access import owner_key_segment, upload_prefix

logger = Logger(child=True)

INBOX_PREFIX = "inbox/"
# Task ids of dropped files: uuid5 in this namespace of "<bucket>|<key>|<version>".
_DROP_NAMESPACE = uuid.UUID("0f6f3f0e-8a4d-4c8e-b8f5-6d1e2a7c9b31")


@dataclass(frozen=True)
class Drop:
    """One object S3 reports created in the inbox bucket."""

    bucket: str
    key: str  # as stored: the event's URL-encoded key, decoded
    version_id: str | None  # None where the bucket does not version
    sequencer: str
    request_id: str = ""  # the request that created it: the task's correlation id

    @property
    def task_id(self) -> str:
        version = self.version_id if self.version_id is not None else f"sequencer:{self.sequencer}"
        return str(uuid.uuid5(_DROP_NAMESPACE, f"{self.bucket}|{self.key}|{version}"))


@dataclass(frozen=True)
class DropAddress:
    """What a key under inbox/ says: whose task, which pipeline, and the file's own name."""

    owner: str
    pipeline: str
    file_name: str


@dataclass(frozen=True)
class InboxDeps:
    submit: SubmitDeps
    store: InboxStore


def build_inbox_deps(settings: ScheduledRunSettings) -> InboxDeps:
    """The inbox submits as the scheduled runs do (same settings, same SubmitDeps), and copies the drop."""
    return InboxDeps(submit=build_scheduled_run_deps(settings), store=InboxStore.for_bucket(settings.data_bucket))


def _refused(key: str, message: str) -> InvalidTask:
    return InvalidTask(f"inbox key {key!r}: {message}", errors=[{"field": "key", "message": message}])


def owner_of_segment(segment: str) -> str | None:
    """The owner a key segment stands for (source_access.owner_key_segment, read back), None if it stands for
    none: only the one spelling an owner's uploads use is accepted, so no two segments name one owner."""
    owner = segment
    if segment.startswith("~"):
        try:
            owner = base64.urlsafe_b64decode(segment[1:] + "=" * (-len(segment[1:]) % 4)).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
    return owner if owner and owner_key_segment(owner) == segment else None


def address_of(key: str) -> DropAddress:
    """`inbox/<owner>/<pipeline>/<path>`'s owner, pipeline and file name, or an InvalidTask naming the key."""
    if not key.startswith(INBOX_PREFIX):
        raise _refused(key, f"is not under {INBOX_PREFIX}")
    parts = key[len(INBOX_PREFIX):].split("/")
    if len(parts) < 3:
        raise _refused(key, "must be inbox/<owner>/<pipeline>/<file>")
    owner = owner_of_segment(parts[0])
    if owner is None:
        raise _refused(key, f"{parts[0]!r} is not an owner's id as its uploads spell it")
    if not parts[1]:
        raise _refused(key, "names no pipeline")
    if not parts[-1]:
        raise _refused(key, "names a folder, not a file")
    return DropAddress(owner=owner, pipeline=parts[1], file_name=parts[-1])


def start_task(drop: Drop, deps: InboxDeps) -> TaskSnapshot:
    """The task of one dropped file, submitted once whatever the number of deliveries."""
    address = address_of(drop.key)
    pipeline_named(address.pipeline)  # an unknown pipeline is refused before anything is copied
    staged_key = f"{upload_prefix(address.owner)}inbox/{drop.task_id}/{address.file_name}"
    source_uri = deps.store.copy_to_uploads(drop.bucket, drop.key, drop.version_id, staged_key)
    return task_api.submit_once(
        PipelineRequest(pipeline=address.pipeline), address.owner, deps.submit,
        task_id=drop.task_id, source_uri=source_uri,
    )  # fmt: skip


def start_tasks(drops: Iterable[Drop], deps: InboxDeps) -> list[dict[str, str]]:
    """Each drop's task id, or why it was refused; raises only what a retry may mend."""
    outcomes: list[dict[str, str]] = []
    for drop in drops:
        correlation.bind(drop.request_id or drop.task_id)
        try:
            snapshot = start_task(drop, deps)
        except BuslineError as error:
            if error.retryable:
                raise
            logger.warning("inbox drop refused", extra={"key": drop.key, "reason": error.message})
            outcomes.append({"key": drop.key, "refused": error.message})
            continue
        logger.info("inbox drop started a task", extra={"key": drop.key, "task_id": snapshot.taskId})
        outcomes.append({"key": drop.key, "taskId": snapshot.taskId})
    return outcomes
