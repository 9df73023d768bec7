import Foundation

// The SDK's streams as AsyncStreams. Each pulls from its stream object's async next() on a task
// of its own; when the consumer stops (its task cancelled, or it leaves the `for await` loop) the
// stream object is cancelled, which ends the pending next() on the Rust side at once (a cancelled
// Swift task alone would not: the Rust future keeps waiting for its next value).

public extension DualPublisher {
    /// The rollout decision: the one in force first, then each change; finishes when the
    /// publisher shuts down. Replaces `setConfigListener`.
    func decisionUpdates() throws -> AsyncStream<RolloutDecision> {
        let stream = try decisions()
        return pulled(next: { await stream.next() }, cancel: { stream.cancel() })
    }

    /// The delivery state (pending per transport, oldest pending age, last acknowledgements,
    /// breakers, network, collection, burst): the state now, then each change.
    func deliveryStateUpdates() throws -> AsyncStream<DeliveryState> {
        let stream = try deliveryStates()
        return pulled(next: { await stream.next() }, cancel: { stream.cancel() })
    }

    /// Debug events while debug mode is on (bounded: a slow consumer loses the oldest, counted in
    /// `debugReport()`). Replaces `setDebugListener`.
    func debugEventUpdates() throws -> AsyncStream<DebugEvent> {
        let stream = try debugEvents()
        return pulled(next: { await stream.next() }, cancel: { stream.cancel() })
    }
}

/// An AsyncStream fed by `next` until it returns nil; `cancel` ends a pending `next` when the
/// consumer goes away.
private func pulled<T>(next: @escaping @Sendable () async -> T?, cancel: @escaping @Sendable () -> Void) -> AsyncStream<T> {
    AsyncStream { continuation in
        let task = Task {
            while !Task.isCancelled, let value = await next() {
                continuation.yield(value)
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in
            cancel()
            task.cancel()
        }
    }
}
