#!/usr/bin/env python3
"""The 13 rules of ../shared/spec/rules.md as DuckDB SQL over one JSON Lines file.

A reference rendering for benches/duckdb.rs: it reads the same file that
`aiwatch scan` reads, as one batch (the watermark at the end is the largest
event time), and prints one JSON object per violation:

    python3 benches/duckdb/rules.py --policy POLICY.toml [--lateness 60] EVENTS.jsonl[.gz] > violations.jsonl
    {"rule_id": "vendor.unapproved", "subject": "ev-..."}

Its own wall time (from start to the last line written) goes to standard error.

What counts as an event follows events.md ("Dead letters") and aiwatch's
decoder: a line that is not JSON or not a JSON object; `event_id`,
`event_type` or `time` absent, null, not a string or empty; `time` not RFC
3339 with an offset; a field named in events.md with the wrong JSON type (a
string for an integer, `12.0` for an integer, an array holding a non-string,
...), or named twice in one object; and, as aiwatch's decoder limits at
their defaults (docs/semantics.md, "Bad input"),
a time outside [1970, 2200), a record over 8 MiB, a string field or list
entry over 1024 bytes, a list over 256 entries: all are excluded. Blank lines
are skipped. Duplicates (same `event_id`) keep the first line. Times are
compared as UTC nanoseconds, so fractions of up to 9 digits count exactly.

Where aiwatch's state forgets after its horizons (a request id reused, or a
deletion seen, longer before than the longest obligation), this script keeps
to rules.md: the earliest request or store of a key counts, a fulfilment
counts however early it came. Generated streams never reach those horizons.

DuckDB's JSON parser is more lenient than serde_json in a few ways this script
does not undo: it accepts trailing commas (`{"a": 1,}`), `NaN`/`Infinity`, and
numbers that overflow a double in fields events.md does not name. The aiwatch
generator writes none of those. Needs Python 3.11 (tomllib) or `tomli`.

`--lateness` is accepted so the command line matches `aiwatch scan`; a batch
reading does not need it. When the input's disorder stays within it (events
at most LATENESS seconds behind the newest one before them), the streaming
engine's answer equals this batch answer (rules.md); `--report-late` counts
the events for which that does not hold.
"""

import argparse
import json
import sys
import time

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

KINDS = ("prompt", "output", "embedding", "transcript", "log")
# aiwatch's decoder limits (src/decode.rs, docs/semantics.md "Bad input"), at their defaults.
MAX_EVENT_BYTES = 8 << 20
MAX_FIELD_BYTES = 1024
MAX_LIST_ITEMS = 256
MIN_EVENT_TIME_NS = 0  # 1970-01-01T00:00:00Z
MAX_EVENT_TIME_NS = 7_258_118_400 * 1_000_000_000  # 2200-01-01T00:00:00Z, excluded
CUSTOMER_CLASSES = ("customer_data", "pii", "phi", "pci")
NS = 1_000_000_000

# Every field events.md names, with its JSON type (src/decode.rs FIELD_TYPES).
FIELDS = [
    ("event_id", "str"),
    ("event_type", "str"),
    ("time", "str"),
    ("tenant_id", "str"),
    ("actor_id", "str"),
    ("environment", "str"),
    ("source", "str"),
    ("request_id", "str"),
    ("provider", "str"),
    ("model", "str"),
    ("operation", "str"),
    ("vendor_region", "str"),
    ("data_classes", "strlist"),
    ("context_tenant_ids", "strlist"),
    ("conversation_id", "str"),
    ("input_tokens", "int"),
    ("prompt_sha256", "str"),
    ("status", "str"),
    ("output_tokens", "int"),
    ("latency_ms", "num"),
    ("artifact_id", "str"),
    ("artifact_kind", "str"),
    ("storage_region", "str"),
    ("resource_type", "str"),
    ("resource", "str"),
    ("change_id", "str"),
    ("approved_by", "str"),
]
# The fields the rules read; the others are only type-checked.
USED = {
    "event_id", "event_type", "time", "tenant_id", "actor_id", "environment", "request_id", "provider",
    "vendor_region", "data_classes", "context_tenant_ids", "conversation_id", "artifact_id", "artifact_kind",
    "storage_region", "resource_type", "resource", "approved_by",
}

