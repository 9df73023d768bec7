-- The fleet rollup of migration reports (tables: schema.sql). One query, three parameters:
--
--   {by:String}      'hour': one row per config version x route x SDK x platform x hour of cut_at
--                    (UTC); 'total': one row for the whole fleet (those columns NULL).
--   {now_ms:Int64}   "now" in ms since the Unix epoch; 0 = the newest cut_at in the table.
--                    Reports cut after it are left out (an as-of view).
--   {since_ms:Int64} count only intervals that end at or after it (0 = all). Older reports still
--                    serve as the baseline their successors' deltas are taken from.
--
-- How figures are made (docs/CONTRACT.md, "Reading reports"):
--   * Copies of a report collapse on (device_id, epoch, report_seq), merged or not.
--   * Counters are cumulative per (device_id, epoch): each report counts its counters minus
--     those of the previous report of its epoch, the first one counts from 0; a lost report's
--     counts show up in the next delta and a new epoch starts from 0 again. A counter that went
--     down (which the SDK must never send) counts 0 for that interval and is counted in
--     counter_regressions. Each delta goes to the decision (cfg, route) and hour of the report
--     that ends the interval.
--   * Latency percentiles come from the element-wise sum of the histogram deltas: the q quantile
--     is b(i) = 0.5 * 1.25^i ms for the first i whose running sum reaches ceil(q * total); inf
--     when that is the overflow count (above b(64), about 797 s); NULL without samples.
--   * Per device, its newest report (by cut_at) gives the gauges: backlog (depth per transport),
--     open breakers, and silent = that report is older than 2 x its interval_secs before now.
--     They count in the row of that newest report.
--
-- Run it with the parameters set, e.g. over HTTP: ?param_by=hour&param_now_ms=0&param_since_ms=0
WITH
    (SELECT max(toUnixTimestamp64Milli(cut_at)) FROM migration_reports) AS newest_ms,
    if({now_ms:Int64} > 0, {now_ms:Int64}, newest_ms) AS as_of_ms,
    {by:String} = 'hour' AS by_hour,
