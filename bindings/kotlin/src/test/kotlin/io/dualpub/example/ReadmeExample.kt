// The Kotlin example of README.md, compiled with the suite so it cannot rot. The part between
// the markers must appear verbatim in README.md (scripts/kotlin-test checks it).
package io.dualpub.example

// README-BEGIN
import io.dualpub.*
import java.io.File
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch

/** Starts publishing for this device. A suspend call, safe on the main thread: the outbox
 *  database is opened on an SDK thread. */
suspend fun startPublishing(deviceId: String, filesDir: File, auth: PubSubAuth): DualPublisher =
    DualPublisher.open(
        SdkConfig(
            deviceId = deviceId,
            companyId = "fleet-42",
            mqtt = MqttSettings(brokerUrl = "mqtts://mqtt.example.com:8883", username = "device", password = Secret(auth.mqttPassword())),
            pubsub = PubSubSettings(project = "tracking-prod"),        // topic "location-updates"
            dataDir = File(filesDir, "dualpub").path,
            remoteConfigUrl = "https://config.example.com/dualpub/migration.json",  // fetched by the SDK
            collectionEnabled = auth.userAllowsTracking(),              // the user's stored choice
        ),
        tokenProvider = object : TokenProvider {                        // called on an SDK thread
            override fun fetchToken() = AccessToken(token = Secret(auth.pubsubToken()), expiresAtMs = auth.expiryMs())
        },
        mqttCredentialProvider = null,
    )

/** Queues one fix and returns its eventId at once (no I/O), or null if the SDK refused it. */
fun report(publisher: DualPublisher, lat: Double, lon: Double, accuracy: Float, timeMs: Long): String? =
    try {
        publisher.sendLocation(Location(latitude = lat, longitude = lon, accuracy = accuracy.toDouble(), timestampMs = timeMs))
    } catch (e: DualPubException.InvalidLocation) {
        null                                                            // e.message: which field, why
    } catch (e: DualPubException.CollectionPaused) {
        null                                                            // the user opted out
    }

/** A screen's view of the SDK, collected in its lifecycle scope (viewModelScope, lifecycleScope). */
fun watch(publisher: DualPublisher, scope: CoroutineScope, show: (String) -> Unit): StateFlow<RolloutDecision> {
    scope.launch {
        publisher.deliveryStateFlow().collect { s ->                    // the state now, then each change
            show("MQTT ${s.pendingMqtt} / Pub/Sub ${s.pendingPubsub} waiting")
        }
    }
    return publisher.decisionStateFlow(scope)                           // where this device publishes, and why
}

/** A silent push said the config changed (a rollout step, a rollback): fetched and applied now,
 *  suspending (not blocking) up to 25 s. */
suspend fun onConfigPush(publisher: DualPublisher): FetchResult = publisher.refreshConfigAsync()

/** The user opted out: nothing more is collected or sent, and nothing of theirs stays queued. */
fun onOptOut(publisher: DualPublisher): PurgeReport {
    publisher.setCollectionEnabled(false)
    return publisher.purge()
}
// README-END

/** What the app's own auth code provides (not part of dualpub). */
interface PubSubAuth {
    fun userAllowsTracking(): Boolean
    fun mqttPassword(): String
    fun pubsubToken(): String
    fun expiryMs(): Long
}
