import CoreLocation
import Foundation

public extension CLLocation {
    /// This fix as a dualpub location. Invalid readings (Core Location reports them as negative
    /// values) are left out of the wire JSON; `battery` is a fraction in [0, 1].
    func toDualPub(battery: Double? = nil) -> Location {
        Location(
            latitude: coordinate.latitude,
            longitude: coordinate.longitude,
            accuracy: horizontalAccuracy >= 0 ? horizontalAccuracy : nil,
            speed: speed >= 0 ? speed : nil,
            bearing: course >= 0 && course < 360 ? course : nil,
            altitude: verticalAccuracy > 0 ? altitude : nil,
            timestampMs: Int64((timestamp.timeIntervalSince1970 * 1000).rounded()),
            battery: battery
        )
    }
}
