"""Every limit Busline puts on what a caller sends, in one place; the README's "Limits" table lists them.

A request over a limit is refused before anything is recorded, with the field and the limit named. The
modules that enforce them import them from here; this module imports nothing, so any module may.
"""

from __future__ import annotations

from typing import Final

# --- a request body (any route) ------------------------------------------------------------------

# Twice the stored spec's limit: room for whitespace and \u escapes a stored spec drops, while a body
# is never read past what a spec could need (API Gateway itself allows 10 MB).
MAX_BODY_BYTES: Final = 128 * 1024
# A spec nests 5 levels (joins -> columns -> column); a deeper body is a mistake or an attack, and
# bounding it keeps every parser far from Python's recursion limit.
MAX_BODY_DEPTH: Final = 16
# A bigint has 19 digits and a double 17 significant ones; Python refuses to parse an int past 4,300.
MAX_NUMBER_LENGTH: Final = 100

# --- a task spec -----------------------------------------------------------------------------------

# The task item stores the spec (DynamoDB items are at most 400 KB); 64 KiB leaves the chunk sets and
# counters most of the item, and is about 25 times the flights spec.
MAX_SPEC_BYTES: Final = 64 * 1024
# Rows per chunk: small enough that a chunk fits a Lambda's memory and time, big enough that the
# per-chunk AWS calls stay a small share of the work.
MIN_CHUNK_ROWS: Final = 100
MAX_CHUNK_ROWS: Final = 1_000_000
# Output columns (the spec's plus every join's): a row of 500 bigints still fits a Postgres page
# (8 KB; the hard cap is 1,600 columns), and each column costs every row a cast.
MAX_COLUMNS: Final = 500
# Postgres indexes at most 32 columns (INDEX_MAX_KEYS), so a longer primary key would fail every load.
MAX_KEY_COLUMNS: Final = 32
# A row's key values together, as UTF-8 text: a btree index row holds at most 2,704 bytes (a third of a
# page), so a longer key fails its load; transform rejects the row instead. (Postgres may compress a long
# repetitive key under the limit; a rule that cannot know that must stop short of it.)
MAX_KEY_BYTES: Final = 2000
# Each join's reference table is held in every transform container's memory.
MAX_JOINS: Final = 10
# Every filter runs on every row.
MAX_FILTERS: Final = 50
# An `in` / `not_in` list is cast to the column type at submit and kept in every transform's memory.
MAX_IN_VALUES: Final = 1000
# A null marker is a short token (NA, NULL, \N, -); every value read is looked up among them.
MAX_NULL_MARKERS: Final = 20
MAX_NULL_MARKER_LENGTH: Final = 64
# Postgres truncates identifiers to 63 bytes (NAMEDATALEN - 1); a longer name would silently change.
MAX_IDENTIFIER_LENGTH: Final = 63
# A column name of a reference file (a CSV header, a JSON key): longer is not a name.
MAX_SOURCE_COLUMN_NAME_LENGTH: Final = 255
# An S3 key is at most 1,024 bytes and most HTTP servers refuse URLs past about 2,000 characters.
MAX_URI_LENGTH: Final = 2048
# `source.limit` is a row count: it must fit a bigint, as every count does (and Python's islice).
MAX_ROW_COUNT: Final = 2**63 - 1

# --- other fields and parameters ------------------------------------------------------------------

# Task ids are 36-character UUIDs; DynamoDB answers a key over 2,048 bytes with an error, not a miss.
MAX_TASK_ID_LENGTH: Final = 64
# A correlation id a client sends (X-Correlation-Id): a UUID or a trace id fits with room to spare, and
# it is repeated on every log line of the task.
MAX_CORRELATION_ID_LENGTH: Final = 128
# A pipeline name is a short word (flights).
MAX_PIPELINE_NAME_LENGTH: Final = 64
# An uploaded file's name becomes the last segment of an S3 key (at most 1,024 bytes with the prefix).
MAX_FILE_NAME_LENGTH: Final = 200
# A media type's type and subtype are at most 127 characters each (RFC 6838); ours are far shorter.
MAX_CONTENT_TYPE_LENGTH: Final = 127
# 1,000 task snapshots (about 1 KB each) fit one DynamoDB query (1 MB) and Lambda's 6 MB response.
MAX_PAGE_SIZE: Final = 1000
# GET /tasks/{id}/rejects/summary reads at most this many kept rejects (a few MB of S3 objects, well inside
# the API's 29 s); past it the summary says it is partial.
MAX_SUMMARIZED_REJECTS: Final = 100_000
# The most frequent values shown per reason group.
REJECT_SUMMARY_VALUES: Final = 5
# --- schedules -------------------------------------------------------------------------------------

