-- `dualpub verify` as one ClickHouse query (docs/VERIFY.md, "The same check on ClickHouse"):
-- what both pipelines received (locations_mqtt, locations_pubsub: schema.sql), joined by
-- eventId, checked against each location's route and its device's seq runs, the runs ended
-- where the devices' reports say, every missing location reconciled with the newest report of
-- its data-directory epoch; one row per rollout step (cfg) with every number of the CLI's
-- steps[] except rateBound and verdict, which need the Clopper-Pearson bound (tools/rollup/
-- verify.py computes it from discrepancies and trials), the step's missing locations with their
-- causes, its mismatched eventIds (verify_mismatches.sql names their copies and fields), and the
-- device runs no report bounds. The reference is tools/cli/src/verify/ (engine.rs, runs.rs,
-- reports.rs, gaps.rs): the same definitions, the same numbers.
--
-- Parameters (all required; over HTTP: ?param_from_ms=...):
--   {from_ms:Int64}, {to_ms:Int64}  the window: locations whose FIRST arrival (on either
--                                   pipeline) is in [from_ms, to_ms), ms since the Unix epoch.
--                                   An epoch that began at or after from_ms owes every seq from
--                                   1; reports cut before it are "before the window".
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
--     counts. Copies are told apart by the xxHash64 of their bytes: a mismatch is an eventId
--     whose copies do not all hash alike (min != max). A location's fields come from its
--     earliest copy.
--   * A message that is not a version 2 location (route not both/mqtt/pubsub, no eventId or
--     deviceId) is left out (the CLI counts it as malformed).
--   * Runs: per device, locations in eventId order (UUIDv7 text sorts by acceptance time); a
--     seq lower than the one before starts a new run (new data directory). A run belongs to the
--     data-directory epoch of the device's reports that began last at or before its first
--     eventId's time (ASOF JOIN); the newest report of each epoch (highest reportSeq) is the one
--     that judges it.
--   * Seqs owed and never received ("unseen"): inside a run from its lowest seq (from 1 in a run
--     after the first, or when its epoch began inside the window) to its highest; after the
--     highest up to the lastSeq of its epoch's newest report, for the epoch's last run; and for
--     an epoch with reports and no run, from 1 (it began inside the window) or from the lastSeq
--     + 1 of its first report cut inside the window (when a later one exists), up to the newest
--     lastSeq. An unseen seq takes the cfg and route of the location just above it in its run
--     (the last one, after it; the report's decision, in an epoch without runs).
--   * The verifier's own gaps (subscriber_gaps): a location missing on a pipeline would have
--     arrived there during a gap when its device's copies on that pipeline are only lower seqs
--     before the gap (widened by 2 s) and only higher after it, with one of them there; at the
--     ends of the run, the device was seen on either pipeline across the gap.
--   * Reconciliation, per pipeline a location is missing on (for an unseen seq, those its route
--     owes) that no gap explains: unexplained without a report of its epoch whose lastSeq covers
--     it; still queued where the report may hold it (from the lowest seq it owes there, or where
--     that is not known — 0 with a depth above 0 — among the newest `depth`); else acknowledged. Then: unexplained if
--     any pipeline is, else while the epoch's drops plus dead letters last (oldest missing
--     first) dropped_on_device, else acked_not_received if any pipeline acknowledged it, else
--     still_queued if any still holds it, else verifier_gap.
--   * The location tables keep every copy (MergeTree, docs/VERIFY.md): duplicates, first
--     arrivals and mismatches between copies are counted from the rows themselves.
--
-- Returns one row per cfg, ordered by cfg; columns are named after the CLI's JSON fields
-- (mqtt_expected is steps[].mqtt.expected). `missing` lists (device_id, seq, kind, event_id,
-- pipeline, cause) with kind 1 = owed and not received, 2 = seq seen on neither pipeline
-- (event_id '' and pipeline ''), ordered by device, seq. `unbounded` lists (device_id, epoch,
-- reason) of the device runs no report bounds, in the row of their cfg; a row with `facts` 0
-- carries only those (it is no rollout step).
WITH
    fromUnixTimestamp64Milli({from_ms:Int64} - {margin_ms:Int64}, 'UTC') AS scan_from,
    fromUnixTimestamp64Milli({to_ms:Int64} + {margin_ms:Int64}, 'UTC') AS scan_to,
    0.95 AS confidence,
    2000 AS gap_margin_ms,
    18446744073709551615 AS none_after,
