package io.dualpub.sample

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import io.dualpub.DualPubException
import io.dualpub.Location
import io.dualpub.MqttSettings
import io.dualpub.PubSubSettings
import io.dualpub.android.DualPub
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/** The SDK on a device: the native library loads, a location becomes durable, bad input is a typed error. */
@RunWith(AndroidJUnit4::class)
class PublisherTest {
    private val context = InstrumentationRegistry.getInstrumentation().targetContext

    @Test
    fun aLocationBecomesDurableWithTheNetworkDown() {
        val p = DualPub.initialize(context, "instrumented-1", MqttSettings(brokerUrl = "mqtts://mqtt.invalid:8883"), PubSubSettings(project = "p"))
        try {
            p.setNetworkAvailable(false)
            val id = p.sendLocation(Location(latitude = 48.1, longitude = 11.6, timestampMs = System.currentTimeMillis()))
            assertEquals(36, id.length)
            assertTrue(p.awaitDurable(10_000uL))
            assertTrue(p.debugReport().contains("\"inMemory\""))
        } finally {
            p.shutdown()
        }
    }

    @Test
    fun anInvalidLocationIsATypedErrorNotACrash() {
        val p = DualPub.initialize(context, "instrumented-2", MqttSettings(brokerUrl = "mqtts://mqtt.invalid:8883"), PubSubSettings(project = "p"))
        try {
            val e = runCatching { p.sendLocation(Location(latitude = 123.0, longitude = 0.0, timestampMs = System.currentTimeMillis())) }.exceptionOrNull()
            assertTrue("expected DualPubException, got $e", e is DualPubException)
        } finally {
            p.shutdown()
        }
    }

    @Test
    fun theSampleRunsInTheAppProcess() {
        assertTrue(MainActivity.runSample(context).startsWith("DUALPUB_SAMPLE_OK"))
    }
}
