package io.dualpub.android

import android.content.Context
import androidx.work.BackoffPolicy
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingWorkPolicy
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import io.dualpub.DualPubException
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.filterNotNull
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.withTimeoutOrNull

/**
 * Drains the outbox from WorkManager when the app is in the background (or its process was
 * started again without UI) and the network is there: one bounded upload burst
 * ([io.dualpub.DualPublisher.drainAsync]), retried with WorkManager's backoff until nothing is
 * owed. Unique work ([UNIQUE_NAME]): enqueuing it again while it waits changes nothing.
 *
 * It drains the publisher [DualPub.attach] (or [DualPub.followProcessLifecycle]) made known: the
 * app opens its publisher in `Application.onCreate`, which runs before any worker; it waits
 * [ATTACH_WAIT_MS] for one opened asynchronously there.
 */
class DualPubUploadWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    override suspend fun doWork(): Result {
        val publisher = withTimeoutOrNull(ATTACH_WAIT_MS) { DualPub.attached.filterNotNull().first() }
            ?: return Result.retry()
        return try {
            if (publisher.drainAsync(DRAIN_MS).completed) Result.success() else Result.retry()
        } catch (e: DualPubException.Closed) {
            Result.retry() // shut down meanwhile: the next publisher takes over the outbox
        }
    }

    companion object {
        /** The unique work's name. */
        const val UNIQUE_NAME = "io.dualpub.upload"

        /** How long one run drains at most (WorkManager stops a worker after 10 minutes). */
        const val DRAIN_MS: ULong = 60_000uL

        /** How long a run waits for the app to attach its publisher. */
        const val ATTACH_WAIT_MS = 10_000L

        /**
         * Enqueues a drain for when a network is connected (unique: kept if one already waits).
         */
        @JvmStatic
        fun enqueue(context: Context) {
            val request = OneTimeWorkRequestBuilder<DualPubUploadWorker>()
                .setConstraints(Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build())
                .setBackoffCriteria(BackoffPolicy.EXPONENTIAL, 30, TimeUnit.SECONDS)
                .build()
            WorkManager.getInstance(context.applicationContext).enqueueUniqueWork(UNIQUE_NAME, ExistingWorkPolicy.KEEP, request)
        }
    }
}
