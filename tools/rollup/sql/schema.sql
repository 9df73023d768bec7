-- dualpub landing tables (single ClickHouse server, or chDB in-process). The replicated and
-- distributed variants for a cluster are in cluster.md.
--
-- Ingestion: every pipeline inserts what it received, as it received it, into an inbox
-- (engine Null: nothing is stored there); materialized views parse it into the typed tables:
--
--   INSERT INTO migration_reports_inbox FORMAT JSONEachRow
--   {"transport":"mqtt","receivedAtMs":1763790901234,"payload":"{\"report\":1,...}"}
--
--   INSERT INTO locations_inbox FORMAT JSONEachRow
--   {"transport":"pubsub","receivedAtMs":1763790000456,"payload":"{\"eventId\":\"...\",...}"}
--
-- `payload` is the message body as a JSON string (the MQTT payload; the decoded Pub/Sub data).
-- A report payload that is not a version 1 report with a device, epoch, report number and two
-- 66-count latency histograms goes to migration_reports_rejected instead, kept as received.
-- Statements are separated by a semicolon at the end of a line (tools/rollup/rollup.py splits
-- them there); every one can be run again without harm.

CREATE TABLE IF NOT EXISTS migration_reports_inbox
(
    transport LowCardinality(String),          -- 'mqtt' or 'pubsub' ('' when not known)
    receivedAtMs Int64,                        -- when the pipeline received it (ms since the Unix epoch)
    payload String,                            -- the report's JSON text
    ok Bool MATERIALIZED isValidJSON(payload)
        AND JSONExtractUInt(payload, 'report') = 1
        AND JSONExtractString(payload, 'deviceId') != ''
        AND JSONExtractString(payload, 'epoch') != ''
        AND JSONExtractUInt(payload, 'reportSeq') > 0
        AND length(JSONExtract(payload, 'latency', 'mqtt', 'Array(UInt64)')) = 66
        AND length(JSONExtract(payload, 'latency', 'pubsub', 'Array(UInt64)')) = 66
)
ENGINE = Null;

-- One row per received copy of a report. Copies of one report (both transports, redeliveries)
-- share the key (device_id, epoch, report_seq) and are byte-identical: merges keep one of them.
-- Merges happen whenever ClickHouse gets to them, so every query must dedupe on its own
-- (rollup.sql: LIMIT 1 BY device_id, epoch, report_seq). No PARTITION BY: copies that landed
-- in different partitions would never collapse.
-- The gauges mqtt_oldest_seq and pubsub_oldest_seq came later: a table created before them gets
-- them with ALTER TABLE migration_reports ADD COLUMN IF NOT EXISTS (each UInt64, after
-- pubsub_depth), and migration_reports_mv must then be dropped and created again.
CREATE TABLE IF NOT EXISTS migration_reports
(
    device_id String,
    company_id String,                         -- '' when the app set none
    epoch String,                              -- UUIDv7 text: sorts by creation time
    report_seq UInt64,
    epoch_start DateTime64(3, 'UTC'),
    cut_at DateTime64(3, 'UTC'),               -- device clock
    trigger LowCardinality(String),            -- interval | silent | config | breaker | shutdown
    interval_secs UInt32,
    sdk LowCardinality(String),
    platform LowCardinality(String),
    os_version LowCardinality(String),
    app_version LowCardinality(String),
    -- the decision in force when the report was cut: its counters' deltas accrued under it
    cfg UInt64,
    bucket UInt16,
    reason LowCardinality(String),
    route LowCardinality(String),              -- both | mqtt | pubsub
    fallback_to_mqtt Bool,
    -- counters: cumulative since the epoch began
    accepted UInt64,
    last_seq UInt64,
    rejected Map(String, UInt64),
    mqtt_acked UInt64,
    mqtt_failed UInt64,
    mqtt_retries UInt64,
    mqtt_breaker_openings UInt64,
    pubsub_acked UInt64,
    pubsub_failed UInt64,
    pubsub_retries UInt64,
    pubsub_breaker_openings UInt64,
    fallbacks UInt64,
    dual_both UInt64,
    dual_mqtt_only UInt64,
    dual_pubsub_only UInt64,
    dropped Map(String, UInt64),
    dead_letters UInt64,
    config_fetches Map(String, UInt64),
    -- gauges: the state when the report was cut
    mqtt_depth UInt64,
    pubsub_depth UInt64,
    mqtt_oldest_seq UInt64,                    -- lowest seq still owed to MQTT; 0: none (or a report without it)
    pubsub_oldest_seq UInt64,                  -- the same for Pub/Sub
    oldest_pending_age_s Float64,
    mqtt_breaker_open Bool,
    pubsub_breaker_open Bool,
    -- cumulative latency histograms: 66 counts, count i for b(i-1) < ms <= b(i), b(i) = 0.5 * 1.25^i
    latency_mqtt Array(UInt64),
    latency_pubsub Array(UInt64),
    -- 10-minute event-time buckets since the previous report
    buckets Array(Tuple(start_ms Int64, accepted UInt64, acked_mqtt UInt64, acked_pubsub UInt64, first_seq UInt64, last_seq UInt64)),
    buckets_cut UInt32,
    -- this copy
    transport LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    raw String
)
ENGINE = ReplacingMergeTree
ORDER BY (device_id, epoch, report_seq);

