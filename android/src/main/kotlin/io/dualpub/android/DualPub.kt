package io.dualpub.android

import android.content.Context
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
            ),
            tokenProvider,
        )
    }
}
