// Uploading when the app leaves the screen: a background task around a bounded drain, and a
// BGAppRefreshTask that drains what is still owed later. UIKit and BackgroundTasks exist on iOS
// only; the package also builds for macOS, where this file compiles to nothing.
#if canImport(UIKit) && canImport(BackgroundTasks) && !os(watchOS)
import BackgroundTasks
import Foundation
import UIKit

/// The iOS side of background upload (docs/CONTRACT.md#background-upload).
public enum DualPubBackground {
    /// Call from `sceneDidEnterBackground` / `applicationDidEnterBackground`: asks the system
    /// for background time (`beginBackgroundTask`) and spends at most `seconds` of it on one
    /// upload burst (`drainAsync`), ending the task as soon as the burst is over or the
    /// system's time is up. The main thread is never blocked.
    @MainActor
    public static func drainOnBackground(_ publisher: DualPublisher, seconds: Double = 25) {
        let task = BackgroundTask()
        let timeoutMs = UInt64(max(0, seconds) * 1000)
        let drain = Task { _ = try? await publisher.drainAsync(timeoutMs: timeoutMs) }
        task.id = UIApplication.shared.beginBackgroundTask(withName: "io.dualpub.drain") {
            // Time is up: the burst goes on as long as the process runs; the task ends now.
            drain.cancel()
            task.end()
        }
        Task { @MainActor in
            await drain.value
            task.end()
        }
    }

    /// Registers the handler of the BGAppRefreshTask `identifier` (list it under
    /// `BGTaskSchedulerPermittedIdentifiers` in Info.plist); call it before the app finishes
    /// launching. Each run schedules the next, then drains `publisher()` for at most 25 s.
    /// Returns whether the system accepted the registration.
    @discardableResult
    public static func registerAppRefresh(identifier: String, publisher: @escaping @Sendable () -> DualPublisher?) -> Bool {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            scheduleAppRefresh(identifier: identifier)
            let done = Once()
            guard let p = publisher() else {
                task.setTaskCompleted(success: true)
                return
            }
            let drain = Task { () -> Bool in
                ((try? await p.drainAsync(timeoutMs: 25_000))?.completed) ?? false
            }
            task.expirationHandler = {
                drain.cancel()
                if done.first() { task.setTaskCompleted(success: false) }
            }
            Task {
                let completed = await drain.value
                if done.first() { task.setTaskCompleted(success: completed) }
            }
        }
    }

    /// Asks for the next app refresh no earlier than `earliestBegin` seconds from now.
    public static func scheduleAppRefresh(identifier: String, earliestBegin: TimeInterval = 15 * 60) {
        let request = BGAppRefreshTaskRequest(identifier: identifier)
        request.earliestBeginDate = Date(timeIntervalSinceNow: earliestBegin)
        try? BGTaskScheduler.shared.submit(request)
    }
}

/// One `beginBackgroundTask`, ended once.
@MainActor
private final class BackgroundTask {
    var id: UIBackgroundTaskIdentifier = .invalid

    func end() {
        guard id != .invalid else { return }
        UIApplication.shared.endBackgroundTask(id)
        id = .invalid
    }
}

/// True for the first caller only (a BGTask is completed once).
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false

    func first() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if taken { return false }
        taken = true
        return true
    }
}
#endif
