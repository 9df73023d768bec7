package io.dualpub

import java.nio.file.Files
import java.util.concurrent.ConcurrentLinkedQueue
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** The SDK from Kotlin, against the real library, mosquitto and the Pub/Sub emulator. */
class DualPublisherTest {
    private fun publisher(name: String, percentage: Double = 100.0, tokens: TokenProvider? = null) =
        DualPublisher(TestBed.config(TestBed.deviceId(name), percentage), tokens)

    @Test
    fun `sdkVersion names the SDK`() {
        assertTrue(sdkVersion().startsWith("dualpub/"))
    }

    @Test
    fun `printing a config or a token never shows the password or the token`() {
        val config = TestBed.config(TestBed.deviceId("secrets")).let {
            it.copy(mqtt = it.mqtt.copy(username = "device", password = Secret("hunter2-pw")))
        }
        val token = AccessToken(token = Secret("ya29.token-value"), expiresAtMs = 1)
        val printed = "$config $token ${config.mqtt} ${config.mqtt.password}"
        assertFalse(printed.contains("hunter2-pw"), printed)
        assertFalse(printed.contains("ya29.token-value"), printed)
        assertTrue(printed.contains("***"), printed)
        assertEquals(Secret("same"), Secret("same"))
    }

    @Test
    fun `sendLocation returns a UUIDv7 eventId`() {
        publisher("uuid").use { p ->
            val id = p.sendLocation(TestBed.location(0))
            val uuid = java.util.UUID.fromString(id)
            assertEquals(7, uuid.version())
        }
    }

    @Test
    fun `send and flush reach MQTT and Pub_Sub`() {
        val sub = TestBed.subscribe("send-flush")
        publisher("send-flush").use { p ->
            val ids = (0 until 20).map { p.sendLocation(TestBed.location(it)) }
            val report = p.flush(20_000uL)
            assertTrue(report.completed, report.toString())
            assertEquals(0uL, report.pendingMqtt)
            val m = p.metrics()
            assertEquals(20uL, m.accepted)
            assertEquals(20uL, m.mqtt.published)
            assertEquals(20uL, m.pubsub.published)
            assertEquals(20uL, m.dualBoth)
            assertEquals(ids, TestBed.pullEventIds(sub, 20), "Pub/Sub got the same eventIds, in order")
        }
    }

    @Test
    fun `an upload window holds locations until flushNow, and no network holds everything`() {
        val sub = TestBed.subscribe("window")
        val config = TestBed.config(TestBed.deviceId("window")).copy(uploadWindowSecs = 3600u)
        DualPublisher(config, null).use { p ->
            val ids = (0 until 5).map { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.awaitDurable(5_000uL))
            Thread.sleep(500)
            assertEquals(0uL, p.metrics().pubsub.published, "an hour's window holds them")
            p.setNetworkAvailable(false)
            p.flushNow()
            Thread.sleep(500)
            assertEquals(0uL, p.metrics().mqtt.published, "no network, no attempt")
            p.setNetworkAvailable(true)
            // The return's burst is spread over the device's share of min(W, 30 s) (docs/CONTRACT.md).
            assertEquals(ids, TestBed.pullEventIds(sub, 5, timeoutMs = 45_000), "one burst when the network is back")
            assertTrue(p.flush(20_000uL).completed)
        }
    }

    @Test
    fun `sendLocations keeps the order and returns one eventId each`() {
        publisher("batch").use { p ->
            val ids = p.sendLocations((0 until 50).map { TestBed.location(it) })
            assertEquals(50, ids.size)
            assertEquals(ids.sorted(), ids, "UUIDv7 ids sort in acceptance order")
            assertTrue(p.flush(20_000uL).completed)
        }
    }

    @Test
    fun `awaitDurable confirms the outbox is on disk`() {
        publisher("durable").use { p ->
            repeat(100) { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.awaitDurable(10_000uL))
        }
    }

    @Test
    fun `a device outside the rollout publishes to MQTT only`() {
        publisher("rollout-out", percentage = 0.0).use { p ->
            val d = p.decision()
            assertEquals(DecisionReason.ROLLOUT_OUT, d.reason)
            assertTrue(d.mqttEnabled)
            assertFalse(d.pubsubEnabled)
            p.sendLocation(TestBed.location(0))
            assertTrue(p.flush(20_000uL).completed)
            assertEquals(1uL, p.metrics().dualMqttOnly)
        }
    }

