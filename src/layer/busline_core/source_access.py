"""Which sources a task may read: the S3 tenancy rule for sources and joins, in one place, and the
submit-time half of safe_http.py's address rule for http(s) ones.

An `s3://` source or join of a task may name only
  - the owner's own uploads:   s3://<data bucket>/uploads/<owner>/…  (what `POST /uploads` hands out),
  - the shared read-only data: s3://<data bucket>/shared/…          (the demo data is there),
  - any object of a bucket the operator lists (template parameter ReadableBuckets).
Anything else, another owner's uploads, the pipeline's own `tasks/` chunks, any other bucket, is an
InvalidTask (400) naming the field, raised before the task is recorded. The functions that read
sources have an IAM policy granting the same list (template.yaml), so a hole here is not a hole there.

An `https://` (or `http://`) source or join is judged by safe_http.url_refusal, with the stack's
AllowLoopbackHttpSources: what it refuses without DNS (plain http on a deployed stack, a private or
loopback address, credentials in the URL) is an InvalidTask naming the field too; a name is resolved
and checked when it is read.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidTask
from .readers import s3_location
from .safe_http import url_refusal
from .spec import TaskSpec

UPLOADS_PREFIX = "uploads/"
SHARED_PREFIX = "shared/"

# Cognito subs (UUIDs), app client ids and "local-user" all match, so their prefixes read as they are.
_PLAIN_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def owner_key_segment(owner: str) -> str:
    """The one key segment that stands for `owner` under uploads/.

    An owner outside the plain pattern is base64url-encoded behind a '~': no '/' or '.' can reach the
    key, so no owner (say "a/../b") can name a prefix that is not its own, and since a plain owner never
    starts with '~' two owners never share a segment.
    """
    if _PLAIN_OWNER.fullmatch(owner):
        return owner
    return "~" + base64.urlsafe_b64encode(owner.encode("utf-8")).decode("ascii").rstrip("=")


def upload_prefix(owner: str) -> str:
    """`uploads/<owner>/`: where the owner's uploads go, and the only uploads it may read."""
    return f"{UPLOADS_PREFIX}{owner_key_segment(owner)}/"


def parse_bucket_list(text: str) -> tuple[str, ...]:
    """The READABLE_BUCKETS setting ("a,b", blanks ignored) as bucket names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class SourceAccess:
    data_bucket: str
    readable_buckets: frozenset[str] = frozenset()
    allow_loopback_http: bool = False

    @classmethod
    def of(
        cls, data_bucket: str, readable_buckets: Iterable[str] = (), *, allow_loopback_http: bool = False
    ) -> SourceAccess:
        # Listing the data bucket itself must not open it whole: its tasks/ and other owners' uploads
        # stay behind the prefix rule whatever the operator lists.
        return cls(data_bucket, frozenset(readable_buckets) - {data_bucket}, allow_loopback_http)

    def check(self, spec: TaskSpec, owner: str) -> None:
        """Raise InvalidTask naming every source or join URI that `owner` may not read."""
        named = [("source.uri", spec.source.uri)]
        named += [(f"joins[{index}].uri", join.uri) for index, join in enumerate(spec.joins)]
        errors = []
        for field, uri in named:
            reason = self.refusal(uri, owner)
            if reason is not None:
                errors.append({"field": field, "message": reason})
        if errors:
            summary = "; ".join(f"{entry['field']}: {entry['message']}" for entry in errors)
            raise InvalidTask(f"invalid task: {summary}", errors=errors)

    def refusal(self, uri: str, owner: str) -> str | None:
        """Why `owner` may not read `uri`, or None when it may."""
        location = s3_location(uri)
        if location is None:
            return url_refusal(uri, allow_loopback_http=self.allow_loopback_http)
        bucket, key = location
        if bucket in self.readable_buckets:
            return None
        if bucket != self.data_bucket:
            return f"bucket '{bucket}' is not readable by tasks; {self._what_is_readable(owner)}"
        # S3 keys are flat, but a '..' or '//' that some client or proxy normalises on the way could
        # turn an allowed-looking key into another one: such keys are never what an upload is called.
        if any(segment in ("", ".", "..") for segment in key.split("/")):
            return f"the key '{key}' has an empty, '.' or '..' part; {self._what_is_readable(owner)}"
        if key.startswith(SHARED_PREFIX) or key.startswith(upload_prefix(owner)):
            return None
        if key.startswith(UPLOADS_PREFIX):
            return f"'{uri}' is another owner's upload; {self._what_is_readable(owner)}"
        return f"'{uri}' is not readable by tasks; {self._what_is_readable(owner)}"

    def _what_is_readable(self, owner: str) -> str:
        allowed = f"a task may read s3://{self.data_bucket}/{upload_prefix(owner)}… (your uploads, see POST /uploads)"
        allowed += f" and s3://{self.data_bucket}/{SHARED_PREFIX}…"
        if self.readable_buckets:
            allowed += ", and any object in " + ", ".join(sorted(self.readable_buckets))
        return allowed