# RFC 3339 with an offset, as chrono's parse_from_rfc3339 reads it: `T`, `t` or a
# space between date and time, a fraction of any length (digits past 9 ignored),
# `Z`/`z` or ±HH:MM (U+2212 minus accepted). Ranges are checked in SQL.
TIME_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+\-\x{2212}][0-9]{2}:[0-5][0-9])"


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def sql_list(items):
    return "[" + ", ".join(sql_str(i) for i in items) + "]::VARCHAR[]"


def type_ok(kind, v):
    """SQL: the JSON value `v` (NULL when absent or null) has the JSON type `kind` wants.

    DuckDB writes a JSON value back minified, so its first character tells its
    type: `"` a string, `[` an array, `{` an object, a digit or `-` a number.
    """
    txt = f"{v}::VARCHAR"
    if kind == "str":  # and at most MAX_FIELD_BYTES once unescaped (escapes only shorten a string)
        return (
            f"({v} IS NULL OR (starts_with({txt}, '\"') AND "
            f"(strlen({txt}) <= {MAX_FIELD_BYTES + 2} OR strlen({v} ->> '$') <= {MAX_FIELD_BYTES})))"
        )
    if kind == "int":  # serde's i64: integers in range only; 12.0, 1e3 and 2^63 are not
        return f"({v} IS NULL OR (regexp_full_match({txt}, '-?[0-9]+') AND try_cast({txt} AS BIGINT) IS NOT NULL))"
    if kind == "num":  # serde's f64: any number a double can hold
        return f"({v} IS NULL OR (regexp_full_match({txt}, '-?[0-9].*') AND isfinite(try_cast({txt} AS DOUBLE))))"
    if kind == "strlist":
        return (
            f"({v} IS NULL OR (CASE WHEN starts_with({txt}, '[') "
            f"THEN len([x FOR x IN json_extract({v}, '$[*]') IF NOT starts_with(x::VARCHAR, '\"')]) = 0 ELSE false END))"
        )
    raise ValueError(kind)


def time_ns(ts):
    """SQL: the RFC 3339 string `ts` as UTC nanoseconds (BIGINT), NULL when it is not a valid time
    or outside the range aiwatch accepts."""
    # Fixed positions once the pattern matched: date 1-10, hour 12-13, minute 15-16,
    # second 18-19, then an optional fraction and the offset (`Z` or 6 characters).
    off_len = f"(CASE WHEN right({ts}, 1) IN ('Z', 'z') THEN 1 ELSE 6 END)"
    frac = f"(CASE WHEN substr({ts}, 20, 1) = '.' THEN try_cast(rpad(left(substr({ts}, 21, length({ts}) - 20 - {off_len}), 9), 9, '0') AS HUGEINT) ELSE 0 END)"
    off = (
        f"(CASE WHEN {off_len} = 1 THEN 0 "
        f"ELSE (CASE WHEN left(right({ts}, 6), 1) = '+' THEN 1 ELSE -1 END) "
        f"* (try_cast(substr(right({ts}, 5), 1, 2) AS INT) * 3600 + try_cast(substr(right({ts}, 5), 4, 2) AS INT) * 60) END)"
    )
    h, mi, sec = (f"try_cast(substr({ts}, {i}, 2) AS INT)" for i in (12, 15, 18))
    secs = f"((try_cast(left({ts}, 10) AS DATE) - DATE '1970-01-01')::HUGEINT * 86400 + {h} * 3600 + {mi} * 60 + {sec} - {off})"
    valid = (
        f"regexp_full_match({ts}, '{TIME_RE}') AND {h} <= 23 AND {mi} <= 59 AND {sec} <= 60 "
        f"AND ({off_len} = 1 OR try_cast(substr(right({ts}, 5), 1, 2) AS INT) <= 23)"
    )
    ns = f"({secs} * {NS} + {frac})"
    # aiwatch computes with times from 1970 up to, not including, 2200
    return f"(CASE WHEN {valid} AND {ns} >= {MIN_EVENT_TIME_NS} AND {ns} < {MAX_EVENT_TIME_NS} THEN {ns}::BIGINT END)"