    @Test
    fun `a device inside the rollout publishes to both`() {
        publisher("rollout-in").use { p ->
            val d = p.decision()
            assertEquals(DecisionReason.ROLLOUT_IN, d.reason)
            assertTrue(d.mqttEnabled && d.pubsubEnabled)
            assertEquals(1uL, d.configVersion)
        }
    }

    @Test
    fun `emergency mode stops Pub_Sub for locations accepted after the apply`() {
        val sub = TestBed.subscribe("emergency")
        publisher("emergency").use { p ->
            val before = (0 until 10).map { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.flush(20_000uL).completed)
            val d = p.applyConfigJson("""{"version": 2, "pubsubEnabled": true, "pubsubPercentage": 100, "emergencyMode": true}""")
            assertEquals(DecisionReason.EMERGENCY, d.reason)
            assertFalse(d.pubsubEnabled)
            val after = (10 until 20).map { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.flush(20_000uL).completed)
            val got = TestBed.pullEventIds(sub, 10)
            assertEquals(before, got)
            assertTrue(after.none { it in TestBed.pullEventIds(sub, 1, timeoutMs = 500) })
            assertEquals(10uL, p.metrics().dualMqttOnly)
        }
    }

    @Test
    fun `applyConfig with a device override`() {
        val id = TestBed.deviceId("override")
        DualPublisher(TestBed.config(id, 0.0), null).use { p ->
            val d = p.applyConfig(
                MigrationConfig(
                    version = 5uL,
                    pubsubEnabled = true,
                    rolloutAlgorithm = RolloutAlgorithm.V1,
                    deviceOverrides = mapOf(id to Override(pubsubEnabled = true)),
                ),
            )
            assertEquals(DecisionReason.DEVICE_OVERRIDE, d.reason)
            assertTrue(d.pubsubEnabled)
            assertEquals(5uL, p.currentConfig().version)
        }
    }

    @Test
    fun `a company override applies to the company's devices`() {
        publisher("company", percentage = 0.0).use { p ->
            val d = p.applyConfigJson("""{"version": 3, "pubsubEnabled": true, "companyOverrides": {"c-9": {"pubsubPercentage": 100}}}""")
            assertEquals(DecisionReason.COMPANY_OVERRIDE, d.reason)
            assertTrue(d.pubsubEnabled)
        }
    }

    @Test
    fun `an invalid config document is refused and the last good one stays`() {
        publisher("bad-config").use { p ->
            val e = assertThrows(DualPubException.InvalidConfig::class.java) {
                p.applyConfigJson("""{"version": 9, "pubsubPercentage": 250}""")
            }
            assertTrue(e.message!!.contains("pubsubPercentage"), e.message)
            assertEquals(1uL, p.decision().configVersion)
            assertThrows(DualPubException.InvalidConfig::class.java) { p.applyConfigJson("not json") }
        }
    }

    @Test
    fun `an out-of-range latitude is an InvalidLocation`() {
        publisher("bad-lat").use { p ->
            assertThrows(DualPubException.InvalidLocation::class.java) {
                p.sendLocation(TestBed.location(0).copy(latitude = 91.0))
            }
            assertEquals(1uL, p.metrics().rejected["invalid_latitude"])
        }
    }

    @Test
    fun `NaN and infinity are InvalidLocation`() {
        publisher("nan").use { p ->
            assertThrows(DualPubException.InvalidLocation::class.java) { p.sendLocation(TestBed.location(0).copy(longitude = Double.NaN)) }
            assertThrows(DualPubException.InvalidLocation::class.java) { p.sendLocation(TestBed.location(0).copy(speed = Double.POSITIVE_INFINITY)) }
        }
    }

    @Test
    fun `a timestamp days ahead of the phone's clock is accepted and counted, one past 2100 refused`() {
        publisher("future").use { p ->
            // A GNSS fix on a phone whose clock is days behind: delivered, counted as clock skew.
            p.sendLocation(TestBed.location(0).copy(timestampMs = System.currentTimeMillis() + 3L * 86_400_000))
            assertEquals(1uL, p.metrics().clockSkew)
            val e = assertThrows(DualPubException.InvalidLocation::class.java) {
                p.sendLocation(TestBed.location(1).copy(timestampMs = 4_200_000_000_000L))
            }
            assertTrue(e.message!!.contains("2100"), e.message)
        }
    }