# How many schedules one owner may keep: each lists with one GetSchedule, so GET /schedules stays quick.
MAX_SCHEDULES_PER_OWNER: Final = 50
# EventBridge Scheduler's limit on a target's Input (characters); a schedule's pipeline and params ride in it.
MAX_SCHEDULE_INPUT_CHARS: Final = 8192
# The firings GET /schedules shows ahead of now.
SCHEDULE_NEXT_RUNS: Final = 3
# Schedule ids are 12 hex characters; longer is refused unread.
MAX_SCHEDULE_ID_LENGTH: Final = 32

# Far above any page token we issue; a longer one is refused unread.
MAX_TOKEN_LENGTH: Final = 2048

# --- a source (checked while a task runs: past one, the task fails for good, naming the limit) ------

# Bytes read from the source as stored (before decompression). The extract Lambda streams at roughly
# 20-60 MB/s and must finish inside its 15-minute timeout; a .zip is also spooled to /tmp (10 GB max).
MAX_SOURCE_BYTES: Final = 8 * 1024**3
# Bytes after decompression (.gz, .zip): what the readers actually parse.
MAX_DECOMPRESSED_BYTES: Final = 32 * 1024**3
# Text compresses 3-15 times with gzip; a ratio far beyond that is a bomb (zeros compress 1000x). The
# ratio is judged only past a grace, so a tiny file of repeated values is not mistaken for one.
MAX_DECOMPRESSION_RATIO: Final = 200
DECOMPRESSION_RATIO_GRACE_BYTES: Final = 16 * 1024**2
# Characters of one record (a CSV line or quoted multi-line record, an ndjson line, a JSON array item,
# line ending included): a chunk holds chunkRows of them in memory; characters, because the bound is
# checked on decoded text (a character is 1 to 4 bytes of UTF-8).
MAX_RECORD_LENGTH: Final = 1024**2
# Nesting of a JSON record (an object is 1): a nested value is kept as JSON text in a string column,
# and Python's decoder would otherwise stop only at its recursion limit.
MAX_SOURCE_JSON_DEPTH: Final = 32
# Fields of one CSV record / keys of one JSON record: Postgres tables hold at most 1,600 columns, and
# a source far wider than the spec's 500 output columns is not a table.
MAX_SOURCE_FIELDS: Final = 4096

# --- a task's size ---------------------------------------------------------------------------------

# Chunks of one task. Fan-in keeps each phase's counted chunks (and the failing ones) in the task's one
# DynamoDB item; at this limit, with the 64 KiB spec and in the worst case, the item is 211 KB of
# DynamoDB's 400 KB (tests/unit/control/test_task_item_bound.py measures each worst case).
MAX_CHUNKS_PER_TASK: Final = 10_000
# Pieces of work a task shows as "retrying" at once (task_state.RetryScheduled): each notice lives in the
# task's one DynamoDB item, so the item stays under 400 KB (tests/unit/control/test_task_item_bound.py)
# even when every chunk of a large task is failing; past it, the others still retry, unnamed.
MAX_RETRY_NOTICES: Final = 50
# Rows of one task: 10,000 chunks of 100,000 rows (the default 20,000-row chunks reach the chunk limit
# at 200 million rows first). Past it, split the source.
MAX_ROWS_PER_TASK: Final = 1_000_000_000
# Rejected rows kept (with their data, for GET /tasks/{id}/rejects) per chunk; the rest are counted in
# `counts.rejected` but not stored, so a source of garbage cannot fill the bucket.
MAX_REJECTS_KEPT_PER_CHUNK: Final = 1000

# --- dashboards ------------------------------------------------------------------------------------

# Rows one dashboard query may return: a chart of more points is unreadable, and the API's answer stays
# far below API Gateway's 10 MB. A query returning more is cut here and says it was truncated.
MAX_DASHBOARD_ROWS: Final = 1000
# How long one dashboard query may run (Postgres statement_timeout): a dashboard is read while a person
# waits, and the API's own timeout is 29 s for all of a pipeline's queries together.
DASHBOARD_STATEMENT_TIMEOUT_MS: Final = 5000
