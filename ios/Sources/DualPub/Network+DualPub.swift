import Foundation
import Network

public extension DualPublisher {
    /// Tells this publisher whether the device has a network, from an `NWPathMonitor` started on
    /// `queue`: nothing is attempted while the path is unsatisfied, and one upload burst sends
    /// the backlog when it is satisfied again. Keep the returned monitor; call `cancel()` on it
    /// before shutting the publisher down.
    func followNetworkPath(queue: DispatchQueue = DispatchQueue(label: "io.dualpub.network")) -> NWPathMonitor {
        let monitor = NWPathMonitor()
        monitor.pathUpdateHandler = { [weak self] path in
            // A publisher already shut down throws Closed: nothing to tell it any more.
            try? self?.setNetworkAvailable(available: path.status == .satisfied)
        }
        monitor.start(queue: queue)
        return monitor
    }
}
