package io.dualpub

import com.sun.net.httpserver.HttpServer
import java.lang.management.ManagementFactory
import java.net.InetSocketAddress
import java.nio.file.Files
import java.nio.file.Path
import java.util.concurrent.Executors
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.cancel
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * The async twins (`DualPublisher.open`, `flushAsync`, `awaitDurableAsync`, `refreshConfigAsync`,
 * `shutdownAsync`) called as an Android app calls them: from a single-thread "main" dispatcher.
 * Each call's hold on that thread is measured: the time from the call until it suspends (the
 * coroutine is started undispatched, so that part runs on the caller's thread and nothing else
 * does) and, with a heartbeat on the same thread, the longest the thread was not free.
 */
class AsyncApiTest {
    private val mainThread = Executors.newSingleThreadExecutor { r -> Thread(r, "test-main") }
    private val main = mainThread.asCoroutineDispatcher()

    /** Runs [call] on the main dispatcher; returns its result and how long it held the thread (ms). */
    private suspend fun <T> onMain(call: suspend () -> T): Pair<T, Double> = withContext(main) {
        val started = System.nanoTime()
        var held = 0.0
        val job = async(start = CoroutineStart.UNDISPATCHED) {
            try {
                call()
            } finally {
                if (held == 0.0) held = (System.nanoTime() - started) / 1e6
            }
        }
        if (held == 0.0) held = (System.nanoTime() - started) / 1e6
        Pair(job.await(), held)
    }

    /** The longest gap, in ms, between ticks of a heartbeat on the main dispatcher while [body] runs. */
    private suspend fun <T> heartbeat(body: suspend () -> T): Pair<T, Double> = coroutineScope {
        var worst = 0.0
        val beat = launch(main) {
            var last = System.nanoTime()
            while (true) {
                delay(1)
                val now = System.nanoTime()
                worst = maxOf(worst, (now - last) / 1e6)
                last = now
            }
        }
        val result = body()
        beat.cancel()
        Pair(result, worst)
    }

    /** A config server that answers after [delayMs]. */
    private fun slowConfigServer(delayMs: Long): HttpServer {
        val server = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        server.createContext("/") { ex ->
            Thread.sleep(delayMs)
            val body = "{\"version\": 7}".toByteArray()
            ex.responseHeaders.add("content-type", "application/json")
            ex.sendResponseHeaders(200, body.size.toLong())
            ex.responseBody.use { it.write(body) }
        }
        server.executor = Executors.newCachedThreadPool()
        server.start()
        return server
    }

    @Test
    fun `every async call holds the main thread under 5 ms, open with 100,000 queued and a 10 s config fetch included`() = runBlocking {
        val id = TestBed.deviceId("async-main")
        val server = slowConfigServer(10_000)
        val config = TestBed.config(id).apply {
            maxOutboxRows = 200_000u
            remoteConfigUrl = "http://127.0.0.1:${server.address.port}/config.json"
        }
        // 100,000 locations queued offline and persisted, then the publisher closed.
        DualPublisher(config, null).use { p ->
            p.setNetworkAvailable(false)
            repeat(10) { batch -> p.sendLocations((0 until 10_000).map { TestBed.location(batch * 10_000 + it) }) }
            assertTrue(p.awaitDurable(60_000uL))
            p.shutdown()
        }
        // Warm up the JVM's paths (class loading, JNA linking) off the main thread.
        DualPublisher.open(TestBed.config(TestBed.deviceId("async-warm")), null, null).use { w ->
            w.flushAsync(1_000uL)
            w.awaitDurableAsync(1_000uL)
            w.drainAsync(1_000uL)
            w.deliveryStates().use { it.next() }
            w.decisions().use { it.next() }
            w.shutdownAsync()
        }
        val held = mutableMapOf<String, Double>()
        val (_, worstGap) = heartbeat {
            val (p, openHeld) = onMain { DualPublisher.open(config, null, null) }
            held["open (100,000 queued)"] = openHeld
            p.setNetworkAvailable(false)
            held["awaitDurableAsync"] = onMain { p.awaitDurableAsync(10_000uL) }.second
            held["flushAsync"] = onMain { p.flushAsync(200uL) }.second
            held["drainAsync (offline: at once)"] = onMain { p.drainAsync(200uL) }.second
            val states = p.deliveryStates()
            held["DeliveryStateStream.next"] = onMain { states.next() }.second
            states.destroy()
            val decisions = p.decisions()
            held["DecisionStream.next"] = onMain { decisions.next() }.second
            decisions.destroy()
            val fetchStarted = System.nanoTime()
            val (fetched, fetchHeld) = onMain { p.refreshConfigAsync() }
            val fetchMs = (System.nanoTime() - fetchStarted) / 1e6
            held["refreshConfigAsync (answer after 10 s)"] = fetchHeld
            // The fetch at start may have applied version 7 already: then this one is not modified.
            assertTrue(fetched is FetchResult.Applied || fetched is FetchResult.NotModified, fetched.toString())
            assertTrue(fetchMs >= 5_000, "the slow server was waited for ($fetchMs ms)")
            held["shutdownAsync"] = onMain { p.shutdownAsync() }.second
            p.destroy()
        }
        server.stop(0)
        println("main thread held per call (ms): $held; heartbeat's longest gap ${"%.1f".format(worstGap)} ms")
        for ((call, ms) in held) assertTrue(ms <= 5.0, "$call held the main thread $ms ms")
    }

