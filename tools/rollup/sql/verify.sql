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
-- Returns one row per cfg, ordered by cfg (a row with cfg NULL, if any, carries only the
-- unbounded runs); columns are named after the CLI's JSON fields (mqtt_expected is
-- steps[].mqtt.expected). `missing` lists (device_id, seq, kind, event_id, pipeline, cause) with
-- kind 1 = owed and not received, 2 = seq seen on neither pipeline (event_id '' and pipeline
-- ''), ordered by device, seq. `unbounded` lists (device_id, epoch, reason).
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
    -- seen on either pipeline
    SELECT device_id, on_pubsub, groupArray((before, after, from_ms, to_ms)) AS list
    FROM (
        SELECT a.device_id AS device_id, g.on_pubsub AS on_pubsub, g.from_ms AS from_ms, g.to_ms AS to_ms,
               maxIf(a.seq, a.at_ms < g.from_ms - gap_margin_ms) AS before,
               if(countIf(a.at_ms > g.to_ms + gap_margin_ms) = 0, none_after, minIf(a.seq, a.at_ms > g.to_ms + gap_margin_ms)) AS after
        FROM arrivals AS a INNER JOIN gaps AS g ON a.on_pubsub = g.on_pubsub
        GROUP BY a.device_id, g.on_pubsub, g.from_ms, g.to_ms
    )
    GROUP BY device_id, on_pubsub
),
activity AS (
    SELECT device_id, min(at_ms) AS first_at, max(at_ms) AS last_at FROM arrivals GROUP BY device_id
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
reporting AS (
    SELECT DISTINCT device_id FROM epochs
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
run_epochs AS (
    -- each run's epoch: the latest that began at or before its first eventId's time (a UUIDv7's
    -- milliseconds; an eventId that is none belongs to the newest epoch); epoch '' when none
    SELECT h.device_id AS device_id, h.run AS run, e.epoch AS epoch, e.epoch_start_ms AS epoch_start_ms, e.newest AS newest,
           max(h.run) OVER (PARTITION BY h.device_id, e.epoch) = h.run AS last_of_epoch
    FROM (
        SELECT device_id, run,
               if(match(min(event_id), '^[0-9a-f]{8}-[0-9a-f]{4}-7'),
                  toInt64(reinterpretAsUInt64(reverse(unhex(substring(replaceAll(min(event_id), '-', ''), 1, 12))))),
                  9223372036854775807) AS first_ms
        FROM runs GROUP BY device_id, run
    ) AS h
    ASOF LEFT JOIN epochs AS e ON h.device_id = e.device_id AND h.first_ms >= e.epoch_start_ms
),
sequenced AS (
    -- the seq values of a run seen on neither pipeline, each given to the location just above
    -- it (with the lowest cfg of that seq's locations): from the previous seq of the run + 1, or
    -- from 1 before the first location of a run after a restart or of an epoch begun in the
    -- window; and after the run's last location up to its epoch's newest lastSeq
    SELECT
        runs.*,
        re.epoch AS epoch,
        re.newest AS newest,
        lagInFrame(seq, 1, 0) OVER by_seq AS prev_seq,
        row_number() OVER by_seq = 1 AS first_of_run,
        row_number() OVER (PARTITION BY device_id, run ORDER BY seq DESC, cfg DESC) = 1 AS last_of_run,
        run > 0 OR (re.epoch != '' AND re.epoch_start_ms >= {from_ms:Int64}) AS from_one,
        if(first_of_run, if(from_one, range(toUInt64(1), seq), []), range(prev_seq + 1, seq)) AS skipped,
        if(last_of_run AND re.epoch != '' AND re.last_of_epoch AND newest.3 > seq, range(seq + 1, newest.3 + 1), []) AS tail
    FROM runs
    LEFT JOIN run_epochs AS re USING (device_id, run)
    WINDOW by_seq AS (PARTITION BY device_id, run ORDER BY seq, cfg ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
),
vanished AS (
    -- epochs with reports and no run: what their reports say was owed inside the window
    SELECT
        e.device_id AS device_id, e.epoch AS epoch, e.newest AS newest,
        multiIf(e.epoch_start_ms >= {from_ms:Int64}, toUInt64(1),
                e.has_first_in AND e.first_in.1 < e.newest.1, e.first_in.2 + 1,
                toUInt64(0)) AS first,
        first = 0 AND NOT (e.newest.2 < {from_ms:Int64} OR (e.has_last_before AND e.last_before.2 = e.newest.3)) AS start_unknown
    FROM epochs AS e
    LEFT ANTI JOIN (SELECT DISTINCT device_id, epoch FROM run_epochs WHERE epoch != '') AS r
        ON e.device_id = r.device_id AND e.epoch = r.epoch
),
facts AS (
    -- per location: itself (kind 0), each pipeline it was owed to and never reached (kind 1),
    -- each seq skipped just below it or after it (kind 2); then each seq of an epoch without runs
    -- (ts_ms: the location's timestamp; for an epoch without runs, its newest report's cut)
    SELECT device_id, epoch, newest, event_id, seq, route, cfg, ts_ms, owes_mqtt, owes_pubsub, copies_mqtt, copies_pubsub,
           late_mqtt, late_pubsub, mismatch, fact.1 AS kind, fact.2 AS gone_seq, fact.3 AS gone_on
    FROM sequenced
    ARRAY JOIN arrayConcat(
        [(0, seq, '')],
        if(owes_mqtt AND copies_mqtt = 0, [(1, seq, 'mqtt')], []),
        if(owes_pubsub AND copies_pubsub = 0, [(1, seq, 'pubsub')], []),
        arrayMap(s -> (2, s, ''), skipped),
        arrayMap(s -> (2, s, ''), tail)
    ) AS fact
    UNION ALL
    SELECT device_id, epoch, newest, '' AS event_id, 0 AS seq, newest.10 AS route, newest.9 AS cfg, newest.2 AS ts_ms,
           route IN ('both', 'mqtt') AS owes_mqtt, route IN ('both', 'pubsub') AS owes_pubsub,
           0 AS copies_mqtt, 0 AS copies_pubsub, false AS late_mqtt, false AS late_pubsub, false AS mismatch,
           2 AS kind, gone_seq, '' AS gone_on
    FROM vanished
    ARRAY JOIN if(first > 0 AND first <= newest.3, range(first, newest.3 + 1), []) AS gone_seq
),
reconciled AS (
    SELECT
        device_id, f.* EXCEPT (device_id),
        -- the pipelines it is missing on, and whether the verifier's own gap there explains it
        kind = 1 AND gone_on = 'mqtt' OR kind = 2 AND route IN ('both', 'mqtt') AS need_mqtt,
        kind = 1 AND gone_on = 'pubsub' OR kind = 2 AND route IN ('both', 'pubsub') AS need_pubsub,
        arrayExists(s -> NOT (s.1 = 0 AND s.2 = none_after) AND s.1 < gone_seq AND gone_seq < s.2
                         AND (s.2 != none_after OR a.last_at >= s.3 - gap_margin_ms)
                         AND (s.1 != 0 OR a.first_at <= s.4 + gap_margin_ms), sm.list) AS gap_mqtt,
        arrayExists(s -> NOT (s.1 = 0 AND s.2 = none_after) AND s.1 < gone_seq AND gone_seq < s.2
                         AND (s.2 != none_after OR a.last_at >= s.3 - gap_margin_ms)
                         AND (s.1 != 0 OR a.first_at <= s.4 + gap_margin_ms), sp.list) AS gap_pubsub,
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
        kind > 0 AND acknowledged AS may_be_dropped,
        sum(may_be_dropped) OVER (PARTITION BY device_id, f.epoch ORDER BY gone_seq, if(kind = 2, '', f.event_id)
                                  ROWS UNBOUNDED PRECEDING) AS drop_rank,
        multiIf(kind = 0, '',
                is_unexplained, 'unexplained',
                acknowledged AND drop_rank <= newest.8, 'dropped_on_device',
                acknowledged, 'acked_not_received',
                covered AND unexplained_by_gaps, 'still_queued',
                'verifier_gap') AS cause
    FROM facts AS f
    LEFT JOIN activity AS a USING (device_id)
    LEFT JOIN (SELECT device_id, list FROM shadows WHERE NOT on_pubsub) AS sm USING (device_id)
    LEFT JOIN (SELECT device_id, list FROM shadows WHERE on_pubsub) AS sp USING (device_id)
),
steps AS (
    SELECT
        cfg,
        uniqExactIf(device_id, kind != 1) AS devices,
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
        countIf(cause = 'verifier_gap') AS verifier_gap,
        countIf(cause = 'unexplained') AS unexplained,
        arraySort(groupArrayIf((device_id, gone_seq, kind, if(kind = 2, '', event_id), gone_on, cause), kind > 0)) AS missing,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_mqtt > 1)) AS duplicated_mqtt,
        arraySort(groupArrayIf(event_id, kind = 0 AND copies_pubsub > 1)) AS duplicated_pubsub,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_mqtt)) AS late_mqtt_ids,
        arraySort(groupArrayIf(event_id, kind = 0 AND late_pubsub)) AS late_pubsub_ids,
        arraySort(groupArrayIf(event_id, kind = 0 AND mismatch)) AS mismatched_ids
    FROM reconciled
    GROUP BY cfg
),
unbounded AS (
    -- runs of no reported epoch, and epochs without runs whose reports cannot say where the
    -- window's seqs begin
    SELECT arraySort(groupArray((device_id, epoch, reason))) AS list
    FROM (
        SELECT re.device_id AS device_id, '' AS epoch,
               if(re.device_id IN (SELECT device_id FROM reporting), 'other_epoch', 'no_report') AS reason
        FROM run_epochs AS re WHERE re.epoch = ''
        UNION ALL
        SELECT device_id, epoch, 'start_unknown' AS reason FROM vanished WHERE start_unknown
    )
)
-- (the steps: sli.sql puts its own final SELECT here, after the same CTEs)
SELECT
    cfg, devices, locations,
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
    missing, duplicated_mqtt, duplicated_pubsub, late_mqtt_ids, late_pubsub_ids, mismatched_ids,
    (SELECT list FROM unbounded) AS unbounded
FROM steps
ORDER BY cfg
