package io.dualpub.android

import android.content.Context
import android.net.ConnectivityManager
import android.net.Network
import androidx.lifecycle.DefaultLifecycleObserver
import androidx.lifecycle.LifecycleOwner
import androidx.lifecycle.ProcessLifecycleOwner
import io.dualpub.DualPublisher
import io.dualpub.MigrationConfig
import io.dualpub.MqttSettings
import io.dualpub.PubSubSettings
import io.dualpub.SdkConfig
import io.dualpub.TokenProvider
import java.io.File
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.launch

/** Android entry point: chooses the data directory so the app does not have to. */
object DualPub {
    /** How long going to the background waits for the last locations to reach the disk. */
    const val BACKGROUND_DURABLE_MS: ULong = 2_000uL

    private val background = CoroutineScope(SupervisorJob() + Dispatchers.Default)
    private val current = MutableStateFlow<DualPublisher?>(null)

    /** The publisher [DualPubUploadWorker] drains: the last one attached. */
    val attached: StateFlow<DualPublisher?> get() = current

    /** Makes [publisher] the one [DualPubUploadWorker] drains ([followProcessLifecycle] does it too). */
    @JvmStatic
    fun attach(publisher: DualPublisher) {
        current.value = publisher
    }

    /**
     * The async twin of [initialize], safe on the main thread: the outbox database is opened on
     * an SDK thread.
     */
    suspend fun open(
        context: Context,
        deviceId: String,
        mqtt: MqttSettings,
        pubsub: PubSubSettings,
        companyId: String? = null,
        migration: MigrationConfig? = null,
        tokenProvider: TokenProvider? = null,
        remoteConfigUrl: String? = null,
    ): DualPublisher = DualPublisher.open(
        sdkConfig(context, deviceId, mqtt, pubsub, companyId, migration, remoteConfigUrl),
        tokenProvider,
        null,
    )

    private fun sdkConfig(
        context: Context,
        deviceId: String,
        mqtt: MqttSettings,
        pubsub: PubSubSettings,
        companyId: String?,
        migration: MigrationConfig?,
        remoteConfigUrl: String?,
    ) = SdkConfig(
        deviceId = deviceId,
        companyId = companyId,
        mqtt = mqtt,
        pubsub = pubsub,
        dataDir = File(context.applicationContext.noBackupFilesDir, "dualpub").path,
        migration = migration,
        remoteConfigUrl = remoteConfigUrl,
    )

    /**
     * Creates the publisher for this device, keeping its outbox in the app's no-backup files
     * directory (not synced by Auto Backup, survives updates). Call it once, off the main thread:
     * it opens the outbox database (or use [open] from a coroutine). Throws
     * [io.dualpub.DualPubException] for invalid settings.
     */
    @JvmStatic
    @JvmOverloads
    fun initialize(
        context: Context,
        deviceId: String,
        mqtt: MqttSettings,
        pubsub: PubSubSettings,
        companyId: String? = null,
        migration: MigrationConfig? = null,
        tokenProvider: TokenProvider? = null,
        remoteConfigUrl: String? = null,
    ): DualPublisher = DualPublisher(sdkConfig(context, deviceId, mqtt, pubsub, companyId, migration, remoteConfigUrl), tokenProvider)

    /**
     * Tells [publisher] when the app moves between foreground and background, so scheduled
     * config fetches happen only in the foreground, and attaches it for [DualPubUploadWorker].
     * When the app goes to the background it sends what is queued at once (`flushNow`), waits
     * [BACKGROUND_DURABLE_MS] at most for the last locations to reach the disk, and, with a
     * [context], enqueues [DualPubUploadWorker] if anything is still owed, to drain it once a
     * network is there. Call on the main thread (lifecycle rule); nothing here blocks it.
     * Returns the observer so it can be removed.
     */
    @JvmStatic
    @JvmOverloads
    fun followProcessLifecycle(publisher: DualPublisher, context: Context? = null): DefaultLifecycleObserver {
        attach(publisher)
        val app = context?.applicationContext
        val observer = object : DefaultLifecycleObserver {
            // A publisher already shut down throws Closed: nothing to tell it any more.
            override fun onStart(owner: LifecycleOwner) { runCatching { publisher.setAppForeground(true) } }
            override fun onStop(owner: LifecycleOwner) {
                runCatching {
                    publisher.setAppForeground(false)
                    publisher.flushNow()
                }
                background.launch {
                    runCatching {
                        publisher.awaitDurableAsync(BACKGROUND_DURABLE_MS)
                        val m = publisher.metrics()
                        if (app != null && m.mqtt.queueDepth + m.pubsub.queueDepth > 0uL) DualPubUploadWorker.enqueue(app)
                    }
                }
            }
        }
        ProcessLifecycleOwner.get().lifecycle.addObserver(observer)
        return observer
    }

    /**
     * Tells [publisher] whether the device has a network, from the system's default-network
     * callback, so nothing is attempted while it has none and one upload burst sends the
     * backlog when it returns. Needs `ACCESS_NETWORK_STATE` (declared by this library's
     * manifest). Returns the callback: pass it to `ConnectivityManager.unregisterNetworkCallback`
     * before shutting the publisher down.
     */
    @JvmStatic
    fun followConnectivity(context: Context, publisher: DualPublisher): ConnectivityManager.NetworkCallback {
        val cm = context.applicationContext.getSystemService(ConnectivityManager::class.java)
        val callback = object : ConnectivityManager.NetworkCallback() {
            // A publisher already shut down throws Closed: nothing to tell it any more.
            override fun onAvailable(network: Network) { runCatching { publisher.setNetworkAvailable(true) } }
            override fun onLost(network: Network) { runCatching { publisher.setNetworkAvailable(false) } }
        }
        // No default network now: the callback says nothing until one appears.
        if (cm.activeNetwork == null) runCatching { publisher.setNetworkAvailable(false) }
        cm.registerDefaultNetworkCallback(callback)
        return callback
    }
}