CREATE TABLE IF NOT EXISTS migration_reports_rejected
(
    transport LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    payload String
)
ENGINE = MergeTree
ORDER BY received_at;

CREATE MATERIALIZED VIEW IF NOT EXISTS migration_reports_mv TO migration_reports AS
SELECT
    JSONExtractString(payload, 'deviceId') AS device_id,
    JSONExtractString(payload, 'companyId') AS company_id,
    JSONExtractString(payload, 'epoch') AS epoch,
    JSONExtractUInt(payload, 'reportSeq') AS report_seq,
    fromUnixTimestamp64Milli(JSONExtractInt(payload, 'epochStartMs'), 'UTC') AS epoch_start,
    fromUnixTimestamp64Milli(JSONExtractInt(payload, 'cutAtMs'), 'UTC') AS cut_at,
    JSONExtractString(payload, 'trigger') AS trigger,
    JSONExtractUInt(payload, 'intervalSecs') AS interval_secs,
    JSONExtractString(payload, 'sdk') AS sdk,
    JSONExtractString(payload, 'platform') AS platform,
    JSONExtractString(payload, 'osVersion') AS os_version,
    JSONExtractString(payload, 'appVersion') AS app_version,
    JSONExtractUInt(payload, 'decision', 'cfg') AS cfg,
    JSONExtractUInt(payload, 'decision', 'bucket') AS bucket,
    JSONExtractString(payload, 'decision', 'reason') AS reason,
    JSONExtractString(payload, 'decision', 'route') AS route,
    JSONExtractBool(payload, 'decision', 'fallbackToMqtt') AS fallback_to_mqtt,
    JSONExtractUInt(payload, 'counters', 'accepted') AS accepted,
    JSONExtractUInt(payload, 'counters', 'lastSeq') AS last_seq,
    JSONExtract(payload, 'counters', 'rejected', 'Map(String, UInt64)') AS rejected,
    JSONExtractUInt(payload, 'counters', 'mqtt', 'acked') AS mqtt_acked,
    JSONExtractUInt(payload, 'counters', 'mqtt', 'failed') AS mqtt_failed,
    JSONExtractUInt(payload, 'counters', 'mqtt', 'retries') AS mqtt_retries,
    JSONExtractUInt(payload, 'counters', 'mqtt', 'breakerOpenings') AS mqtt_breaker_openings,
    JSONExtractUInt(payload, 'counters', 'pubsub', 'acked') AS pubsub_acked,
    JSONExtractUInt(payload, 'counters', 'pubsub', 'failed') AS pubsub_failed,
    JSONExtractUInt(payload, 'counters', 'pubsub', 'retries') AS pubsub_retries,
    JSONExtractUInt(payload, 'counters', 'pubsub', 'breakerOpenings') AS pubsub_breaker_openings,
    JSONExtractUInt(payload, 'counters', 'fallbacks') AS fallbacks,
    JSONExtractUInt(payload, 'counters', 'dual', 'both') AS dual_both,
    JSONExtractUInt(payload, 'counters', 'dual', 'mqttOnly') AS dual_mqtt_only,
    JSONExtractUInt(payload, 'counters', 'dual', 'pubsubOnly') AS dual_pubsub_only,
    JSONExtract(payload, 'counters', 'dropped', 'Map(String, UInt64)') AS dropped,
    JSONExtractUInt(payload, 'counters', 'deadLetters') AS dead_letters,
    JSONExtract(payload, 'counters', 'configFetches', 'Map(String, UInt64)') AS config_fetches,
    JSONExtractUInt(payload, 'gauges', 'mqttDepth') AS mqtt_depth,
    JSONExtractUInt(payload, 'gauges', 'pubsubDepth') AS pubsub_depth,
    JSONExtractUInt(payload, 'gauges', 'mqttOldestSeq') AS mqtt_oldest_seq,
    JSONExtractUInt(payload, 'gauges', 'pubsubOldestSeq') AS pubsub_oldest_seq,
    JSONExtractFloat(payload, 'gauges', 'oldestPendingAgeS') AS oldest_pending_age_s,
    JSONExtractBool(payload, 'gauges', 'mqttBreakerOpen') AS mqtt_breaker_open,
    JSONExtractBool(payload, 'gauges', 'pubsubBreakerOpen') AS pubsub_breaker_open,
    JSONExtract(payload, 'latency', 'mqtt', 'Array(UInt64)') AS latency_mqtt,
    JSONExtract(payload, 'latency', 'pubsub', 'Array(UInt64)') AS latency_pubsub,
    JSONExtract(payload, 'buckets', 'Array(Tuple(Int64, UInt64, UInt64, UInt64, UInt64, UInt64))') AS buckets,
    JSONExtractUInt(payload, 'bucketsCut') AS buckets_cut,
    transport,
    fromUnixTimestamp64Milli(receivedAtMs, 'UTC') AS received_at,
    payload AS raw