def events_sql(path):
    """SQL for the table `lines` (first line of each record text) and then `ev` (valid, deduplicated events)."""
    # `time` comes out as VARCHAR: only a JSON string can look like an RFC 3339 time.
    struct = "{" + ", ".join(f'"{name}": "{"VARCHAR" if name == "time" else "JSON"}"' for name, _ in FIELDS) + "}"
    names = ", ".join(sql_str(name) for name, _ in FIELDS)
    cols, checks = [], []
    for name, kind in FIELDS:
        v = f"s.{name}"
        if name == "time":
            checks.append(f"strlen({v}) <= {MAX_FIELD_BYTES}")
            continue
        checks.append(type_ok(kind, v))
        if name not in USED:
            continue
        if kind == "str":
            cols.append(f"{v} ->> '$' AS {name}")
        else:  # absent or null = []; at most MAX_LIST_ITEMS entries of at most MAX_FIELD_BYTES
            items = f"coalesce(json_extract_string({v}, '$[*]'), []::VARCHAR[])"
            cols.append(f"{items} AS {name}")
            checks.append(f"len({items}) <= {MAX_LIST_ITEMS} AND coalesce(list_max([strlen(x) FOR x IN {items}]), 0) <= {MAX_FIELD_BYTES}")
    reader = f"read_json_objects({sql_str(path)}, format = 'newline_delimited', ignore_errors = true)"
    # Line numbers come from a scan of their own: WITH ORDINALITY makes DuckDB run
    # the whole pipeline above it on one thread. The parsing scan below runs in
    # parallel and finds each record's first line by the hash of its text
    # (identical copies share it, and identical copies are the same event).
    lines = f"""
SELECT hash(json) AS h, min(ordinality) AS line
FROM {reader} WITH ORDINALITY
WHERE json IS NOT NULL
GROUP BY h
"""
    events = f"""
WITH parsed AS (
  SELECT hash(json) AS h, json_transform(json, '{struct}') AS s, strlen(json::VARCHAR) <= {MAX_EVENT_BYTES} AS small,
         [k FOR k IN json_keys(json) IF list_contains([{names}], k)] AS named  -- a named field twice is malformed
  FROM {reader}
  WHERE json IS NOT NULL
),
staged AS MATERIALIZED (
  -- materialized: otherwise the filter below is pushed down with every column
  -- reference replaced by its expression, and json_transform runs once per field
  SELECT h,
         {" AND ".join(checks)}
           AND len(named) = len(list_distinct(named)) AND small AS typed,
         {time_ns("s.time")} AS t,
         {(chr(10) + "         ").join(c + "," for c in cols)}
  FROM parsed
)
SELECT l.line, e.* EXCLUDE (h, typed, environment), coalesce(e.environment, 'production') AS environment
FROM staged e JOIN lines l USING (h)
WHERE e.typed AND e.t IS NOT NULL AND e.event_id <> '' AND e.event_type <> ''
QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY l.line) = 1
"""
    return lines, events


