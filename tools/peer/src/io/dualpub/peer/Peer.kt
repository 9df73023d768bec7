// The seed design's reference implementation, kept ONLY to be measured against the SDK by the
// radio harness (`dualpub bench radio`, docs/RADIO.md). It is not part of the SDK, is never
// shipped, and is not a way to publish locations.
//
// What the SDK replaces, written faithfully: an app-side publisher on the JVM with Eclipse Paho's
// synchronous MqttClient (QoS 1, clean session, in-memory persistence, automatic reconnect) and
// java.net.http.HttpClient for Pub/Sub REST. Every location is published at once, one MQTT
// PUBLISH and one Pub/Sub :publish request each, on one sender thread; nothing is stored, batched
// or retried: a location that cannot be sent is dropped (and counted). The payload is the SDK's
// wire format, schemaVersion 2 (docs/CONTRACT.md), with the seed design's six attributes and the ordering key.
//
// It speaks the harness's device protocol (tools/cli/src/bench/device.rs): prints `ready` once
// connected, waits for `start`, sends --count locations one every --interval-us real
// microseconds, waits --drain-ms, prints `done {json}`, disconnects when stdin closes. Timers are
// the seed design's defaults divided by --scale (keep-alive 60 s, connection timeout 30 s,
// Paho's longest reconnect delay 128 s, request timeout 30 s; the JDK HTTP client's idle
// connection keep-alive is set by the harness with -Djdk.httpclient.keepalive.timeout). With
// --ca-file both go over TLS (ssl:// and https://) trusting that CA, through one SSLContext, whose
// session cache is what the JDK resumes sessions from.
package io.dualpub.peer

import org.eclipse.paho.client.mqttv3.MqttClient
import org.eclipse.paho.client.mqttv3.MqttConnectOptions
import org.eclipse.paho.client.mqttv3.MqttException
import org.eclipse.paho.client.mqttv3.persist.MemoryPersistence
import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.security.KeyStore
import java.security.SecureRandom
import java.security.cert.CertificateFactory
import java.time.Duration
import java.util.Base64
import java.util.UUID
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import javax.net.ssl.SSLContext
import javax.net.ssl.TrustManagerFactory
import kotlin.math.cos
import kotlin.math.max
import kotlin.math.roundToLong
import kotlin.math.sin

private val rng = SecureRandom()

/** A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7, 74 random bits. */
fun uuidV7(nowMs: Long = System.currentTimeMillis()): String {
    val msb = (nowMs shl 16) or 0x7000L or (rng.nextInt() and 0xFFF).toLong()
    val lsb = (rng.nextLong() and 0x3FFFFFFFFFFFFFFFL) or Long.MIN_VALUE
    return UUID(msb, lsb).toString()
}

private fun jsonString(s: String): String {
    val b = StringBuilder("\"")
    for (c in s) {
        when {
            c == '"' -> b.append("\\\"")
            c == '\\' -> b.append("\\\\")
            c < ' ' -> b.append(String.format("\\u%04x", c.code))
            else -> b.append(c)
        }
    }
    return b.append('"').toString()
}

/** Location number [i], the same fields the SDK's driver sends (tools/cli/src/bench/device.rs). */
fun payload(eventId: String, deviceId: String, i: Long, seq: Long, timestampMs: Long): String {
    val a = i * 0.01
    return "{\"eventId\":${jsonString(eventId)},\"deviceId\":${jsonString(deviceId)}," +
        "\"latitude\":${52.52 + 0.01 * sin(a)},\"longitude\":${13.405 + 0.01 * cos(a)}," +
        "\"accuracy\":5.0,\"speed\":8.0,\"bearing\":90.0,\"altitude\":34.0,\"timestamp\":$timestampMs," +
        "\"battery\":0.8,\"schemaVersion\":2,\"seq\":$seq,\"route\":\"both\",\"cfg\":0}"
}

/** A TLS context trusting only the certificates in the PEM file [caFile]. */
fun trusting(caFile: String): SSLContext {
    val keys = KeyStore.getInstance(KeyStore.getDefaultType())
    keys.load(null, null)
    File(caFile).inputStream().use { input ->
        CertificateFactory.getInstance("X.509").generateCertificates(input).forEachIndexed { i, c -> keys.setCertificateEntry("ca$i", c) }
    }
    val trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm())
    trust.init(keys)
    return SSLContext.getInstance("TLS").apply { init(null, trust.trustManagers, null) }
}

class Peer(private val args: Map<String, String>) {
    private val scale = args.getValue("--scale").toDouble()
    private val deviceId = args.getValue("--device-id")
    private val topic = "device/telemetry/$deviceId"
    private val publishUrl = URI.create(
        "${args.getValue("--pubsub-endpoint").trimEnd('/')}/v1/projects/${args.getValue("--project")}/topics/${args.getValue("--topic")}:publish",
    )
    private fun scaledMs(ms: Double): Long = max(1L, (ms / scale).roundToLong())