    @Test
    fun `sendLocations with one bad location queues none`() {
        publisher("batch-bad").use { p ->
            val batch = (0 until 5).map { TestBed.location(it) }.toMutableList()
            batch[2] = batch[2].copy(bearing = 400.0)
            assertThrows(DualPubException.InvalidLocation::class.java) { p.sendLocations(batch) }
            assertEquals(0uL, p.metrics().accepted)
        }
    }

    @Test
    fun `a device id that could escape its topic is an InvalidId`() {
        for (bad in listOf("", "fleet/7", "a+b", "x#", "tab\tid")) {
            assertThrows(DualPubException.InvalidId::class.java) {
                DualPublisher(TestBed.config(bad), null)
            }
        }
    }

    @Test
    fun `plaintext without allowInsecure is an InvalidConfig`() {
        val c = TestBed.config(TestBed.deviceId("insecure")).copy(allowInsecure = false)
        val e = assertThrows(DualPubException.InvalidConfig::class.java) { DualPublisher(c, null) }
        assertTrue(e.message!!.contains("allowInsecure"), e.message)
    }

    @Test
    fun `two publishers cannot share a data directory`() {
        val c = TestBed.config(TestBed.deviceId("shared-dir"))
        DualPublisher(c, null).use {
            assertThrows(DualPubException.Storage::class.java) { DualPublisher(c, null) }
        }
    }

    @Test
    fun `every call after shutdown throws Closed instead of crashing`() {
        val p = publisher("closed")
        p.shutdown()
        p.shutdown()
        assertThrows(DualPubException.Closed::class.java) { p.sendLocation(TestBed.location(0)) }
        assertThrows(DualPubException.Closed::class.java) { p.decision() }
        assertThrows(DualPubException.Closed::class.java) { p.flush(10uL) }
        assertThrows(DualPubException.Closed::class.java) { p.metrics() }
        p.close()
    }

    @Test
    fun `use {} frees the publisher and a new one resumes its queue`() {
        val deadPort = java.net.ServerSocket(0).use { it.localPort }
        val c = TestBed.config(TestBed.deviceId("resume"), 0.0, mqttUrl = "mqtt://127.0.0.1:$deadPort")
        DualPublisher(c, null).use { p ->
            repeat(10) { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.awaitDurable(10_000uL))
        }
        DualPublisher(c.copy(mqtt = MqttSettings(brokerUrl = TestBed.mqttUrl)), null).use { p ->
            assertEquals(10uL, p.metrics().recovered)
            assertTrue(p.flush(20_000uL).completed)
        }
    }

    @Test
    fun `a Kotlin TokenProvider is called on an SDK thread and its token cached`() {
        val calls = AtomicInteger()
        val threads = ConcurrentLinkedQueue<String>()
        val provider = object : TokenProvider {
            override fun fetchToken(): AccessToken {
                calls.incrementAndGet()
                threads += Thread.currentThread().name
                return AccessToken(token = Secret("kotlin-token"), expiresAtMs = System.currentTimeMillis() + 3_600_000)
            }
        }
        publisher("tokens", tokens = provider).use { p ->
            repeat(3) {
                p.sendLocation(TestBed.location(it))
                assertTrue(p.flush(20_000uL).completed)
            }
        }
        assertEquals(1, calls.get(), "cached between requests")
        assertNotEquals(Thread.currentThread().name, threads.first(), "never on the caller's thread")
    }

    @Test
    fun `a Kotlin MqttCredentialProvider is asked on an SDK thread through withProviders`() {
        // The test bed's broker takes any credentials: this proves the callback across the FFI
        // (the refusal and expiry rules are tested against mosquitto in tests/mqtt_credentials.rs).
        val calls = AtomicInteger()
        val threads = ConcurrentLinkedQueue<String>()
        val provider = object : MqttCredentialProvider {
            override fun fetchCredentials(): MqttCredentials {
                calls.incrementAndGet()
                threads += Thread.currentThread().name
                return MqttCredentials(username = "device", password = Secret("jwt-1"), expiresAtMs = System.currentTimeMillis() + 3_600_000)
            }
        }
        DualPublisher.withProviders(TestBed.config(TestBed.deviceId("creds"), 0.0), null, provider).use { p ->
            repeat(3) {
                p.sendLocation(TestBed.location(it))
                assertTrue(p.flush(20_000uL).completed)
            }
            assertEquals(0uL, p.metrics().mqttAuthRefusals)
        }
        assertEquals(1, calls.get(), "cached until a minute before its expiry")
        assertNotEquals(Thread.currentThread().name, threads.first(), "never on the caller's thread")
    }

