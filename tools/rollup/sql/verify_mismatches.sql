-- The copies of the mismatched locations verify.sql found (docs/VERIFY.md, "Output"): per
-- eventId, each distinct message per pipeline with its digest (xxHash64 of the bytes, 16 hex
-- digits) and how many copies, and the fields whose values differ between the copies, as the
-- CLI names them (tools/cli/src/verify/payload.rs): the contract's fields in its order, then
-- "(other)" for any other field. Values are compared as JSON values (ClickHouse's
-- JSONExtractKeysAndValuesRaw writes each one in one canonical form: 1.0 and 1 are the same
-- number); a mismatch whose fields all agree differs only in the bytes around the values.
--
-- Parameters: {ids:Array(String)} the eventIds (verify.sql's mismatched_ids, at most 1,000),
-- {from_ms:Int64}, {to_ms:Int64}, {margin_ms:Int64} as in verify.sql (the copies read).
WITH
    fromUnixTimestamp64Milli({from_ms:Int64} - {margin_ms:Int64}, 'UTC') AS scan_from,
    fromUnixTimestamp64Milli({to_ms:Int64} + {margin_ms:Int64}, 'UTC') AS scan_to,
    ['eventId', 'deviceId', 'companyId', 'latitude', 'longitude', 'accuracy', 'speed', 'bearing', 'altitude',
     'timestamp', 'battery', 'schemaVersion', 'seq', 'route', 'cfg'] AS known,
    arrayPushBack(known, '(other)') AS names,
variants AS (
    SELECT event_id, on_pubsub, xxHash64(payload) AS digest, count() AS n, min(received_at) AS first_at,
           any(device_id) AS device_id, any(seq) AS seq, any(cfg) AS cfg,
           JSONExtractKeysAndValuesRaw(any(payload)) AS kv
    FROM (
        SELECT event_id, device_id, seq, cfg, received_at, payload, false AS on_pubsub FROM locations_mqtt
        WHERE event_id IN {ids:Array(String)} AND received_at >= scan_from AND received_at < scan_to
          AND route IN ('both', 'mqtt', 'pubsub') AND device_id != ''
        UNION ALL
        SELECT event_id, device_id, seq, cfg, received_at, payload, true AS on_pubsub FROM locations_pubsub
        WHERE event_id IN {ids:Array(String)} AND received_at >= scan_from AND received_at < scan_to
          AND route IN ('both', 'mqtt', 'pubsub') AND device_id != ''
    )
    GROUP BY event_id, on_pubsub, digest
)
SELECT
    event_id,
    argMin((device_id, seq, cfg), first_at) AS first,
    arraySort(groupArray((leftPad(lower(hex(digest)), 16, '0'), if(on_pubsub, 'pubsub', 'mqtt'), n))) AS copies,
    -- each variant's fields: '=' and the value where present, '' where absent; then the others
    groupArray(arrayPushBack(arrayMap(f -> if(has(kv.1, f), concat('=', arrayFirst(x -> x.1 = f, kv).2), ''), known),
                             toString(arraySort(arrayFilter(x -> NOT has(known, x.1), kv))))) AS vectors,
    arrayMap(i -> names[i], arrayFilter(i -> length(arrayDistinct(arrayMap(v -> v[i], vectors))) > 1, range(1, 17))) AS fields
FROM variants
GROUP BY event_id
ORDER BY event_id