FROM migration_reports_inbox
WHERE ok;

CREATE MATERIALIZED VIEW IF NOT EXISTS migration_reports_rejected_mv TO migration_reports_rejected AS
SELECT transport, fromUnixTimestamp64Milli(receivedAtMs, 'UTC') AS received_at, payload
FROM migration_reports_inbox
WHERE NOT ok;

-- Locations as each pipeline received them (for comparing the two pipelines): every copy is
-- kept (duplicates, first arrivals and byte mismatches are what the verifier counts), a
-- partition per day, sorted by hour first so an hourly verify.sql run reads only its hour.
-- seq, route and cfg are schemaVersion 2 fields: 0, '' and 0 in a version 1 message.
CREATE TABLE IF NOT EXISTS locations_inbox
(
    transport LowCardinality(String),          -- 'mqtt' or 'pubsub': picks the table below
    receivedAtMs Int64,
    payload String
)
ENGINE = Null;

CREATE TABLE IF NOT EXISTS locations_mqtt
(
    event_id String,                           -- UUIDv7 text: sorts by acceptance time
    device_id String,
    company_id String,
    seq UInt64,
    route LowCardinality(String),
    cfg UInt64,
    schema_version UInt8,
    timestamp DateTime64(3, 'UTC'),            -- when the fix was taken
    received_at DateTime64(3, 'UTC'),
    payload String
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (toStartOfHour(received_at), device_id, event_id);

CREATE TABLE IF NOT EXISTS locations_pubsub AS locations_mqtt
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (toStartOfHour(received_at), device_id, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS locations_mqtt_mv TO locations_mqtt AS
SELECT
    JSONExtractString(payload, 'eventId') AS event_id,
    JSONExtractString(payload, 'deviceId') AS device_id,
    JSONExtractString(payload, 'companyId') AS company_id,
    JSONExtractUInt(payload, 'seq') AS seq,
    JSONExtractString(payload, 'route') AS route,
    JSONExtractUInt(payload, 'cfg') AS cfg,
    JSONExtractUInt(payload, 'schemaVersion') AS schema_version,
    fromUnixTimestamp64Milli(JSONExtractInt(payload, 'timestamp'), 'UTC') AS timestamp,
    fromUnixTimestamp64Milli(receivedAtMs, 'UTC') AS received_at,
    payload
FROM locations_inbox
WHERE transport = 'mqtt';

CREATE MATERIALIZED VIEW IF NOT EXISTS locations_pubsub_mv TO locations_pubsub AS
SELECT
    JSONExtractString(payload, 'eventId') AS event_id,
    JSONExtractString(payload, 'deviceId') AS device_id,
    JSONExtractString(payload, 'companyId') AS company_id,
    JSONExtractUInt(payload, 'seq') AS seq,
    JSONExtractString(payload, 'route') AS route,
    JSONExtractUInt(payload, 'cfg') AS cfg,
    JSONExtractUInt(payload, 'schemaVersion') AS schema_version,
    fromUnixTimestamp64Milli(JSONExtractInt(payload, 'timestamp'), 'UTC') AS timestamp,
    fromUnixTimestamp64Milli(receivedAtMs, 'UTC') AS received_at,
    payload
FROM locations_inbox
WHERE transport = 'pubsub';

-- The verifying subscribers' own disconnections: a location owed to a pipeline that would have
-- arrived there while its subscriber was down is the verifier's gap, not a loss (verify.sql,
-- docs/VERIFY.md "Reconciliation"). A subscriber that acknowledges only after its insert has
-- none; one that may miss messages while disconnected (an expiring session) records each gap.
CREATE TABLE IF NOT EXISTS subscriber_gaps
(
    pipeline LowCardinality(String),           -- 'mqtt' or 'pubsub'
    from_ms Int64,                             -- ms since the Unix epoch
    to_ms Int64
)
ENGINE = MergeTree
ORDER BY (pipeline, from_ms);
