-- `dualpub verify` as one ClickHouse query (docs/VERIFY.md, "The same check on ClickHouse"):
-- what both pipelines received (locations_mqtt, locations_pubsub: schema.sql), joined by
-- eventId, checked against each location's route and its device's seq run, every missing
-- location reconciled with the device's newest migration report; one row per rollout step
-- (cfg) with every number of the CLI's steps[] except rateBound and verdict, which need the
-- Clopper-Pearson bound (tools/rollup/verify.py computes it from discrepancies and trials), and
-- the step's missing locations with their causes. The reference is
-- tools/cli/src/verify/engine.rs: the same definitions, the same numbers.
--
-- Parameters (all required; over HTTP: ?param_from_ms=...):
--   {from_ms:Int64}, {to_ms:Int64}  the window: locations whose FIRST arrival (on either
--                                   pipeline) is in [from_ms, to_ms), ms since the Unix epoch.
--   {margin_ms:Int64}               copies are read from [from_ms - margin_ms, to_ms + margin_ms):
--                                   a location first received just before to_ms is not missing
--                                   on the pipeline that got it just after, nor is one first
--                                   received just before from_ms counted in this window.
--   {late_ms:Int64}                 a location received this much later on one pipeline than on
--                                   the other is late (the CLI's --late-ms, 5000).
--   {max_rate_bound:Float64}        the CLI's --max-rate-bound (0.001): for min_trials.
--   {reports_from_ms:Int64}         reports received before this are not read (0: all). The
--                                   CLI reads every report; on a server whose table keeps
--                                   months of reports pass from_ms - 1 day or so.
--
-- How it is made:
--   * No join between the pipelines: both tables are read as one stream (UNION ALL) and
--     grouped by event_id, so a location is one row whatever the copies, and duplicates are
--     counts. Copies are told apart by the hash of their bytes: a mismatch is an eventId whose
--     copies do not all hash alike (min != max). A location's fields come from its earliest
--     copy.
--   * A message that is not a version 2 location (route not both/mqtt/pubsub, no eventId or
--     deviceId) is left out (the CLI counts it as malformed).
--   * Seq runs: per device, locations in eventId order (UUIDv7 text sorts by acceptance time);
--     a seq lower than the one before starts a new run (new data directory); the values missing
--     inside a run (from 1 in a run after the first) were seen on neither pipeline ("unseen").
--   * Reconciliation with the device's newest report (latest epochStartMs, then reportSeq):
--     unexplained when there is none or its lastSeq is below the seq; still_queued when among
--     the newest `depth` seqs up to lastSeq (depth of the pipeline it is missing on; the larger
--     of both for an unseen seq); else dropped_on_device while the report's drops plus dead
--     letters last, the device's oldest missing first; else acked_not_received.
--   * The location tables keep every copy (MergeTree, docs/VERIFY.md): duplicates, first
--     arrivals and mismatches between copies are counted from the rows themselves.
--   * The CLI's verifier_gap (a missing location that arrived on the other pipeline within 2 s
--     of the verifying subscriber's own disconnection) is not made here: the landing tables
--     hold no subscriber gaps, and a subscriber that acknowledges only after its insert has none.
--
-- Returns one row per cfg, ordered by cfg; columns are named after the CLI's JSON fields
-- (mqtt_expected is steps[].mqtt.expected). `missing` lists (device_id, seq, kind, event_id,
-- pipeline, cause) with kind 1 = owed and not received, 2 = seq seen on neither pipeline
-- (event_id '' and pipeline ''), ordered by device, seq.
WITH
    fromUnixTimestamp64Milli({from_ms:Int64} - {margin_ms:Int64}, 'UTC') AS scan_from,
    fromUnixTimestamp64Milli({to_ms:Int64} + {margin_ms:Int64}, 'UTC') AS scan_to,
    0.95 AS confidence,
arrivals AS (
    -- every copy either pipeline received in the scanned range: one row each, duplicates kept
    SELECT event_id, device_id, seq, route, cfg, toUnixTimestamp64Milli(received_at) AS at_ms,
           false AS on_pubsub, cityHash64(payload) AS bytes_hash
    FROM locations_mqtt
    WHERE received_at >= scan_from AND received_at < scan_to
      AND route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
    UNION ALL
    SELECT event_id, device_id, seq, route, cfg, toUnixTimestamp64Milli(received_at) AS at_ms,
           true AS on_pubsub, cityHash64(payload) AS bytes_hash
    FROM locations_pubsub
    WHERE received_at >= scan_from AND received_at < scan_to
      AND route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
),
locations AS (
    -- one row per location (eventId): what each pipeline got of it
    SELECT
        event_id,
        -- its fields from its earliest copy (copies agree unless their bytes differ: a mismatch)
        argMin(device_id, at_ms) AS first_device_id,
        argMin(seq, at_ms) AS first_seq,
        argMin(route, at_ms) AS first_route,
        argMin(cfg, at_ms) AS first_cfg,
        countIf(NOT on_pubsub) AS copies_mqtt,
        countIf(on_pubsub) AS copies_pubsub,
        minIf(at_ms, NOT on_pubsub) AS first_mqtt,      -- read only when copies_mqtt > 0
        minIf(at_ms, on_pubsub) AS first_pubsub,        -- read only when copies_pubsub > 0
        min(bytes_hash) != max(bytes_hash) AS mismatch
    FROM arrivals
    GROUP BY event_id
    HAVING min(at_ms) >= {from_ms:Int64} AND min(at_ms) < {to_ms:Int64}
),
judged AS (
    -- what the route owed each pipeline, and what arrived late (after the other pipeline's copy)
    SELECT
        * EXCEPT (first_device_id, first_seq, first_route, first_cfg),
        first_device_id AS device_id,
        first_seq AS seq,
        first_route AS route,
        first_cfg AS cfg,
        route IN ('both', 'mqtt') AS owes_mqtt,
        route IN ('both', 'pubsub') AS owes_pubsub,
        copies_mqtt > 0 AND copies_pubsub > 0 AND first_mqtt - first_pubsub > {late_ms:Int64} AS late_mqtt,
        copies_mqtt > 0 AND copies_pubsub > 0 AND first_pubsub - first_mqtt > {late_ms:Int64} AS late_pubsub,
        -- a seq lower than the one before it (in acceptance order) starts a new run
        seq < lagInFrame(seq, 1, seq) OVER (PARTITION BY device_id ORDER BY event_id
                                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS starts_run
    FROM locations
),
runs AS (
    -- run 0 is the device's first run in the window; run n > 0 began with a restart
    SELECT *, sum(starts_run) OVER (PARTITION BY device_id ORDER BY event_id ROWS UNBOUNDED PRECEDING) AS run
    FROM judged
),
sequenced AS (
    -- the seq values of a run seen on neither pipeline, each given to the location just above
    -- it (with the lowest cfg of that seq's locations): from the previous seq of the run + 1, or
    -- from 1 before the first location of a run after a restart
    SELECT
        *,
        lagInFrame(seq, 1, 0) OVER by_seq AS prev_seq,
        row_number() OVER by_seq = 1 AS first_of_run,
        if(first_of_run, if(run > 0, range(toUInt64(1), seq), []), range(prev_seq + 1, seq)) AS skipped
    FROM runs
    WINDOW by_seq AS (PARTITION BY device_id, run ORDER BY seq, cfg ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
facts AS (
    -- per location: itself (kind 0), each pipeline it was owed to and never reached (kind 1),
    -- each seq skipped just below it (kind 2)
    SELECT *, fact.1 AS kind, fact.2 AS gone_seq, fact.3 AS gone_on
    FROM sequenced
    ARRAY JOIN arrayConcat(
        [(0, seq, '')],
        if(owes_mqtt AND copies_mqtt = 0, [(1, seq, 'mqtt')], []),
        if(owes_pubsub AND copies_pubsub = 0, [(1, seq, 'pubsub')], []),
        arrayMap(s -> (2, s, ''), skipped)
    ) AS fact
),
newest AS (
    -- each device's newest report: (1, lastSeq, mqttDepth, pubsubDepth, drops + dead letters).
    -- One tuple, so that a device without a report gets (0, 0, 0, 0, 0) from the LEFT JOIN
    -- below whatever join_use_nulls says (a tuple is never made Nullable).
    SELECT
        device_id,
        argMax((toUInt8(1), last_seq, mqtt_depth, pubsub_depth, arraySum(mapValues(dropped)) + dead_letters),
               (epoch_start, report_seq)) AS report
    FROM migration_reports
    WHERE received_at >= fromUnixTimestamp64Milli({reports_from_ms:Int64}, 'UTC')
    GROUP BY device_id
),
reconciled AS (
    SELECT
        facts.*,
        report.1 = 1 AND report.2 >= gone_seq AS covered,
        multiIf(gone_on = 'mqtt', report.3, gone_on = 'pubsub', report.4, greatest(report.3, report.4)) AS depth,
        covered AND depth > 0 AND gone_seq > report.2 - least(depth, report.2) AS queued,
        -- the device's drops go to its oldest missing locations not explained otherwise
        kind > 0 AND covered AND NOT queued AS may_be_dropped,
        sum(may_be_dropped) OVER (PARTITION BY device_id ORDER BY gone_seq, kind, event_id
                                  ROWS UNBOUNDED PRECEDING) AS drop_rank,
        multiIf(kind = 0, '',
                NOT covered, 'unexplained',
                queued, 'still_queued',
                drop_rank <= report.5, 'dropped_on_device',
                'acked_not_received') AS cause
    FROM facts
    LEFT JOIN newest USING (device_id)
),
steps AS (
    SELECT
        cfg,
        uniqExactIf(device_id, kind = 0) AS devices,
        countIf(kind = 0) AS locations,
        countIf(kind = 0 AND owes_mqtt) AS mqtt_expected,
        countIf(kind = 0 AND owes_mqtt AND copies_mqtt > 0) AS mqtt_received,
        countIf(kind = 1 AND gone_on = 'mqtt') AS mqtt_missing,
        sumIf(copies_mqtt - 1, kind = 0 AND copies_mqtt > 1) AS mqtt_duplicates,
        countIf(kind = 0 AND NOT owes_mqtt AND copies_mqtt > 0) AS mqtt_fallbacks,
        toUInt64(0) AS mqtt_unexpected,                  -- MQTT owes every route but pubsub: fallbacks
        countIf(kind = 0 AND late_mqtt) AS mqtt_late,
        countIf(kind = 0 AND owes_pubsub) AS pubsub_expected,
        countIf(kind = 0 AND owes_pubsub AND copies_pubsub > 0) AS pubsub_received,
        countIf(kind = 1 AND gone_on = 'pubsub') AS pubsub_missing,
        sumIf(copies_pubsub - 1, kind = 0 AND copies_pubsub > 1) AS pubsub_duplicates,
        toUInt64(0) AS pubsub_fallbacks,
        countIf(kind = 0 AND NOT owes_pubsub AND copies_pubsub > 0) AS pubsub_unexpected,
        countIf(kind = 0 AND late_pubsub) AS pubsub_late,
        countIf(kind = 2) AS unseen,
        countIf(kind = 0 AND mismatch) AS mismatches,
        countIf(cause = 'acked_not_received') AS acked_not_received,
        countIf(cause = 'still_queued') AS still_queued,
        countIf(cause = 'dropped_on_device') AS dropped_on_device,
        countIf(cause = 'unexplained') AS unexplained,
        arraySort(groupArrayIf((device_id, gone_seq, kind, if(kind = 2, '', event_id), gone_on, cause), kind > 0)) AS missing,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_mqtt > 1)) AS duplicated_mqtt,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_pubsub > 1)) AS duplicated_pubsub,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_mqtt)) AS late_mqtt_ids,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_pubsub)) AS late_pubsub_ids
    FROM reconciled
    GROUP BY cfg
)
SELECT
    cfg, devices, locations,
    mqtt_expected, mqtt_received, mqtt_missing, mqtt_duplicates, mqtt_fallbacks, mqtt_unexpected, mqtt_late,
    pubsub_expected, pubsub_received, pubsub_missing, pubsub_duplicates, pubsub_fallbacks, pubsub_unexpected, pubsub_late,
    unseen, mismatches,
    -- causes with at least one location, as the CLI lists them
    mapFilter((c, n) -> n > 0, map('acked_not_received', acked_not_received, 'still_queued', still_queued,
                                   'dropped_on_device', dropped_on_device, 'unexplained', unexplained)) AS causes,
    -- what counts against the pipelines, and the trials it is a rate of
    acked_not_received + unexplained + mismatches + pubsub_unexpected AS discrepancies,
    mqtt_expected + pubsub_expected + unseen AS trials,
    if(trials = 0, 0., discrepancies / trials) AS rate,
    -- the trials zero discrepancies need for the upper bound to reach max_rate_bound
    toUInt64(ceil(log(1 - confidence) / log(1 - {max_rate_bound:Float64}))) AS min_trials,
    missing, duplicated_mqtt, duplicated_pubsub, late_mqtt_ids, late_pubsub_ids
FROM steps
ORDER BY cfg