    @Test
    fun `a TokenProvider that throws delays Pub_Sub and crashes nothing`() {
        val calls = AtomicInteger()
        val provider = object : TokenProvider {
            override fun fetchToken(): AccessToken {
                if (calls.incrementAndGet() <= 2) throw TokenException.Unavailable("offline")
                return AccessToken(token = Secret("t"), expiresAtMs = System.currentTimeMillis() + 3_600_000)
            }
        }
        publisher("tokens-throw", tokens = provider).use { p ->
            p.sendLocation(TestBed.location(0))
            assertTrue(p.flush(30_000uL).completed)
            assertEquals(3, calls.get())
            assertEquals(2uL, p.metrics().pubsub.retries)
        }
    }

    @Test
    fun `a TokenProvider that throws an unexpected exception is contained too`() {
        val provider = object : TokenProvider {
            override fun fetchToken(): AccessToken = throw IllegalStateException("bug in app code")
        }
        publisher("tokens-bug", tokens = provider).use { p ->
            p.sendLocation(TestBed.location(0))
            val r = p.flush(2_000uL)
            assertEquals(0uL, r.pendingMqtt, "MQTT is unaffected")
            assertEquals(1uL, r.pendingPubsub, "Pub/Sub keeps it owed")
        }
    }

    @Test
    fun `a slow TokenProvider never blocks sendLocation`() {
        val release = CountDownLatch(1)
        val provider = object : TokenProvider {
            override fun fetchToken(): AccessToken {
                release.await(10, TimeUnit.SECONDS)
                return AccessToken(token = Secret("slow"), expiresAtMs = System.currentTimeMillis() + 3_600_000)
            }
        }
        publisher("tokens-slow", tokens = provider).use { p ->
            val start = System.nanoTime()
            repeat(200) { p.sendLocation(TestBed.location(it)) }
            val ms = (System.nanoTime() - start) / 1_000_000
            assertTrue(ms < 2_000, "200 sends took $ms ms while the provider was blocked")
            release.countDown()
            assertTrue(p.flush(30_000uL).completed)
        }
    }

    @Test
    fun `bucketing agrees with every shared vector`() {
        @Suppress("UNCHECKED_CAST")
        val doc = Json(Files.readString(TestBed.vectors)).parse() as Map<String, Any?>
        val vectors = doc["vectors"] as List<Map<String, Any?>>
        assertTrue(vectors.size >= 200)
        val percentages = (doc["percentages"] as List<Double>)
        for (v in vectors) {
            val id = v["deviceId"] as String
            val salt = v["salt"] as String
            val alg = if (v["algorithm"] == "v1") RolloutAlgorithm.V1 else RolloutAlgorithm.CRC32
            assertEquals((v["bucket"] as Double).toUInt(), rolloutBucket(id, salt, alg), "bucket of '$id' ($alg, $salt)")
            @Suppress("UNCHECKED_CAST")
            val on = v["pubsub"] as Map<String, Boolean>
            for ((key, pct) in on.keys.zip(percentages)) {
                assertEquals(on[key], rolloutInCohort(id, salt, alg, pct), "'$id' at $pct ($alg, $salt)")
            }
        }
    }

    @Test
    fun `many threads can send at once`() {
        publisher("threads").use { p ->
            val pool = Executors.newFixedThreadPool(8)
            val ids = ConcurrentLinkedQueue<String>()
            repeat(8) { t -> pool.submit { repeat(250) { ids += p.sendLocation(TestBed.location(t * 1000 + it)) } } }
            pool.shutdown()
            assertTrue(pool.awaitTermination(30, TimeUnit.SECONDS))
            assertEquals(2000, ids.toSet().size)
            assertTrue(p.flush(30_000uL).completed)
            assertEquals(2000uL, p.metrics().dualBoth)
        }
    }