    @Test
    fun `a paused SDK refuses locations typed, and a purge leaves nothing to send`() = runBlocking {
        val sub = TestBed.subscribe("pause-purge")
        DualPublisher.open(TestBed.config(TestBed.deviceId("pause-purge")), null, null).use { p ->
            p.setNetworkAvailable(false)
            val purged = (0 until 25).map { p.sendLocation(TestBed.location(it)) }
            p.setCollectionEnabled(false)
            assertFalse(p.collectionEnabled())
            assertThrows(DualPubException.CollectionPaused::class.java) { p.sendLocation(TestBed.location(99)) }
            assertEquals(PurgeReport(locations = 25uL, deadLetters = 0uL), p.purge())
            p.setNetworkAvailable(true)
            p.setCollectionEnabled(true)
            val after = (100 until 103).map { p.sendLocation(TestBed.location(it)) }
            assertTrue(p.flushAsync(20_000uL).completed)
            val got = TestBed.pullEventIds(sub, 3)
            assertEquals(after, got, "only what was sent after the purge reached Pub/Sub")
            assertTrue(purged.none { it in got })
            assertEquals(25uL, p.metrics().dropped["purged"], "counted for the next report")
        }
    }

    @Test
    fun `flows replay the current value, follow changes within 100 ms, stop when cancelled, and see pending reach 0`() = runBlocking {
        val sub = TestBed.subscribe("flows")
        DualPublisher.open(TestBed.config(TestBed.deviceId("flows"), percentage = 0.0), null, null).use { p ->
            val rollout = { version: ULong, percentage: Double ->
                MigrationConfig(version = version, pubsubEnabled = true, pubsubPercentage = percentage, rolloutAlgorithm = RolloutAlgorithm.V1)
            }
            // The decision: the one in force first, then the change.
            val seen = Channel<Pair<RolloutDecision, Long>>(Channel.UNLIMITED)
            val collector = launch(main) { p.decisionFlow().collect { seen.send(it to System.nanoTime()) } }
            assertFalse(withTimeout(5_000) { seen.receive() }.first.pubsubEnabled, "replayed first")
            val applied = System.nanoTime()
            p.applyConfig(rollout(2uL, 100.0))
            val (changed, at) = withTimeout(5_000) { seen.receive() }
            assertTrue(changed.pubsubEnabled)
            val afterMs = (at - applied) / 1e6
            assertTrue(afterMs < 100, "the flow saw the change $afterMs ms after the apply")
            val scope = CoroutineScope(main)
            val state = p.decisionStateFlow(scope)
            assertTrue(state.value.pubsubEnabled, "a StateFlow's value is the decision in force")
            // Cancelled: nothing more is emitted.
            collector.cancelAndJoin()
            p.applyConfig(rollout(3uL, 0.0))
            withTimeout(5_000) { state.first { !it.pubsubEnabled } }
            delay(200)
            assertTrue(seen.tryReceive().isFailure, "a cancelled collection received a decision")
            scope.cancel()

            // The delivery state: a collector's wait on the SDK's runtime ends within 100 ms of
            // its cancellation.
            p.applyConfig(rollout(4uL, 100.0))
            val tasksBefore = sdkTasks(p)
            val states = Channel<DeliveryState>(Channel.UNLIMITED)
            val watching = launch(main) { p.deliveryStateFlow().collect { states.send(it) } }
            withTimeout(5_000) { states.receive() }
            delay(100)
            assertEquals(tasksBefore + 1, sdkTasks(p), "one wait for the next state")
            val cancelled = System.nanoTime()
            watching.cancelAndJoin()
            while (sdkTasks(p) > tasksBefore && (System.nanoTime() - cancelled) / 1e6 < 1_000) delay(5)
            val releasedMs = (System.nanoTime() - cancelled) / 1e6
            assertTrue(releasedMs < 100, "the SDK's side ended $releasedMs ms after the cancellation")

            // Pending while offline, then 0 on both transports once flushed.
            p.setNetworkAvailable(false)
            val ids = (0 until 5).map { p.sendLocation(TestBed.location(it)) }
            val offline = withTimeout(5_000) { p.deliveryStateFlow().first { it.pendingMqtt == 5uL } }
            assertEquals(5uL, offline.pendingPubsub)
            assertFalse(offline.networkAvailable)
            p.setNetworkAvailable(true)
            val flushed = async { p.flushAsync(20_000uL) }
            val drained = withTimeout(20_000) {
                p.deliveryStateFlow().first { it.pendingMqtt == 0uL && it.pendingPubsub == 0uL }
            }
            assertTrue(flushed.await().completed)
            assertTrue(drained.lastAckMqttMs != null && drained.lastAckPubsubMs != null, drained.toString())
            assertEquals(ids, TestBed.pullEventIds(sub, 5))
            println("decision flow: change seen ${"%.1f".format(afterMs)} ms after the apply; cancelled state wait released in ${"%.1f".format(releasedMs)} ms")
        }
    }

