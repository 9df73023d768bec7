// The Kotlin example of README.md, compiled with the suite so it cannot rot. The part between
// the markers must appear verbatim in README.md (scripts/kotlin-test checks it).
package io.dualpub.example

// README-BEGIN
import io.dualpub.*
import java.io.File

/** Starts publishing for this device: once, off the main thread (it opens the outbox). */
fun startPublishing(deviceId: String, filesDir: File, auth: PubSubAuth): DualPublisher =
    DualPublisher(
        SdkConfig(
            deviceId = deviceId,
            companyId = "fleet-42",
            mqtt = MqttSettings(brokerUrl = "mqtts://mqtt.example.com:8883", username = "device", password = Secret(auth.mqttPassword())),
            pubsub = PubSubSettings(project = "tracking-prod"),        // topic "location-updates"
            dataDir = File(filesDir, "dualpub").path,
            remoteConfigUrl = "https://config.example.com/dualpub/migration.json",  // fetched by the SDK
        ),
        tokenProvider = object : TokenProvider {                        // called on an SDK thread
            override fun fetchToken() = AccessToken(token = Secret(auth.pubsubToken()), expiresAtMs = auth.expiryMs())
        },
    )

/** Queues one fix and returns its eventId at once (no I/O), or null if the SDK refused it. */
fun report(publisher: DualPublisher, lat: Double, lon: Double, accuracy: Float, timeMs: Long): String? =
    try {
        publisher.sendLocation(Location(latitude = lat, longitude = lon, accuracy = accuracy.toDouble(), timestampMs = timeMs))
    } catch (e: DualPubException.InvalidLocation) {
        null                                                            // e.message: which field, why
    }

/** A silent push said the config changed (a rollout step, a rollback): fetched and applied now.
 *  Blocks up to 25 s, so call it from the push service's thread, never the UI thread. */
fun onConfigPush(publisher: DualPublisher): FetchResult = publisher.refreshConfig()

/** From the app's lifecycle observer: scheduled config fetches only run in the foreground. */
fun onForegroundChanged(publisher: DualPublisher, foreground: Boolean) = publisher.setAppForeground(foreground)
// README-END

/** What the app's own auth code provides (not part of dualpub). */
interface PubSubAuth {
    fun mqttPassword(): String
    fun pubsubToken(): String
    fun expiryMs(): Long
}