    @Test
    fun `a DebugListener receives events on an SDK thread while debug mode is on`() {
        val events = ConcurrentLinkedQueue<DebugEvent>()
        val threads = ConcurrentLinkedQueue<String>()
        val latch = CountDownLatch(1)
        val listener = object : DebugListener {
            override fun onDebugEvent(event: DebugEvent) {
                events += event
                threads += Thread.currentThread().name
                if (event.kind == "accepted") latch.countDown()
            }
        }
        publisher("debug").use { p ->
            p.setDebugListener(listener)
            p.sendLocation(TestBed.location(0))
            assertFalse(latch.await(300, TimeUnit.MILLISECONDS), "no events while debug mode is off")
            p.setDebugMode(true)
            p.sendLocation(TestBed.location(1).copy(latitude = 52.123456789))
            assertTrue(latch.await(5, TimeUnit.SECONDS))
            val accepted = events.first { it.kind == "accepted" }
            assertTrue(accepted.message.contains("52.12") && !accepted.message.contains("52.1234"), accepted.message)
            // JNA attaches the SDK's dualpub-debug thread as a JVM thread of its own.
            val caller = Thread.currentThread().name
            assertTrue(threads.none { it == caller }, threads.toString())
            val report = p.debugReport()
            assertTrue(report.contains("\"debugMode\":true"), report)
            p.clearDebugMode()
        }
    }

    @Test
    fun `host remote values and a ConfigListener`() {
        val changes = ConcurrentLinkedQueue<Pair<DecisionReason, DecisionReason>>()
        val listener = object : ConfigListener {
            override fun onDecisionChanged(old: RolloutDecision, new: RolloutDecision) {
                changes += old.reason to new.reason
            }
        }
        publisher("remote-values", percentage = 0.0).use { p ->
            p.setConfigListener(listener)
            val d = p.applyRemoteValues(mapOf("pubsub_rollout_percentage" to "100", "pubsub_enabled" to "true", "config_version" to "8"))
            assertEquals(DecisionReason.ROLLOUT_IN, d.reason)
            assertEquals(ConfigSource.HOST, p.configStatus().source)
            assertEquals(listOf(DecisionReason.ROLLOUT_OUT to DecisionReason.ROLLOUT_IN), changes.toList())
            assertThrows(DualPubException.InvalidConfig::class.java) { p.applyRemoteValues(mapOf("emergency_mode" to "perhaps")) }
            assertEquals(1uL, p.configStatus().rejected)
        }
    }

    @Test
    fun `the last config applied wins at the next start`() {
        val c = TestBed.config(TestBed.deviceId("persisted"))
        DualPublisher(c, null).use { p -> p.applyConfigJson("""{"version": 9, "emergencyMode": true}""") }
        DualPublisher(c, null).use { p ->
            assertEquals(ConfigSource.PERSISTED, p.configStatus().source)
            assertEquals(DecisionReason.EMERGENCY, p.decision().reason)
        }
    }

    @Test
    fun `metrics come as Prometheus text too`() {
        publisher("prometheus").use { p ->
            p.sendLocation(TestBed.location(0))
            val text = p.metricsPrometheus()
            assertTrue(text.contains("dualpub_locations_accepted_total 1"), text)
            assertTrue(text.contains("dualpub_rollout_bucket"), text)
        }
    }

    @Test
    fun `the config is fetched from remoteConfigUrl, refreshed on demand, and failures back off`() {
        TestBed.serveConfig("""{"version": 21, "pubsubEnabled": true, "pubsubPercentage": 100, "emergencyMode": true}""")
        val c = TestBed.config(TestBed.deviceId("fetch")).copy(migration = null, remoteConfigUrl = TestBed.configUrl)
        DualPublisher(c, null).use { p ->
            // The SDK's own start-up fetch may have applied it already; then the refresh gets a 304.
            val first = p.refreshConfig()
            assertTrue(first == FetchResult.Applied(21uL) || first == FetchResult.NotModified, first.toString())
            val status = p.configStatus()
            assertEquals(ConfigSource.FETCHED, status.source)
            assertEquals(21uL, status.version)
            assertNotNull(status.etag)
            assertEquals(DecisionReason.EMERGENCY, p.decision().reason)

            p.setAppForeground(false) // a silent push still refreshes in the background
            TestBed.serveConfig("""{"version": 22, "pubsubEnabled": true, "pubsubPercentage": 100}""")
            assertEquals(FetchResult.Applied(22uL), p.refreshConfig())
            assertEquals(DecisionReason.ROLLOUT_IN, p.decision().reason)

            TestBed.configServerMode("server_error")
            try {
                assertEquals(FetchResult.Failed("HTTP 500"), p.refreshConfig())
                val until = p.configStatus().backoffUntilMs
                assertNotNull(until)
                assertEquals(FetchResult.InBackoff(until!!), p.refreshConfig())
                assertEquals(22uL, p.configStatus().version, "the last known good stays")
            } finally {
                TestBed.configServerMode("ok")
            }
        }
    }
}
