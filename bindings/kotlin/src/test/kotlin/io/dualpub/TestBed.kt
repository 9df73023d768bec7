package io.dualpub

import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.atomic.AtomicInteger

/**
 * What the Kotlin suite runs against: mosquitto and the Pub/Sub emulator started by
 * scripts/kotlin-test, passed in through the environment.
 */
object TestBed {
    val mqttUrl: String = env("DUALPUB_MQTT_URL")
    val pubsubUrl: String = env("DUALPUB_PUBSUB_URL")
    val vectors: Path = Path.of(env("DUALPUB_VECTORS"))
    /** `dualpub config-server`, serving [configFile]. */
    val configUrl: String = env("DUALPUB_CONFIG_URL")
    val configFile: Path = Path.of(env("DUALPUB_CONFIG_FILE"))
    private val dataRoot: Path = Files.createTempDirectory("dualpub-kotlin")
    private val counter = AtomicInteger()
    private val http = HttpClient.newHttpClient()
    const val PROJECT = "kotlin-project"
    const val TOPIC = "location-updates"

    private fun env(name: String): String =
        System.getenv(name) ?: error("$name is not set: run the suite through scripts/kotlin-test")

    init {
        put("$pubsubUrl/v1/projects/$PROJECT/topics/$TOPIC", "{}")
    }

    /** A device id nobody else in this run uses. */
    fun deviceId(name: String): String = "kt-$name-${ProcessHandle.current().pid()}-${counter.incrementAndGet()}"

    /** A fresh data directory. */
    fun dataDir(): String = Files.createTempDirectory(dataRoot, "d").toString()

    /** An SDK config for the local test bed at [percentage] % Pub/Sub. */
    fun config(deviceId: String, percentage: Double = 100.0, mqttUrl: String = this.mqttUrl): SdkConfig = SdkConfig(
        deviceId = deviceId,
        companyId = "c-9",
        mqtt = MqttSettings(brokerUrl = mqttUrl),
        pubsub = PubSubSettings(endpoint = pubsubUrl, project = PROJECT, topic = TOPIC, maxBatchLatencyMs = 50uL),
        dataDir = dataDir(),
        migration = MigrationConfig(
            version = 1uL,
            pubsubEnabled = true,
            pubsubPercentage = percentage,
            rolloutAlgorithm = RolloutAlgorithm.V1,
        ),
        allowInsecure = true,
    )

    /** Makes the config server serve [json]. */
    fun serveConfig(json: String) {
        Files.writeString(configFile, json)
    }

    /** Makes the config server answer in [mode] (ok, server_error, too_many_requests, ...). */
    fun configServerMode(mode: String) {
        post(configUrl.substringBefore("/dualpub/") + "/_control/mode", "{\"mode\": \"$mode\"}")
    }

    /** The [n]th location of a test track. */
    fun location(n: Int): Location = Location(
        latitude = 52.52 + n * 1e-4,
        longitude = 13.405,
        accuracy = 5.0,
        speed = 1.2,
        timestampMs = System.currentTimeMillis() - 60_000 + n,
    )

    fun put(url: String, body: String): Int =
        http.send(HttpRequest.newBuilder(URI.create(url)).PUT(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString()).statusCode()

    fun post(url: String, body: String): String =
        http.send(HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(body))
            .header("content-type", "application/json").build(), HttpResponse.BodyHandlers.ofString()).body()

    /** A pull subscription on the test topic; created before the SDK publishes. */
    fun subscribe(name: String): String {
        val sub = "$pubsubUrl/v1/projects/$PROJECT/subscriptions/$name-${counter.incrementAndGet()}"
        put(sub, """{"topic": "projects/$PROJECT/topics/$TOPIC"}""")
        return sub
    }

    /** Every eventId attribute the subscription delivers within [timeoutMs] (acknowledged). */
    fun pullEventIds(sub: String, want: Int, timeoutMs: Long = 20_000): List<String> {
        val ids = mutableListOf<String>()
        val deadline = System.currentTimeMillis() + timeoutMs
        while (ids.size < want && System.currentTimeMillis() < deadline) {
            val resp = post("$sub:pull", """{"maxMessages": 1000, "returnImmediately": true}""")
            val acks = Regex("\"ackId\":\"([^\"]+)\"").findAll(resp).map { it.groupValues[1] }.toList()
            // `data` is base64, so the only eventId in the response is the attribute.
            ids += Regex("\"eventId\":\"([^\"]+)\"").findAll(resp).map { it.groupValues[1] }
            if (acks.isNotEmpty()) {
                post("$sub:acknowledge", acks.joinToString(",", """{"ackIds": [""", "]}") { "\"$it\"" })
            } else {
                Thread.sleep(50)
            }
        }
        return ids.distinct()
    }
}

/** A minimal JSON reader for the shared test vectors (no JSON library on the test classpath). */
class Json(private val s: String) {
    private var i = 0

    fun parse(): Any? {
        val v = value()
        ws()
        check(i == s.length) { "trailing data at $i" }
        return v
    }

    private fun ws() {
        while (i < s.length && s[i].isWhitespace()) i++
    }

    private fun value(): Any? {
        ws()
        return when (val c = s[i]) {
            '{' -> obj()
            '[' -> arr()
            '"' -> str()
            't' -> { i += 4; true }
            'f' -> { i += 5; false }
            'n' -> { i += 4; null }
            else -> if (c == '-' || c.isDigit()) num() else error("unexpected '$c' at $i")
        }
    }

    private fun obj(): Map<String, Any?> {
        val m = LinkedHashMap<String, Any?>()
        i++
        ws()
        if (s[i] == '}') { i++; return m }
        while (true) {
            ws()
            val k = str()
            ws(); check(s[i] == ':'); i++
            m[k] = value()
            ws()
            if (s[i] == ',') { i++; continue }
            check(s[i] == '}'); i++
            return m
        }
    }

    private fun arr(): List<Any?> {
        val l = mutableListOf<Any?>()
        i++
        ws()
        if (s[i] == ']') { i++; return l }
        while (true) {
            l += value()
            ws()
            if (s[i] == ',') { i++; continue }
            check(s[i] == ']'); i++
            return l
        }
    }

    private fun str(): String {
        check(s[i] == '"'); i++
        val b = StringBuilder()
        while (s[i] != '"') {
            if (s[i] == '\\') {
                i++
                when (val e = s[i]) {
                    'n' -> b.append('\n'); 't' -> b.append('\t'); 'r' -> b.append('\r')
                    'b' -> b.append('\b'); 'f' -> b.append('\u000c')
                    'u' -> { b.append(s.substring(i + 1, i + 5).toInt(16).toChar()); i += 4 }
                    else -> b.append(e)
                }
                i++
            } else {
                b.append(s[i++])
            }
        }
        i++
        return b.toString()
    }

    private fun num(): Double {
        val start = i
        while (i < s.length && (s[i].isDigit() || s[i] in "+-.eE")) i++
        return s.substring(start, i).toDouble()
    }
}
