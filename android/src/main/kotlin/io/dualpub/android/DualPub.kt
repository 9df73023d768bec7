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

/** Android entry point: chooses the data directory so the app does not have to. */
object DualPub {
    /**
     * Creates the publisher for this device, keeping its outbox in the app's no-backup files
     * directory (not synced by Auto Backup, survives updates). Call it once, off the main thread:
     * it opens the outbox database. Throws [io.dualpub.DualPubException] for invalid settings.
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
    ): DualPublisher {
        val dataDir = File(context.applicationContext.noBackupFilesDir, "dualpub")
        return DualPublisher(
            SdkConfig(
                deviceId = deviceId,
                companyId = companyId,
                mqtt = mqtt,
                pubsub = pubsub,
                dataDir = dataDir.path,
                migration = migration,
                remoteConfigUrl = remoteConfigUrl,
            ),
            tokenProvider,
        )
    }

    /**
     * Tells [publisher] when the app moves between foreground and background, so scheduled
     * config fetches happen only in the foreground. Call on the main thread (lifecycle rule);
     * returns the observer so it can be removed.
     */
    @JvmStatic
    fun followProcessLifecycle(publisher: DualPublisher): DefaultLifecycleObserver {
        val observer = object : DefaultLifecycleObserver {
            // A publisher already shut down throws Closed: nothing to tell it any more.
            override fun onStart(owner: LifecycleOwner) { runCatching { publisher.setAppForeground(true) } }
            override fun onStop(owner: LifecycleOwner) { runCatching { publisher.setAppForeground(false) } }
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