    private val tls: SSLContext? = args["--ca-file"]?.let { trusting(it) }
    private val mqtt = MqttClient(
        args.getValue("--mqtt-url").replace("mqtts://", "ssl://").replace("mqtt://", "tcp://"),
        "seed-$deviceId",
        MemoryPersistence(),
    )
    private val http: HttpClient = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofMillis(scaledMs(30_000.0)))
        .apply { tls?.let { sslContext(it) } }
        .build()
    private val sender = Executors.newSingleThreadExecutor()
    private val seq = AtomicLong(0)
    private val mqttOk = AtomicLong(0)
    private val mqttFailed = AtomicLong(0)
    private val pubsubOk = AtomicLong(0)
    // Application-layer bytes sent (MQTT payloads, request bodies; every attempt), as the SDK counts them.
    private val mqttBytes = AtomicLong(0)
    private val pubsubBytes = AtomicLong(0)
    private val pubsubFailed = AtomicLong(0)

    fun connect() {
        val o = MqttConnectOptions()
        o.isCleanSession = true
        o.keepAliveInterval = max(1L, (60.0 / scale).roundToLong()).toInt()
        o.connectionTimeout = max(1L, (30.0 / scale).roundToLong()).toInt()
        o.isAutomaticReconnect = true
        tls?.let { o.socketFactory = it.socketFactory }
        o.maxReconnectDelay = scaledMs(128_000.0).toInt()
        while (true) {
            try {
                mqtt.connect(o)
                return
            } catch (e: MqttException) {
                Thread.sleep(scaledMs(1_000.0))
            }
        }
    }

    /** One location: one MQTT publish (QoS 1, waits for the PUBACK) and one Pub/Sub request. */
    private fun send(i: Long) {
        val now = System.currentTimeMillis()
        val eventId = uuidV7(now)
        val body = payload(eventId, deviceId, i, seq.incrementAndGet(), now)
        val bytes = body.toByteArray(Charsets.UTF_8)
        try {
            mqttBytes.addAndGet(bytes.size.toLong())
            mqtt.publish(topic, bytes, 1, false)
            mqttOk.incrementAndGet()
        } catch (e: MqttException) {
            mqttFailed.incrementAndGet()
        }
        val data = Base64.getEncoder().encodeToString(bytes)
        val attributes = "{\"deviceId\":${jsonString(deviceId)},\"eventId\":\"$eventId\",\"timestamp\":\"$now\"," +
            "\"priority\":\"normal\",\"schemaVersion\":\"2\",\"sdk\":\"seed-peer/1\"}"
        val json = "{\"messages\":[{\"data\":\"$data\",\"attributes\":$attributes,\"orderingKey\":${jsonString(deviceId)}}]}"
        val request = HttpRequest.newBuilder(publishUrl)
            .timeout(Duration.ofMillis(scaledMs(30_000.0)))
            .header("content-type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build()
        pubsubBytes.addAndGet(json.toByteArray(Charsets.UTF_8).size.toLong())
        try {
            val r = http.send(request, HttpResponse.BodyHandlers.ofString())
            if (r.statusCode() / 100 == 2 && r.body().contains("messageIds")) pubsubOk.incrementAndGet() else pubsubFailed.incrementAndGet()
        } catch (e: Exception) {
            pubsubFailed.incrementAndGet()
        }
    }

    fun run() {
        val count = args.getValue("--count").toLong()
        val intervalUs = args.getValue("--interval-us").toLong()
        val t0 = System.nanoTime()
        for (i in 0 until count) {
            val waitNs = t0 + i * intervalUs * 1000 - System.nanoTime()
            if (waitNs > 0) TimeUnit.NANOSECONDS.sleep(waitNs)
            sender.execute { send(i) }
        }
        Thread.sleep(args.getValue("--drain-ms").toLong())
    }

    fun doneLine(): String =
        "done {\"accepted\":${seq.get()},\"mqttAcked\":${mqttOk.get()},\"mqttFailed\":${mqttFailed.get()}," +
            "\"pubsubAcked\":${pubsubOk.get()},\"pubsubFailed\":${pubsubFailed.get()}," +
            "\"mqttBytesSent\":${mqttBytes.get()},\"pubsubBytesSent\":${pubsubBytes.get()}}"

    fun close() {
        sender.shutdown()
        sender.awaitTermination(5, TimeUnit.SECONDS)
        try {
            mqtt.disconnect(1000)
        } catch (e: MqttException) {
        }
        mqtt.close(true)
    }
}

fun main(argv: Array<String>) {
    val args = argv.toList().chunked(2).filter { it.size == 2 && it[0].startsWith("--") }.associate { it[0] to it[1] }
    val peer = Peer(args)
    peer.connect()
    println("ready")
    val input = System.`in`.bufferedReader()
    if (input.readLine()?.trim() != "start") {
        System.err.println("peer: expected `start`")
        kotlin.system.exitProcess(1)
    }
    peer.run()
    println(peer.doneLine())
    System.out.flush()
    while (input.readLine() != null) {
        // idle until the harness closes stdin
    }
    peer.close()
    kotlin.system.exitProcess(0)
}