    /** Tasks alive on the SDK's runtime (`debugReport()`'s `sdkTasks`). */
    private fun sdkTasks(p: DualPublisher): Int =
        Regex("\"sdkTasks\":(\\d+)").find(p.debugReport())!!.groupValues[1].toInt()

    private fun threads(): Int = ManagementFactory.getThreadMXBean().threadCount

    private fun rssKb(): Long =
        Files.readAllLines(Path.of("/proc/self/status")).first { it.startsWith("VmRSS:") }.split(Regex("\\s+"))[1].toLong()

    @Test
    fun `a thousand flush awaits add at most 2 threads, and ten thousand cancelled ones leak nothing`() = runBlocking {
        val sub = TestBed.subscribe("async-many")
        DualPublisher.open(TestBed.config(TestBed.deviceId("async-many")), null, null).use { p ->
            p.setNetworkAvailable(false)
            val ids = (0 until 10).map { p.sendLocation(TestBed.location(it)) }
            val cancelAll: suspend (Int) -> Int = { times ->
                withContext(main) {
                    var n = 0
                    repeat(times) {
                        try {
                            withTimeout(1) { p.flushAsync(60_000uL) }
                        } catch (e: TimeoutCancellationException) {
                            n++
                        }
                    }
                    n
                }
            }
            // Warm: the SDK's threads exist, the JVM's paths are compiled and its heap has grown.
            cancelAll(5_000)
            delay(200)
            val handlesBefore = uniffiContinuationHandleMap.size
            val tasksBefore = sdkTasks(p)
            // Resident memory over a round of 10,000; the JVM's own warm-up (its JIT, its
            // allocator) adds up to 1 MB in the first rounds and nothing after (measured: +1008,
            // +12, +0, -84 kB), so the smallest growth of three rounds is kept: a leak would show
            // in every round.
            val growths = (0 until 3).map {
                System.gc()
                val rssBefore = rssKb()
                assertEquals(10_000, cancelAll(10_000), "offline, no flush can complete within 1 ms")
                delay(200)
                System.gc()
                rssKb() - rssBefore
            }
            val rssGrowth = growths.min()
            assertEquals(handlesBefore, uniffiContinuationHandleMap.size, "no continuation handle left behind")
            assertEquals(tasksBefore, sdkTasks(p), "no wait left running on the SDK's runtime")
            val threadsBefore = threads()
            var threadsDuring = 0
            val reports = withContext(main) {
                val waits = (0 until 1_000).map { async { p.flushAsync(60_000uL) } }
                delay(500)
                threadsDuring = threads()
                p.setNetworkAvailable(true)
                waits.awaitAll()
            }
            println("1,000 flush awaits: threads $threadsBefore -> $threadsDuring; 10,000 cancelled: RSS ${growths.joinToString(" / ") { "%+d".format(it) }} kB in three rounds")
            assertTrue(threadsDuring - threadsBefore <= 2, "1,000 awaits added ${threadsDuring - threadsBefore} threads")
            assertTrue(reports.all { it.completed }, "every flush completed once the network returned")
            assertEquals(ids, TestBed.pullEventIds(sub, 10), "every location reached Pub/Sub, once")
            assertTrue(rssGrowth <= 1024, "10,000 cancelled awaits grew RSS by $rssGrowth kB")
        }
    }
}
