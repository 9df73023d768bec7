-- Per-minute service level indicators of both pipelines (docs/VERIFY.md, "Watching the
-- migration"): materialized views over the location landing tables (schema.sql) that keep, per
-- minute of the locations' own `timestamp`, pipeline, config version and route, the distinct
-- locations received (a mergeable uniqExact state), every copy, and the freshness of every copy
-- (arrival minus timestamp) in log-linear buckets (a mergeable sumMap state). sli.sql reads
-- them with the reconciliation of verify.sql (seqs seen on no pipeline, the verifier's own gaps)
-- into completeness per minute. The same rows as tools/cli/src/verify/sli.rs.
-- Statements are separated by a semicolon at the end of a line; every one can be run again.

-- The delay buckets of tools/cli/src/verify/histogram.rs: exact below 256 ms, then 128 per power
-- of two; negative delays mirrored below zero. floor(log2) corrected at powers of two.
-- (v >= 1; both branches of an `if` are evaluated, so callers pass greatest(v, 1))
CREATE FUNCTION IF NOT EXISTS dualpub_log2_floor AS (v) ->
    toInt64(floor(log2(toFloat64(v))))
    - toInt64(bitShiftLeft(toUInt64(1), toUInt64(floor(log2(toFloat64(v))))) > v)
    + toInt64(floor(log2(toFloat64(v))) < 63 AND bitShiftLeft(toUInt64(1), toUInt64(floor(log2(toFloat64(v)))) + 1) <= v);

CREATE FUNCTION IF NOT EXISTS dualpub_magnitude_bucket AS (v) ->
    if(v < 256, toInt64(v),
       256 + (dualpub_log2_floor(greatest(v, 256)) - 8) * 128
           + toInt64(bitAnd(bitShiftRight(toUInt64(v), toUInt64(dualpub_log2_floor(greatest(v, 256)) - 7)), 127)));

CREATE FUNCTION IF NOT EXISTS dualpub_delay_bucket AS (d) ->
    if(d >= 0, dualpub_magnitude_bucket(toUInt64(d)), -dualpub_magnitude_bucket(toUInt64(-(d + 1)) + 1) - 1);

CREATE FUNCTION IF NOT EXISTS dualpub_magnitude_floor AS (b) ->
    if(b < 256, toUInt64(b), bitShiftLeft(toUInt64(128 + (b - 256) % 128), toUInt64(intDiv(b - 256, 128) + 1)));

-- The value a bucket stands for: its bound nearest zero.
CREATE FUNCTION IF NOT EXISTS dualpub_delay_value AS (b) ->
    if(b >= 0, toInt64(dualpub_magnitude_floor(b)), -toInt64(least(dualpub_magnitude_floor(-(b + 1)), toUInt64(9223372036854775807))));

-- The q quantile by rank (the bucket holding the ceil(q n)-th smallest) of a bucket -> count map.
CREATE FUNCTION IF NOT EXISTS dualpub_quantile AS (m, q) ->
    if(empty(mapKeys(m)), NULL,
       dualpub_delay_value(arrayElement(mapKeys(m),
           arrayFirstIndex(c -> c >= greatest(toUInt64(1), least(arraySum(mapValues(m)), toUInt64(ceil(q * arraySum(mapValues(m)))))),
                           arrayCumSum(mapValues(m))))));

CREATE TABLE IF NOT EXISTS sli_copies
(
    minute DateTime('UTC'),                    -- of the locations' timestamp
    pipeline LowCardinality(String),           -- where the copies arrived
    cfg UInt64,
    route LowCardinality(String),
    locations AggregateFunction(uniqExact, String),          -- distinct eventIds received
    copies SimpleAggregateFunction(sum, UInt64),             -- every copy
    freshness AggregateFunction(sumMap, Map(Int64, UInt64))  -- delay bucket -> copies
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (minute, pipeline, cfg, route);

CREATE MATERIALIZED VIEW IF NOT EXISTS sli_copies_mqtt_mv TO sli_copies AS
SELECT toStartOfMinute(timestamp) AS minute, 'mqtt' AS pipeline, cfg, route,
       uniqExactState(event_id) AS locations, count() AS copies,
       sumMapState(map(dualpub_delay_bucket(toUnixTimestamp64Milli(received_at) - toUnixTimestamp64Milli(timestamp)), toUInt64(1))) AS freshness
FROM locations_mqtt
WHERE route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
GROUP BY minute, cfg, route;

CREATE MATERIALIZED VIEW IF NOT EXISTS sli_copies_pubsub_mv TO sli_copies AS
SELECT toStartOfMinute(timestamp) AS minute, 'pubsub' AS pipeline, cfg, route,
       uniqExactState(event_id) AS locations, count() AS copies,
       sumMapState(map(dualpub_delay_bucket(toUnixTimestamp64Milli(received_at) - toUnixTimestamp64Milli(timestamp)), toUInt64(1))) AS freshness
FROM locations_pubsub
WHERE route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
GROUP BY minute, cfg, route;