RULES_SQL = """
WITH
wm AS (SELECT max(t) AS wm FROM ev),
req AS (SELECT * FROM ev WHERE event_type = 'ai.request'),
resp AS (SELECT * FROM ev WHERE event_type = 'ai.response'),
chg AS (SELECT * FROM ev WHERE event_type = 'config.change'),
stored AS (SELECT * FROM ev WHERE event_type = 'artifact.stored'),
regions AS (
  SELECT e.event_id, e.event_type, e.vendor_region, e.storage_region,
         coalesce(tp.allowed_regions, (SELECT allowed_regions FROM defaults)) AS allowed
  FROM ev e LEFT JOIN tenants tp ON tp.tenant_id = e.tenant_id
  WHERE e.tenant_id IS NOT NULL AND e.event_type IN ('ai.request', 'artifact.stored')
),
store_deadlines AS (
  SELECT s.artifact_id, s.t, s.line,
         -- saturating, as the engine's: a retention of centuries must not overflow
         least(s.t::HUGEINT + (CASE WHEN tp.tenant_id IS NOT NULL THEN rt.seconds ELSE rd.seconds END)::HUGEINT * {NS},
               9223372036854775807)::BIGINT AS deadline
  FROM stored s
  LEFT JOIN tenants tp ON tp.tenant_id = s.tenant_id
  LEFT JOIN retention_tenant rt ON rt.tenant_id = s.tenant_id AND rt.kind = s.artifact_kind
  LEFT JOIN retention_default rd ON rd.kind = s.artifact_kind
  WHERE s.artifact_id IS NOT NULL AND s.artifact_kind IS NOT NULL AND s.tenant_id IS NOT NULL
),
artifact_due AS (
  -- the earliest store that has a deadline sets it (ties: the first line)
  SELECT artifact_id, arg_min(deadline, (t, line)) AS deadline
  FROM store_deadlines WHERE deadline IS NOT NULL GROUP BY artifact_id
),
deleted AS (
  SELECT artifact_id, min(t) AS first FROM ev
  WHERE event_type = 'artifact.deleted' AND artifact_id IS NOT NULL GROUP BY artifact_id
),
request_due AS (
  SELECT request_id, min(t) + {timeout} * {NS} AS deadline FROM req WHERE request_id IS NOT NULL GROUP BY request_id
),
responded AS (
  SELECT request_id, min(t) AS first FROM resp WHERE request_id IS NOT NULL GROUP BY request_id
),
conv AS (
  SELECT conversation_id, tenant_id, t,
         lag(tenant_id) OVER w AS prev_tenant, lag(t) OVER w AS prev_t
  FROM req WHERE conversation_id IS NOT NULL AND tenant_id IS NOT NULL
  WINDOW w AS (PARTITION BY conversation_id ORDER BY t)
)
SELECT 'vendor.unapproved' AS rule_id, e.event_id AS subject
FROM req e LEFT JOIN vendors v ON v.provider = e.provider
WHERE e.provider IS NOT NULL AND (v.provider IS NULL OR NOT v.dpa_signed)
UNION ALL
SELECT 'vendor.trains_on_data', e.event_id
FROM req e JOIN vendors v ON v.provider = e.provider
WHERE v.trains_on_customer_data AND list_has_any(e.data_classes, {customer})
UNION ALL
SELECT 'vendor.data_class', e.event_id
FROM req e JOIN vendors v ON v.provider = e.provider
WHERE NOT list_has_all(v.allowed_data_classes, e.data_classes)
UNION ALL
SELECT 'vendor.region', event_id FROM regions
WHERE event_type = 'ai.request' AND vendor_region IS NOT NULL AND NOT list_contains(allowed, vendor_region)
UNION ALL
SELECT 'xtenant.context', event_id FROM req
WHERE tenant_id IS NOT NULL AND len([c FOR c IN context_tenant_ids IF c <> tenant_id]) > 0
UNION ALL
SELECT DISTINCT 'xtenant.response', p.event_id
FROM resp p JOIN req q ON q.request_id = p.request_id
WHERE q.tenant_id <> p.tenant_id AND q.t BETWEEN p.t - 3600 * {NS} AND p.t + 3600 * {NS}
UNION ALL
-- two tenants within 24 h in a conversation <=> two neighbours in time order do
SELECT DISTINCT 'xtenant.conversation', conversation_id FROM conv
WHERE prev_tenant <> tenant_id AND t - prev_t <= 86400 * {NS}
UNION ALL
SELECT 'retention.region', event_id FROM regions
WHERE event_type = 'artifact.stored' AND storage_region IS NOT NULL AND NOT list_contains(allowed, storage_region)
UNION ALL
SELECT 'retention.expired', a.artifact_id
FROM artifact_due a LEFT JOIN deleted d ON d.artifact_id = a.artifact_id
WHERE a.deadline <= (SELECT wm FROM wm) AND (d.first IS NULL OR d.first > a.deadline)
UNION ALL
SELECT 'change.unauthorized', c.event_id FROM chg c
WHERE NOT EXISTS (
  SELECT 1 FROM authorizations a
  WHERE a.actor_id = c.actor_id AND a.resource_type = c.resource_type AND a.environment = c.environment)
UNION ALL
SELECT 'change.unreviewed', event_id FROM chg
WHERE list_contains({approval}, environment) AND (approved_by IS NULL OR approved_by = '' OR approved_by = actor_id)
UNION ALL
SELECT 'logging.missing_response', r.request_id
FROM request_due r LEFT JOIN responded p ON p.request_id = r.request_id
WHERE r.deadline <= (SELECT wm FROM wm) AND (p.first IS NULL OR p.first > r.deadline)
UNION ALL
SELECT 'logging.missing_actor', event_id FROM ev
WHERE event_type IN ('ai.request', 'config.change') AND (actor_id IS NULL OR actor_id = '')
"""


