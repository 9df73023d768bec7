package io.dualpub.bench

import io.dualpub.BenchObject
import io.dualpub.DualPublisher
import io.dualpub.Location
import io.dualpub.MigrationConfig
import io.dualpub.MqttSettings
import io.dualpub.PubSubSettings
import io.dualpub.RolloutAlgorithm
import io.dualpub.SdkConfig
import io.dualpub.benchEchoId
import io.dualpub.benchEmpty
import io.dualpub.benchEmptyString
import io.dualpub.benchTimedSendLocation
import java.io.File
import java.net.ServerSocket
import java.nio.file.Files
import kotlin.system.exitProcess

/**
 * What `sendLocation` costs a Kotlin caller on the JVM next to the floor of an FFI call: exported
 * functions that do nothing with the same arguments (`benchEmpty(location)`, in the library only
 * with the `ffi-bench` feature). Run through scripts/kotlin-bench, which builds that library and
 * its bindings; see docs/FFI-BENCH.md.
 *
 * Method: the first calls of each function are timed before any warm-up (the JIT is cold); then
 * every function is warmed up, then called in interleaved rounds (each round runs `calls` calls of
 * every function, in an order that rotates) so that drift on a noisy machine hits them alike.
 * Every call is timed on its own with System.nanoTime; percentiles are nearest-rank.
 *
 * Arguments: [--smoke] [--warmup N] [--rounds N] [--calls N]. The markdown table goes to stdout,
 * progress to stderr. `--smoke` runs a few thousand calls and fails unless every figure is
 * positive and p50 ≤ p90 ≤ p99.
 */

/** A function timed by the caller; `call` returns what the callee timed itself (ns), or 0. */
private class Case(val name: String, val what: String, val call: (Location, String) -> Long)

private fun percentile(sorted: LongArray, q: Double): Long =
    sorted[(Math.ceil(sorted.size * q).toInt()).coerceIn(1, sorted.size) - 1]

private fun us(ns: Long): String = String.format("%.2f", ns / 1000.0)

