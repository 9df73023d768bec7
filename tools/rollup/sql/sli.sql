-- Per-minute service level indicators (docs/VERIFY.md, "Watching the migration"): one row per
-- minute of the locations' `timestamp`, pipeline, config version and route, with the columns of
-- the CLI's `sli[]` (tools/cli/src/verify/sli.rs): owed, received, unseen, verifier_gap, distinct,
-- copies, freshness p50 and p99 (ms). Run as the final SELECT after the CTEs of verify.sql (sli.py
-- puts them together, so that the seqs seen on no pipeline and the verifier's own gaps are found
-- by the same rules), with two more parameters: the minutes reported, [{minutes_from_ms:Int64},
-- {minutes_to_ms:Int64}). What arrived comes from the materialized views of sli_schema.sql
-- (mergeable states: a minute's counts are exact however its copies were inserted).
seen AS (
    SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS minute_ms, pipeline, cfg, route,
           uniqExactMerge(locations) AS distinct, sum(copies) AS copies, sumMapMerge(freshness) AS fresh
    FROM sli_copies
    WHERE minute >= fromUnixTimestamp64Milli({minutes_from_ms:Int64}, 'UTC') AND minute < fromUnixTimestamp64Milli({minutes_to_ms:Int64}, 'UTC')
    GROUP BY minute_ms, pipeline, cfg, route
),
seen_anywhere AS (
    -- the locations of each minute, config version and route seen on some pipeline, owed to each
    -- pipeline the route owes
    SELECT minute_ms, p AS pipeline, cfg, route, seen AS owed_seen
    FROM (
        SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS minute_ms, cfg, route, uniqExactMerge(locations) AS seen
        FROM sli_copies
        WHERE minute >= fromUnixTimestamp64Milli({minutes_from_ms:Int64}, 'UTC') AND minute < fromUnixTimestamp64Milli({minutes_to_ms:Int64}, 'UTC')
        GROUP BY minute_ms, cfg, route
    )
    ARRAY JOIN arrayFilter(x -> route = 'both' OR route = x, ['mqtt', 'pubsub']) AS p
),
recon AS (
    -- from the reconciliation: per pipeline, seqs seen on none that it was owed, and locations
    -- missing on it that its subscriber's own gap explains
    SELECT toInt64(intDiv(ts_ms, 60000) * 60000 - if(ts_ms < 0 AND ts_ms % 60000 != 0, 60000, 0)) AS minute_ms, p AS pipeline, cfg, route,
           countIf(kind = 2) AS unseen,
           countIf(if(p = 'mqtt', gap_mqtt, gap_pubsub)) AS verifier_gap
    FROM reconciled
    ARRAY JOIN arrayFilter(x -> (x = 'mqtt' AND need_mqtt) OR (x = 'pubsub' AND need_pubsub), ['mqtt', 'pubsub']) AS p
    WHERE kind IN (1, 2) AND ts_ms >= {minutes_from_ms:Int64} AND ts_ms < {minutes_to_ms:Int64}
    GROUP BY minute_ms, pipeline, cfg, route
)
SELECT
    minute_ms, pipeline, cfg, route,
    toUInt64(o.owed_seen + r.unseen) AS owed,
    toUInt64(if(route = 'both' OR route = pipeline, s.distinct, 0)) AS received,
    toUInt64(r.unseen) AS unseen,
    toUInt64(r.verifier_gap) AS verifier_gap,
    toUInt64(s.distinct) AS distinct,
    toUInt64(s.copies) AS copies,
    dualpub_quantile(s.fresh, 0.5) AS freshness_p50_ms,
    dualpub_quantile(s.fresh, 0.99) AS freshness_p99_ms
FROM seen AS s
FULL OUTER JOIN seen_anywhere AS o USING (minute_ms, pipeline, cfg, route)
FULL OUTER JOIN recon AS r USING (minute_ms, pipeline, cfg, route)
ORDER BY minute_ms, pipeline, cfg, route