reports AS (
    -- one row per report, however many copies arrived and whether or not merges ran
    SELECT
        device_id, epoch, report_seq, toUnixTimestamp64Milli(cut_at) AS cut_ms, interval_secs,
        sdk, platform, cfg, route,
        [accepted, fallbacks, mqtt_acked, mqtt_failed, mqtt_retries, pubsub_acked, pubsub_failed, pubsub_retries] AS counters,
        latency_mqtt, latency_pubsub, mqtt_depth, pubsub_depth, mqtt_breaker_open, pubsub_breaker_open
    FROM migration_reports
    WHERE toUnixTimestamp64Milli(cut_at) <= as_of_ms
    LIMIT 1 BY device_id, epoch, report_seq
),
previous AS (
    -- each report next to the previous report of its epoch (zeros for the first one)
    SELECT
        *,
        lagInFrame(report_seq, 1, 0) OVER epoch_order AS prev_seq,
        lagInFrame(counters, 1, []) OVER epoch_order AS prev_counters,
        lagInFrame(latency_mqtt, 1, []) OVER epoch_order AS prev_latency_mqtt,
        lagInFrame(latency_pubsub, 1, []) OVER epoch_order AS prev_latency_pubsub,
        row_number() OVER newest_first = 1 AS is_newest
    FROM reports
    WINDOW
        epoch_order AS (PARTITION BY device_id, epoch ORDER BY report_seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW),
        newest_first AS (PARTITION BY device_id ORDER BY cut_ms DESC, epoch DESC, report_seq DESC)
),
intervals AS (
    SELECT
        *,
        arrayResize(prev_counters, length(counters)) AS before,
        arrayResize(prev_latency_mqtt, 66) AS before_mqtt,
        arrayResize(prev_latency_pubsub, 66) AS before_pubsub,
        -- the deltas (d in the order of `counters`); a value that went down counts 0
        arrayMap((now_, then_) -> if(now_ >= then_, now_ - then_, 0), counters, before) AS d,
        arrayMap((now_, then_) -> if(now_ >= then_, now_ - then_, 0), latency_mqtt, before_mqtt) AS d_latency_mqtt,
        arrayMap((now_, then_) -> if(now_ >= then_, now_ - then_, 0), latency_pubsub, before_pubsub) AS d_latency_pubsub,
        arrayExists((now_, then_) -> now_ < then_,
            arrayConcat(counters, latency_mqtt, latency_pubsub), arrayConcat(before, before_mqtt, before_pubsub)) AS regressed,
        cut_ms >= {since_ms:Int64} AS counted,
        is_newest AND cut_ms + 2000 * toInt64(interval_secs) < as_of_ms AS silent
    FROM previous
),
grouped AS (
    SELECT
        if(by_hour, toStartOfHour(fromUnixTimestamp64Milli(cut_ms, 'UTC')), NULL) AS hour,
        if(by_hour, cfg, NULL) AS cfg_,
        if(by_hour, route, NULL) AS route_,
        if(by_hour, sdk, NULL) AS sdk_,
        if(by_hour, platform, NULL) AS platform_,
        uniqExactIf(device_id, counted) AS devices,
        countIf(counted) AS reports,
        sumIf(report_seq - prev_seq - 1, counted) AS missing_reports,
        uniqExactIf(device_id, silent) AS silent_devices,
        sumIf(d[1], counted) AS accepted,
        sumIf(d[2], counted) AS fallbacks,
        sumIf(d[3], counted) AS delivered_mqtt,
        sumIf(d[4], counted) AS failed_mqtt,
        sumIf(d[5], counted) AS retries_mqtt,
        sumIf(d[6], counted) AS delivered_pubsub,
        sumIf(d[7], counted) AS failed_pubsub,
        sumIf(d[8], counted) AS retries_pubsub,
        sumForEachIf(d_latency_mqtt, counted) AS histogram_mqtt,
        sumForEachIf(d_latency_pubsub, counted) AS histogram_pubsub,
        sumIf(mqtt_depth, is_newest) AS backlog_mqtt,
        sumIf(pubsub_depth, is_newest) AS backlog_pubsub,
        countIf(is_newest AND mqtt_breaker_open) AS breaker_open_mqtt,
        countIf(is_newest AND pubsub_breaker_open) AS breaker_open_pubsub,
        countIf(counted AND regressed) AS counter_regressions
    FROM intervals
    WHERE throwIf({by:String} NOT IN ('hour', 'total'), 'parameter by must be hour or total') = 0
    GROUP BY hour, cfg_, route_, sdk_, platform_
    -- a group of baselines only (older than since_ms, none a device's newest) says nothing
    HAVING countIf(counted OR is_newest) > 0
),
quantiles AS (
    -- [p50, p95, p99] of each merged histogram: the first (1-based) index k whose running sum
    -- reaches the rank ceil(pct * total / 100), computed in integers and at least 1; index k is
    -- count k - 1, so its bound is b(k - 1) = 0.5 * 1.25^(k - 1) ms, and k = 66 is the overflow
    SELECT
        *,
        arrayMap(pct -> if(arraySum(histogram_mqtt) = 0, NULL,
            arrayFirstIndex(running -> running >= greatest(1, intDiv(pct * arraySum(histogram_mqtt) + 99, 100)), arrayCumSum(histogram_mqtt))),
            [50, 95, 99]) AS index_mqtt,
        arrayMap(pct -> if(arraySum(histogram_pubsub) = 0, NULL,
            arrayFirstIndex(running -> running >= greatest(1, intDiv(pct * arraySum(histogram_pubsub) + 99, 100)), arrayCumSum(histogram_pubsub))),
            [50, 95, 99]) AS index_pubsub,
        arrayMap(i -> if(i = 66, inf, 0.5 * pow(1.25, i - 1)), index_mqtt) AS ms_mqtt,
        arrayMap(i -> if(i = 66, inf, 0.5 * pow(1.25, i - 1)), index_pubsub) AS ms_pubsub
    FROM grouped
)
SELECT
    toString(hour) AS hour,
    cfg_ AS cfg,
    route_ AS route,
    sdk_ AS sdk,
    platform_ AS platform,
    devices,
    reports,
    missing_reports,
    silent_devices,
    accepted,
    delivered_mqtt,
    delivered_pubsub,
    failed_mqtt,
    failed_pubsub,
    delivered_mqtt / nullIf(delivered_mqtt + failed_mqtt, 0) AS success_mqtt,
    delivered_pubsub / nullIf(delivered_pubsub + failed_pubsub, 0) AS success_pubsub,
    retries_mqtt,
    retries_pubsub,
    1000 * retries_mqtt / nullIf(delivered_mqtt, 0) AS retries_per_1k_mqtt,
    1000 * retries_pubsub / nullIf(delivered_pubsub, 0) AS retries_per_1k_pubsub,
    fallbacks,
    fallbacks / nullIf(accepted, 0) AS fallback_rate,
    ms_mqtt[1] AS p50_mqtt_ms,
    ms_mqtt[2] AS p95_mqtt_ms,
    ms_mqtt[3] AS p99_mqtt_ms,
    ms_pubsub[1] AS p50_pubsub_ms,
    ms_pubsub[2] AS p95_pubsub_ms,
    ms_pubsub[3] AS p99_pubsub_ms,
    backlog_mqtt,
    backlog_pubsub,
    breaker_open_mqtt,
    breaker_open_pubsub,
    counter_regressions
FROM quantiles
ORDER BY hour, cfg, route, sdk, platform