def load_policy(con, path):
    """Loads the policy (policy.md) into small tables; returns the response timeout and approval list."""
    with open(path, "rb") as f:
        p = tomllib.load(f)
    con.execute("CREATE TABLE vendors (provider VARCHAR, dpa_signed BOOLEAN, trains_on_customer_data BOOLEAN, allowed_data_classes VARCHAR[])")
    rows = [
        (v["provider"], bool(v.get("dpa_signed", False)), bool(v.get("trains_on_customer_data", False)), list(v.get("allowed_data_classes", [])))
        for v in p.get("vendor", [])
    ]
    if rows:
        con.executemany("INSERT INTO vendors VALUES (?, ?, ?, ?)", rows)

    defaults = p.get("tenant_defaults", {})
    default_regions = list(defaults.get("allowed_regions", []))
    default_retention = dict(defaults.get("retention_days", {}))
    con.execute("CREATE TABLE defaults (allowed_regions VARCHAR[])")
    con.execute("INSERT INTO defaults VALUES (?)", [default_regions])
    con.execute("CREATE TABLE tenants (tenant_id VARCHAR, allowed_regions VARCHAR[])")
    con.execute("CREATE TABLE retention_default (kind VARCHAR, seconds BIGINT)")
    con.execute("CREATE TABLE retention_tenant (tenant_id VARCHAR, kind VARCHAR, seconds BIGINT)")
    rows = [(k, int(d) * 86400) for k, d in default_retention.items() if k in KINDS]
    if rows:
        con.executemany("INSERT INTO retention_default VALUES (?, ?)", rows)
    tenant_rows, retention_rows = [], []
    for t in p.get("tenant", []):
        tid = t["tenant_id"]
        tenant_rows.append((tid, list(t.get("allowed_regions", default_regions))))
        merged = {**default_retention, **t.get("retention_days", {})}  # key by key over the defaults
        retention_rows += [(tid, k, int(d) * 86400) for k, d in merged.items() if k in KINDS]
    if tenant_rows:
        con.executemany("INSERT INTO tenants VALUES (?, ?)", tenant_rows)
    if retention_rows:
        con.executemany("INSERT INTO retention_tenant VALUES (?, ?, ?)", retention_rows)

    con.execute("CREATE TABLE authorizations (actor_id VARCHAR, resource_type VARCHAR, environment VARCHAR)")
    rows = [
        (a["actor_id"], rt, env)
        for a in p.get("change_authorization", [])
        for rt in a.get("resource_types", [])
        for env in a.get("environments", [])
    ]
    if rows:
        con.executemany("INSERT INTO authorizations VALUES (?, ?, ?)", rows)

    approval = list(p.get("change_management", {}).get("approval_required_in", ["production"]))
    timeout = int(p.get("logging", {}).get("response_timeout_seconds", 300))
    return timeout, approval


def evaluate(policy_path, events_path, threads=None, memory_limit=None):
    """Runs the 13 rules; returns the connection (with table `ev`) and the sorted (rule_id, subject) pairs."""
    import duckdb  # imported here so --help works without it

    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = false")  # order comes from `line`; saves memory
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    timeout, approval = load_policy(con, policy_path)
    lines, events = events_sql(events_path)
    con.execute("CREATE TEMP TABLE lines AS " + lines)
    con.execute("CREATE TABLE ev AS " + events)
    con.execute("DROP TABLE lines")
    rules = RULES_SQL.format(NS=f"{NS}::BIGINT", timeout=timeout, customer=sql_list(CUSTOMER_CLASSES), approval=sql_list(approval))
    pairs = con.execute(f"SELECT DISTINCT rule_id, subject FROM ({rules}) ORDER BY rule_id, subject").fetchall()
    return con, pairs


def main():
    started = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", required=True, help="policy TOML (spec policy.md)")
    ap.add_argument("--lateness", type=int, default=60, help="allowed lateness in seconds (only for --report-late)")
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's, 80%% of RAM)")
    ap.add_argument("--report-late", action="store_true", help="also count events more than --lateness behind the newest line before them")
    ap.add_argument("events", help="JSON Lines file, optionally .gz")
    args = ap.parse_args()

    con, pairs = evaluate(args.policy, args.events, args.threads, args.memory_limit)
    out = sys.stdout.buffer  # UTF-8 whatever the locale
    for rule_id, subject in pairs:
        out.write(json.dumps({"rule_id": rule_id, "subject": subject}, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        out.write(b"\n")
    out.flush()
    finished = time.perf_counter()

    import duckdb

    (events,) = con.execute("SELECT count(*) FROM ev").fetchone()
    print(f"duckdb {duckdb.__version__}: {events} events, {len(pairs)} violations, wall {finished - started:.2f} s", file=sys.stderr)
    if args.report_late:
        (late,) = con.execute(
            "SELECT count(*) FROM (SELECT t, max(t) OVER (ORDER BY line ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest FROM ev) "
            f"WHERE t < newest - {int(args.lateness) * NS}"
        ).fetchone()
        print(f"events more than {args.lateness} s behind the newest line before them: {late}", file=sys.stderr)


if __name__ == "__main__":
    main()
