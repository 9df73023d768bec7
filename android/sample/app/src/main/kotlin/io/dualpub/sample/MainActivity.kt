package io.dualpub.sample

import android.app.Activity
import android.os.Bundle
import android.util.Log
import io.dualpub.DualPublisher
import io.dualpub.Location
import io.dualpub.MqttSettings
import io.dualpub.PubSubSettings
import io.dualpub.android.DualPub

/**
 * Starts a publisher, queues one location and waits until it is durable, off the main thread,
 * then logs `DUALPUB_SAMPLE_OK <eventId>` (or `DUALPUB_SAMPLE_FAILED` with the exception).
 * In the minified release build this is the first call through JNA: if R8 had stripped what
 * JNA reads by reflection it would fail here. CI launches the release APK and waits for the line.
 */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        Thread { Log.i(TAG, runSample(this)) }.start()
    }

    companion object {
        const val TAG = "dualpub-sample"

        /** One location through the SDK, with the network reported down (nothing leaves). */
        fun runSample(activity: android.content.Context): String = try {
            val publisher: DualPublisher = DualPub.initialize(
                activity,
                deviceId = "sample-device",
                mqtt = MqttSettings(brokerUrl = "mqtts://mqtt.invalid:8883"),
                pubsub = PubSubSettings(project = "sample-project"),
            )
            publisher.setNetworkAvailable(false)
            val eventId = publisher.sendLocation(Location(latitude = 52.52, longitude = 13.405, timestampMs = System.currentTimeMillis()))
            val durable = publisher.awaitDurable(10_000uL)
            publisher.shutdown()
            if (durable) "DUALPUB_SAMPLE_OK $eventId" else "DUALPUB_SAMPLE_FAILED not durable within 10 s"
        } catch (e: Throwable) {
            "DUALPUB_SAMPLE_FAILED ${e.javaClass.name}: ${e.message}"
        }
    }
}