fun main(args: Array<String>) {
    var smoke = false
    var warmup = 20_000
    var rounds = 20
    var calls = 5_000
    var coldCalls = 200
    var i = 0
    while (i < args.size) {
        when (args[i]) {
            "--smoke" -> { smoke = true; warmup = 2_000; rounds = 4; calls = 500; coldCalls = 50 }
            "--warmup" -> warmup = args[++i].toInt()
            "--rounds" -> rounds = args[++i].toInt()
            "--calls" -> calls = args[++i].toInt()
            else -> { System.err.println("unknown argument ${args[i]}"); exitProcess(2) }
        }
        i++
    }

    // Nothing is delivered: MQTT points at a loopback port nobody listens on (refused at once; the
    // transport retries in the background with backoff), Pub/Sub and the migration reports are
    // off, so sendLocation's caller path and the store thread's SQLite writes are what run.
    val closedPort = ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress()).use { it.localPort }
    val dataDir = Files.createTempDirectory("dualpub-kotlin-bench")
    val total = coldCalls + warmup + rounds.toLong() * calls
    val config = SdkConfig(
        deviceId = "kotlin-bench",
        mqtt = MqttSettings(brokerUrl = "mqtt://127.0.0.1:$closedPort"),
        pubsub = PubSubSettings(endpoint = "http://127.0.0.1:9", project = "bench", topic = "bench"),
        dataDir = dataDir.toString(),
        migration = MigrationConfig(version = 1uL, pubsubEnabled = false, rolloutAlgorithm = RolloutAlgorithm.V1),
        allowInsecure = true,
        // Room for every location of the run: none is dropped for the cap (dropping would not
        // change the caller's cost, but keeps the store's work the same from start to end).
        // Two of the cases send through this publisher (sendLocation and the Rust-timed one).
        maxOutboxRows = maxOf(100_000L, 2 * total + 1_000).toUInt(),
        reportsEnabled = false,
    )
    val publisher = DualPublisher(config, null)

    // Locations made before the timing, cycled through (valid: at most a minute old).
    val now = System.currentTimeMillis()
    val locations = Array(1024) { n ->
        Location(latitude = 52.52 + n * 1e-5, longitude = 13.405, accuracy = 5.0, speed = 1.2, bearing = 90.0,
            altitude = 34.0, timestampMs = now - 60_000 + n, battery = 0.82)
    }
    val text = "00000000-0000-7000-8000-000000000000"
    var lastId = ""
    var lastEcho = ""
    val bench = BenchObject()
    val cases = listOf(
        Case("benchEmpty(location)", "the floor: record in, nothing done, nothing out") { l, _ -> benchEmpty(l); 0 },
        Case("benchEchoId(location): String", "record in, a fixed 36-char string out") { l, _ -> benchEchoId(l); 0 },
        Case("benchEmptyString(string)", "a 36-char string in, nothing done") { _, s -> benchEmptyString(s); 0 },
        Case("BenchObject.echoId(location): String", "sendLocation's shape (object method: handle clone; record in; string or error out), nothing done") { l, _ ->
            lastEcho = bench.echoId(l); 0
        },
        Case("benchTimedSendLocation(publisher, location)", "sendLocation called and timed inside Rust (next row: that time)") { l, _ ->
            benchTimedSendLocation(publisher, l).toLong()
        },
        Case("sendLocation(location): String", "the real call") { l, _ -> lastId = publisher.sendLocation(l); 0 },
    )

    // Cold: the first calls of each, before any warm-up (the very first includes loading the library).
    val cold = cases.map { c ->
        LongArray(coldCalls) { n ->
            val t = System.nanoTime(); c.call(locations[n and 1023], text); System.nanoTime() - t
        }.also { it.sort() }
    }
    System.err.println("warm-up: $warmup calls of each")
    for (c in cases) for (n in 0 until warmup) c.call(locations[n and 1023], text)

    System.err.println("measuring: $rounds interleaved rounds of $calls calls of each")
    val samples = cases.map { LongArray(rounds * calls) }
    val inner = cases.map { LongArray(rounds * calls) }
    val batchNs = LongArray(cases.size)
    for (r in 0 until rounds) {
        for (k in cases.indices) {
            val idx = (k + r) % cases.size   // rotate the order each round
            val c = cases[idx]
            val out = samples[idx]
            val base = r * calls
            val start = System.nanoTime()
            for (n in 0 until calls) {
                val l = locations[(base + n) and 1023]
                val t = System.nanoTime()
                val own = c.call(l, text)
                out[base + n] = System.nanoTime() - t
                inner[idx][base + n] = own
            }
            batchNs[idx] += System.nanoTime() - start
        }
    }
    check(lastId.length == 36) { "sendLocation returned \"$lastId\", not an eventId" }
    check(lastEcho.length == 36)
    bench.close()
    publisher.shutdown()
    publisher.close()
    dataDir.toFile().deleteRecursively()

    val n = rounds * calls
    val floor = samples[0].also { it.sort() }
    val p50Floor = percentile(floor, 0.5)
    val sb = StringBuilder()
    sb.append("| call | what | calls | p50 µs | p90 µs | p99 µs | mean µs (batch time / calls) | p50 / floor |\n")
    sb.append("|---|---|---|---|---|---|---|---|\n")
    var sane = true
    for ((k, c) in cases.withIndex()) {
        val s = samples[k].also { it.sort() }
        val (p50, p90, p99) = Triple(percentile(s, 0.5), percentile(s, 0.9), percentile(s, 0.99))
        if (p50 <= 0 || p50 > p90 || p90 > p99 || batchNs[k] <= 0) sane = false
        sb.append("| `${c.name}` | ${c.what} | $n | ${us(p50)} | ${us(p90)} | ${us(p99)} | ${us(batchNs[k] / n)} | " +
            String.format("%.2f", p50.toDouble() / p50Floor) + "× |\n")
        val own = inner[k]
        if (own.any { it != 0L }) {
            if (own.any { it == 0L }) sane = false   // a call failed
            own.sort()
            sb.append("| ↳ inside Rust | `DualPublisher::send_location` as timed in Rust | $n | ${us(percentile(own, 0.5))} | " +
                "${us(percentile(own, 0.9))} | ${us(percentile(own, 0.99))} | ${us(own.sum() / n)} | " +
                String.format("%.2f", percentile(own, 0.5).toDouble() / p50Floor) + "× |\n")
        }
    }
    val send = samples[cases.size - 1]
    val ratio = percentile(send, 0.5).toDouble() / p50Floor
    sb.append("\n**sendLocation p50 / floor p50 = ${String.format("%.2f", ratio)}×** (target ≤ 1.2×); ")
    sb.append("p90 ${String.format("%.2f", percentile(send, 0.9).toDouble() / percentile(floor, 0.9))}×, ")
    sb.append("p99 ${String.format("%.2f", percentile(send, 0.99).toDouble() / percentile(floor, 0.99))}×. ")
    val shape = samples[cases.size - 2]
    sb.append("Against the same-shape no-op `BenchObject.echoId`: p50 ${String.format("%.2f", percentile(send, 0.5).toDouble() / percentile(shape, 0.5))}×.\n\n")
    sb.append("Cold, before any warm-up (first $coldCalls calls of each, in the order above; the very first call loads the library):\n\n")
    sb.append("| call | p50 µs | p90 µs | max µs |\n|---|---|---|---|\n")
    for ((k, c) in cases.withIndex()) {
        val s = cold[k]
        sb.append("| `${c.name}` | ${us(percentile(s, 0.5))} | ${us(percentile(s, 0.9))} | ${us(s.last())} |\n")
    }
    print(sb)
    if (smoke && !sane) {
        System.err.println("smoke check failed: a figure is not positive or p50 > p90 > p99 does not hold")
        exitProcess(1)
    }
}