arrivals AS (
    -- every copy either pipeline received in the scanned range: one row each, duplicates kept
    SELECT event_id, device_id, seq, route, cfg, toUnixTimestamp64Milli(received_at) AS at_ms,
           toUnixTimestamp64Milli(timestamp) AS ts_ms, false AS on_pubsub, xxHash64(payload) AS bytes_hash
    FROM locations_mqtt
    WHERE received_at >= scan_from AND received_at < scan_to
      AND route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
    UNION ALL
    SELECT event_id, device_id, seq, route, cfg, toUnixTimestamp64Milli(received_at) AS at_ms,
           toUnixTimestamp64Milli(timestamp) AS ts_ms, true AS on_pubsub, xxHash64(payload) AS bytes_hash
    FROM locations_pubsub
    WHERE received_at >= scan_from AND received_at < scan_to
      AND route IN ('both', 'mqtt', 'pubsub') AND event_id != '' AND device_id != ''
),
gaps AS (
    SELECT DISTINCT pipeline = 'pubsub' AS on_pubsub, from_ms, to_ms
    FROM subscriber_gaps
    WHERE pipeline IN ('mqtt', 'pubsub')
      AND to_ms >= {from_ms:Int64} - {margin_ms:Int64} AND from_ms < {to_ms:Int64} + {margin_ms:Int64}
),
shadows AS (
    -- per device and pipeline: for each of that pipeline's gaps, the highest seq received before
    -- it and the lowest after it (0 and none_after: none), and when the device was first and last
    -- seen on either pipeline. Read only when the subscribers had gaps.
    SELECT device_id, on_pubsub, groupArray((before, after, from_ms, to_ms)) AS list, any(first_at) AS first_at, any(last_at) AS last_at
    FROM (
        SELECT a.device_id AS device_id, g.on_pubsub AS on_pubsub, g.from_ms AS from_ms, g.to_ms AS to_ms,
               maxIf(a.seq, a.on_pubsub = g.on_pubsub AND a.at_ms < g.from_ms - gap_margin_ms) AS before,
               if(countIf(a.on_pubsub = g.on_pubsub AND a.at_ms > g.to_ms + gap_margin_ms) = 0, none_after,
                  minIf(a.seq, a.on_pubsub = g.on_pubsub AND a.at_ms > g.to_ms + gap_margin_ms)) AS after,
               min(a.at_ms) AS first_at, max(a.at_ms) AS last_at
        FROM arrivals AS a CROSS JOIN gaps AS g
        WHERE (SELECT count() FROM gaps) > 0
        GROUP BY a.device_id, g.on_pubsub, g.from_ms, g.to_ms
    )
    GROUP BY device_id, on_pubsub
),
epochs AS (
    -- per device and epoch: its start, its newest report (1 reportSeq, 2 cutAt, 3 lastSeq,
    -- 4 mqttDepth, 5 pubsubDepth, 6 mqttOldestSeq, 7 pubsubOldestSeq, 8 drops + dead letters,
    -- 9 cfg, 10 route), the first report cut inside the window and the last one cut before it
    SELECT
        device_id,
        epoch,
        toUnixTimestamp64Milli(argMax(epoch_start, report_seq)) AS epoch_start_ms,
        argMax((report_seq, toUnixTimestamp64Milli(cut_at), last_seq, mqtt_depth, pubsub_depth,
                mqtt_oldest_seq, pubsub_oldest_seq, arraySum(mapValues(dropped)) + dead_letters, cfg, route), report_seq) AS newest,
        countIf(toUnixTimestamp64Milli(cut_at) >= {from_ms:Int64}) > 0 AS has_first_in,
        argMinIf((report_seq, last_seq), report_seq, toUnixTimestamp64Milli(cut_at) >= {from_ms:Int64}) AS first_in,
        countIf(toUnixTimestamp64Milli(cut_at) < {from_ms:Int64}) > 0 AS has_last_before,
        argMaxIf((report_seq, last_seq), report_seq, toUnixTimestamp64Milli(cut_at) < {from_ms:Int64}) AS last_before
    FROM migration_reports
    WHERE received_at >= fromUnixTimestamp64Milli({reports_from_ms:Int64}, 'UTC')
    GROUP BY device_id, epoch
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
        argMin(ts_ms, at_ms) AS first_ts_ms,
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
        * EXCEPT (first_device_id, first_seq, first_route, first_cfg, first_ts_ms),
        first_device_id AS device_id,
        first_seq AS seq,
        first_route AS route,
        first_cfg AS cfg,
        first_ts_ms AS ts_ms,
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
    -- each location in its run by seq: the seq before it, its place, the run's size, and the time
    -- of the run's first eventId (a UUIDv7's milliseconds; an eventId that is none: the newest
    -- epoch's)
    SELECT
        *,
        lagInFrame(seq, 1, 0) OVER by_seq AS prev_seq,
        row_number() OVER by_seq AS nth_of_run,
        count() OVER whole_run AS run_size,
        min(event_id) OVER whole_run AS run_first_event,
        if(match(run_first_event, '^[0-9a-f]{8}-[0-9a-f]{4}-7'),
           toInt64(reinterpretAsUInt64(reverse(unhex(substring(replaceAll(run_first_event, '-', ''), 1, 12))))),
           9223372036854775807) AS run_first_ms
    FROM runs
    WINDOW by_seq AS (PARTITION BY device_id, run ORDER BY seq, cfg ROWS BETWEEN 1 PRECEDING AND CURRENT ROW),
           whole_run AS (PARTITION BY device_id, run ORDER BY seq, cfg ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
stream AS (
    -- every location with its run's epoch (the latest that began at or before the run's first
    -- eventId: ASOF JOIN; '' when none), and one row more per reported epoch (is_location false)
    SELECT s.device_id AS device_id, e.epoch AS epoch, true AS is_location, s.event_id AS event_id, s.seq AS seq,
           s.route AS route, s.cfg AS cfg, s.ts_ms AS ts_ms, s.owes_mqtt AS owes_mqtt, s.owes_pubsub AS owes_pubsub,
           s.copies_mqtt AS copies_mqtt, s.copies_pubsub AS copies_pubsub, s.late_mqtt AS late_mqtt,
           s.late_pubsub AS late_pubsub, s.mismatch AS mismatch, s.run AS run, s.prev_seq AS prev_seq,
           s.nth_of_run AS nth_of_run, s.run_size AS run_size, e.epoch_start_ms AS epoch_start_ms, e.newest.3 AS last_seq,
           toUInt64(0) AS vanished_first, false AS start_unknown
    FROM sequenced AS s
    ASOF LEFT JOIN epochs AS e ON s.device_id = e.device_id AND s.run_first_ms >= e.epoch_start_ms
    UNION ALL
    -- the seqs an epoch owed in the window if none of its locations arrived: from 1 if it began
    -- in the window, else from the lastSeq + 1 of its first report cut in the window (when a
    -- later one exists); start_unknown when a report in the window shows it active and neither
    -- says where its seqs begin (nor does the last report before the window show the same lastSeq)
    SELECT device_id, epoch, false, '', 0, newest.10, newest.9, newest.2, newest.10 IN ('both', 'mqtt'),
           newest.10 IN ('both', 'pubsub'), 0, 0, false, false, false, 0, 0, 0, 0, epoch_start_ms, newest.3,
           multiIf(epoch_start_ms >= {from_ms:Int64}, toUInt64(1),
                   has_first_in AND first_in.1 < newest.1, first_in.2 + 1,
                   toUInt64(0)),
           NOT (epoch_start_ms >= {from_ms:Int64} OR (has_first_in AND first_in.1 < newest.1)
                OR newest.2 < {from_ms:Int64} OR (has_last_before AND last_before.2 = newest.3))
    FROM epochs
),
placed AS (
    -- per epoch: whether any of its runs arrived, and which of its runs is the last
    SELECT *,
           countIf(is_location) OVER by_epoch > 0 AS epoch_has_runs,
           maxIf(run, is_location) OVER by_epoch = run AS last_of_epoch
    FROM stream
    WINDOW by_epoch AS (PARTITION BY device_id, epoch)
),
facts AS (
    -- per location: itself (kind 0), each pipeline it was owed to and never reached (kind 1), each
    -- seq of its run seen on neither pipeline just below it or after it (kind 2: inside the run
    -- from the seq before it, or from 1 before the first location of a run after a restart or of
    -- an epoch begun in the window; after the last location of its epoch's last run up to the
    -- newest lastSeq), and a run of no reported epoch (kind 3); per epoch without runs, each seq
    -- it owed (kind 2) or that it cannot be bounded (kind 3). gone_on is the pipeline for kind 1,
    -- the reason for kind 3. ts_ms: the location's timestamp (the report's cut for an epoch).
    SELECT device_id, epoch, event_id, seq, route, cfg, ts_ms, owes_mqtt, owes_pubsub, copies_mqtt, copies_pubsub,
           late_mqtt, late_pubsub, mismatch, fact.1 AS kind, fact.2 AS gone_seq, fact.3 AS gone_on
    FROM placed
    ARRAY JOIN if(is_location,
        arrayConcat(
            [(0, seq, '')],
            if(owes_mqtt AND copies_mqtt = 0, [(1, seq, 'mqtt')], []),
            if(owes_pubsub AND copies_pubsub = 0, [(1, seq, 'pubsub')], []),
            arrayMap(x -> (2, x, ''),
                     if(nth_of_run = 1, if(run > 0 OR (epoch != '' AND epoch_start_ms >= {from_ms:Int64}), range(toUInt64(1), seq), []),
                        range(prev_seq + 1, seq))),
            arrayMap(x -> (2, x, ''),
                     if(nth_of_run = run_size AND epoch != '' AND last_of_epoch AND last_seq > seq, range(seq + 1, last_seq + 1), [])),
            if(nth_of_run = 1 AND epoch = '',
               [(3, toUInt64(0), if(device_id IN (SELECT device_id FROM epochs), 'other_epoch', 'no_report'))], [])),
        if(epoch_has_runs, [],
           arrayConcat(arrayMap(x -> (2, x, ''), if(vanished_first > 0 AND vanished_first <= last_seq, range(vanished_first, last_seq + 1), [])),
                       if(start_unknown, [(3, toUInt64(0), 'start_unknown')], [])))
    ) AS fact
),
reconciled AS (
    SELECT
        device_id, epoch, f.* EXCEPT (device_id, epoch),
        -- the epoch's newest report (see epochs)
        e.newest AS newest,
        -- the pipelines it is missing on, and whether the verifier's own gap there explains it
        kind = 1 AND gone_on = 'mqtt' OR kind = 2 AND route IN ('both', 'mqtt') AS need_mqtt,
        kind = 1 AND gone_on = 'pubsub' OR kind = 2 AND route IN ('both', 'pubsub') AS need_pubsub,
        arrayExists(s -> NOT (s.1 = 0 AND s.2 = none_after) AND s.1 < gone_seq AND gone_seq < s.2
                         AND (s.2 != none_after OR sm.last_at >= s.3 - gap_margin_ms)
                         AND (s.1 != 0 OR sm.first_at <= s.4 + gap_margin_ms), sm.list) AS gap_mqtt,
        arrayExists(s -> NOT (s.1 = 0 AND s.2 = none_after) AND s.1 < gone_seq AND gone_seq < s.2
                         AND (s.2 != none_after OR sp.last_at >= s.3 - gap_margin_ms)
                         AND (s.1 != 0 OR sp.first_at <= s.4 + gap_margin_ms), sp.list) AS gap_pubsub,
        epoch != '' AND newest.3 >= gone_seq AS covered,
        -- whether the report may still hold it for a transport: from the lowest seq it owes there,
        -- or where that is not known (0 with a depth above 0) among the newest depth
        gone_seq <= newest.3 AND multiIf(newest.6 > 0, gone_seq >= newest.6,
                                         newest.4 > 0, gone_seq > newest.3 - least(newest.4, newest.3), false) AS holds_mqtt,
        gone_seq <= newest.3 AND multiIf(newest.7 > 0, gone_seq >= newest.7,
                                         newest.5 > 0, gone_seq > newest.3 - least(newest.5, newest.3), false) AS holds_pubsub,
        (need_mqtt AND NOT gap_mqtt) OR (need_pubsub AND NOT gap_pubsub) AS unexplained_by_gaps,
        NOT covered AND unexplained_by_gaps AS is_unexplained,
        covered AND ((need_mqtt AND NOT gap_mqtt AND NOT holds_mqtt) OR (need_pubsub AND NOT gap_pubsub AND NOT holds_pubsub)) AS acknowledged,
        -- the epoch's drops go to its oldest missing locations some transport acknowledged
        kind IN (1, 2) AND acknowledged AS may_be_dropped,
        sum(may_be_dropped) OVER (PARTITION BY device_id, epoch ORDER BY gone_seq, if(kind = 2, '', f.event_id)
                                  ROWS UNBOUNDED PRECEDING) AS drop_rank,
        multiIf(kind NOT IN (1, 2), '',
                is_unexplained, 'unexplained',
                acknowledged AND drop_rank <= newest.8, 'dropped_on_device',
                acknowledged, 'acked_not_received',
                covered AND unexplained_by_gaps, 'still_queued',
                'verifier_gap') AS cause
    FROM facts AS f
    LEFT JOIN (SELECT device_id, epoch, newest FROM epochs) AS e USING (device_id, epoch)
    LEFT JOIN (SELECT device_id, list, first_at, last_at FROM shadows WHERE NOT on_pubsub) AS sm USING (device_id)
    LEFT JOIN (SELECT device_id, list, first_at, last_at FROM shadows WHERE on_pubsub) AS sp USING (device_id)
),
steps AS (
    SELECT
        cfg,
        uniqExactIf(device_id, kind IN (0, 2)) AS devices,
        countIf(kind = 0) AS locations,
        countIf(kind IN (0, 1, 2)) AS facts,
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
        countIf(cause = 'verifier_gap') AS verifier_gap,
        countIf(cause = 'unexplained') AS unexplained,
        arraySort(groupArrayIf((device_id, gone_seq, kind, if(kind = 2, '', event_id), gone_on, cause), kind IN (1, 2))) AS missing,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_mqtt > 1)) AS duplicated_mqtt,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_pubsub > 1)) AS duplicated_pubsub,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_mqtt)) AS late_mqtt_ids,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_pubsub)) AS late_pubsub_ids,
        arraySort(groupArrayIf(event_id, kind = 0 AND mismatch)) AS mismatched_ids,
        -- device runs no report bounds: (device_id, epoch, reason)
        arraySort(groupArrayIf((device_id, epoch, gone_on), kind = 3)) AS unbounded
    FROM reconciled
    GROUP BY cfg
)
-- (the steps: sli.sql puts its own final SELECT here, after the same CTEs)
SELECT
    cfg, devices, locations, facts,
    mqtt_expected, mqtt_received, mqtt_missing, mqtt_duplicates, mqtt_fallbacks, mqtt_unexpected, mqtt_late,
    pubsub_expected, pubsub_received, pubsub_missing, pubsub_duplicates, pubsub_fallbacks, pubsub_unexpected, pubsub_late,
    unseen, mismatches,
    -- causes with at least one location, as the CLI lists them
    mapFilter((c, n) -> n > 0, map('acked_not_received', acked_not_received, 'still_queued', still_queued,
                                   'dropped_on_device', dropped_on_device, 'verifier_gap', verifier_gap,
                                   'unexplained', unexplained)) AS causes,
    -- what counts against the pipelines, and the trials it is a rate of
    acked_not_received + unexplained + mismatches + pubsub_unexpected AS discrepancies,
    mqtt_expected + pubsub_expected + unseen AS trials,
    if(trials = 0, 0., discrepancies / trials) AS rate,
    -- the trials zero discrepancies need for the upper bound to reach max_rate_bound
    toUInt64(ceil(log(1 - confidence) / log(1 - {max_rate_bound:Float64}))) AS min_trials,
    missing, duplicated_mqtt, duplicated_pubsub, late_mqtt_ids, late_pubsub_ids, mismatched_ids, unbounded
FROM steps
ORDER BY cfg
