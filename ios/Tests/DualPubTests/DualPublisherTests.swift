// The Swift mirror of bindings/kotlin/src/test/kotlin/io/dualpub/DualPublisherTest.kt, for a Mac:
// run ios/build-xcframework.sh, start mosquitto and `dualpub emulator`, then
//   DUALPUB_MQTT_URL=mqtt://127.0.0.1:1883 DUALPUB_PUBSUB_URL=http://127.0.0.1:8085 swift test
// (and for the config fetch test `dualpub config-server --file F --port 8086` with
// DUALPUB_CONFIG_URL=http://127.0.0.1:8086/dualpub/config.json DUALPUB_CONFIG_FILE=F)
// (The project's own build machine has no Swift toolchain; there, scripts/swift-check verifies
// the generated header and the exported symbols instead.)
import CoreLocation
import XCTest
@testable import DualPub

final class DualPublisherTests: XCTestCase {
    static let project = "swift-project"
    static let topic = "location-updates"

    var mqttUrl: String { ProcessInfo.processInfo.environment["DUALPUB_MQTT_URL"] ?? "mqtt://127.0.0.1:1883" }
    var pubsubUrl: String { ProcessInfo.processInfo.environment["DUALPUB_PUBSUB_URL"] ?? "http://127.0.0.1:8085" }

    override func setUp() {
        super.setUp()
        // The topic, as a real deployment has it.
        var request = URLRequest(url: URL(string: "\(pubsubUrl)/v1/projects/\(Self.project)/topics/\(Self.topic)")!)
        request.httpMethod = "PUT"
        request.httpBody = Data("{}".utf8)
        let done = expectation(description: "topic")
        URLSession.shared.dataTask(with: request) { _, _, _ in done.fulfill() }.resume()
        wait(for: [done], timeout: 10)
    }

    func deviceId(_ name: String) -> String { "swift-\(name)-\(UUID().uuidString.prefix(8))" }

    func config(_ id: String, percentage: Double = 100, allowInsecure: Bool = true) -> SdkConfig {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        return SdkConfig(
            deviceId: id, companyId: "c-9",
            mqtt: MqttSettings(brokerUrl: mqttUrl),
            pubsub: PubSubSettings(endpoint: pubsubUrl, project: Self.project, topic: Self.topic, maxBatchLatencyMs: 50),
            dataDir: dir.path,
            migration: MigrationConfig(version: 1, pubsubEnabled: true, pubsubPercentage: percentage, rolloutAlgorithm: .v1),
            allowInsecure: allowInsecure)
    }

    func location(_ n: Int) -> Location {
        Location(latitude: 52.52 + Double(n) * 1e-4, longitude: 13.405, accuracy: 5, speed: 1.2,
                 timestampMs: Int64(Date().timeIntervalSince1970 * 1000) - 60_000 + Int64(n))
    }

    func testPrintingATokenOrPasswordNeverShowsIt() {
        let token = AccessToken(token: Secret(value: "ya29.token-value"), expiresAtMs: 1)
        let mqtt = MqttSettings(brokerUrl: "mqtts://m.example:8883", clientId: nil, username: "device", password: Secret(value: "hunter2-pw"))
        var dumped = ""
        dump(token, to: &dumped)
        dump(mqtt, to: &dumped)
        let printed = "\(token) \(mqtt) \(String(reflecting: mqtt)) " + dumped
        XCTAssertFalse(printed.contains("ya29.token-value"), printed)
        XCTAssertFalse(printed.contains("hunter2-pw"), printed)
    }

    func testSdkVersion() {
        XCTAssertTrue(sdkVersion().hasPrefix("dualpub/"))
    }

    func testSendAndFlushReachBothTransports() throws {
        let p = try DualPublisher(config: config(deviceId("send")), tokenProvider: nil)
        defer { p.shutdown() }
        let ids = try (0..<20).map { try p.sendLocation(location: location($0)) }
        XCTAssertEqual(Set(ids).count, 20)
        let report = try p.flush(timeoutMs: 20_000)
        XCTAssertTrue(report.completed)
        let m = try p.metrics()
        XCTAssertEqual(m.mqtt.published, 20)
        XCTAssertEqual(m.pubsub.published, 20)
    }

    func testAwaitDurable() throws {
        let p = try DualPublisher(config: config(deviceId("durable")), tokenProvider: nil)
        defer { p.shutdown() }
        for n in 0..<100 { _ = try p.sendLocation(location: location(n)) }
        XCTAssertTrue(try p.awaitDurable(timeoutMs: 10_000))
    }

    func testRolloutOutIsMqttOnly() throws {
        let p = try DualPublisher(config: config(deviceId("out"), percentage: 0), tokenProvider: nil)
        defer { p.shutdown() }
        let d = try p.decision()
        XCTAssertEqual(d.reason, .rolloutOut)
        XCTAssertTrue(d.mqttEnabled)
        XCTAssertFalse(d.pubsubEnabled)
    }

    func testEmergencyMode() throws {
        let p = try DualPublisher(config: config(deviceId("emergency")), tokenProvider: nil)
        defer { p.shutdown() }
        let d = try p.applyConfigJson(json: #"{"version": 2, "pubsubEnabled": true, "emergencyMode": true}"#)
        XCTAssertEqual(d.reason, .emergency)
        XCTAssertFalse(d.pubsubEnabled)
    }

    func testInvalidConfigKeepsTheLastGoodOne() throws {
        let p = try DualPublisher(config: config(deviceId("bad-config")), tokenProvider: nil)
        defer { p.shutdown() }
        XCTAssertThrowsError(try p.applyConfigJson(json: #"{"pubsubPercentage": 250}"#)) { error in
            guard case DualPubError.InvalidConfig = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try p.decision().configVersion, 1)
    }

    func testInvalidLocationsAreTypedErrors() throws {
        let p = try DualPublisher(config: config(deviceId("bad-location")), tokenProvider: nil)
        defer { p.shutdown() }
        var bad = location(0)
        bad.latitude = 91
        XCTAssertThrowsError(try p.sendLocation(location: bad)) { error in
            guard case DualPubError.InvalidLocation = error else { return XCTFail("\(error)") }
        }
        bad = location(0)
        bad.longitude = .nan
        XCTAssertThrowsError(try p.sendLocation(location: bad))
    }

    func testInvalidDeviceIds() {
        for bad in ["", "fleet/7", "a+b", "x#"] {
            XCTAssertThrowsError(try DualPublisher(config: config(bad), tokenProvider: nil)) { error in
                guard case DualPubError.InvalidId = error else { return XCTFail("\(error)") }
            }
        }
    }

    func testPlaintextNeedsAllowInsecure() {
        XCTAssertThrowsError(try DualPublisher(config: config(deviceId("insecure"), allowInsecure: false), tokenProvider: nil))
    }

    func testCallsAfterShutdownThrowClosed() throws {
        let p = try DualPublisher(config: config(deviceId("closed")), tokenProvider: nil)
        p.shutdown()
        XCTAssertThrowsError(try p.sendLocation(location: location(0))) { error in
            guard case DualPubError.Closed = error else { return XCTFail("\(error)") }
        }
    }

    final class Tokens: TokenProvider, @unchecked Sendable {
        var calls = 0
        func fetchToken() throws -> AccessToken {
            calls += 1
            if calls <= 2 { throw TokenError.Unavailable(reason: "offline") }
            return AccessToken(token: Secret(value: "t"), expiresAtMs: Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000)
        }
    }

    func testTokenProviderThatThrows() throws {
        let tokens = Tokens()
        let p = try DualPublisher(config: config(deviceId("tokens")), tokenProvider: tokens)
        defer { p.shutdown() }
        _ = try p.sendLocation(location: location(0))
        XCTAssertTrue(try p.flush(timeoutMs: 30_000).completed)
        XCTAssertEqual(tokens.calls, 3)
    }

    func testBucketingVectors() throws {
        let url = Bundle.module.url(forResource: "bucketing", withExtension: "json")!
        let doc = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let percentages = doc["percentages"] as! [Double]
        let vectors = doc["vectors"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(vectors.count, 200)
        for v in vectors {
            let id = v["deviceId"] as! String, salt = v["salt"] as! String
            let alg: RolloutAlgorithm = (v["algorithm"] as! String) == "v1" ? .v1 : .crc32
            XCTAssertEqual(rolloutBucket(deviceId: id, salt: salt, algorithm: alg), UInt32(v["bucket"] as! Int), id)
            let on = v["pubsub"] as! [String: Bool]
            for (key, pct) in zip(on.keys.sorted { Double($0)! < Double($1)! }, percentages) {
                XCTAssertEqual(rolloutInCohort(deviceId: id, salt: salt, algorithm: alg, percentage: pct), on[key], "\(id) at \(pct)")
            }
        }
    }

    func testCLLocationConversion() {
        let fix = CLLocation(coordinate: CLLocationCoordinate2D(latitude: 52.52, longitude: 13.405), altitude: 34,
                             horizontalAccuracy: 5, verticalAccuracy: 3, course: 90, speed: 1.2,
                             timestamp: Date(timeIntervalSince1970: 1_763_790_000))
        let loc = fix.toDualPub(battery: 0.82)
        XCTAssertEqual(loc.latitude, 52.52)
        XCTAssertEqual(loc.bearing, 90)
        XCTAssertEqual(loc.timestampMs, 1_763_790_000_000)
        let unknown = CLLocation(coordinate: fix.coordinate, altitude: 0, horizontalAccuracy: 5, verticalAccuracy: -1,
                                 course: -1, speed: -1, timestamp: Date())
        let partial = unknown.toDualPub()
        XCTAssertNil(partial.speed)
        XCTAssertNil(partial.bearing)
        XCTAssertNil(partial.altitude)
    }

    func testManyThreadsSendAtOnce() throws {
        let p = try DualPublisher(config: config(deviceId("threads")), tokenProvider: nil)
        defer { p.shutdown() }
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for n in 0..<250 { _ = try? p.sendLocation(location: self.location(t * 1000 + n)) }
        }
        XCTAssertTrue(try p.flush(timeoutMs: 30_000).completed)
        XCTAssertEqual(try p.metrics().accepted, 2000)
    }

    func testConfigIsFetchedAndRefreshedOnDemand() throws {
        let env = ProcessInfo.processInfo.environment
        guard let url = env["DUALPUB_CONFIG_URL"], let file = env["DUALPUB_CONFIG_FILE"] else {
            throw XCTSkip("DUALPUB_CONFIG_URL / DUALPUB_CONFIG_FILE not set (run dualpub config-server)")
        }
        try Data(#"{"version": 31, "pubsubEnabled": true, "pubsubPercentage": 100, "emergencyMode": true}"#.utf8)
            .write(to: URL(fileURLWithPath: file), options: .atomic)
        var c = config(deviceId("fetch"))
        c.migration = nil
        c.remoteConfigUrl = url
        let p = try DualPublisher(config: c, tokenProvider: nil)
        defer { p.shutdown() }
        let first = try p.refreshConfig()   // the SDK's start-up fetch may have applied it already
        XCTAssertTrue(first == .applied(version: 31) || first == .notModified, "\(first)")
        XCTAssertEqual(try p.configStatus().source, .fetched)
        XCTAssertEqual(try p.decision().reason, .emergency)
        try p.setAppForeground(foreground: false)
        try Data(#"{"version": 32, "pubsubEnabled": true, "pubsubPercentage": 100}"#.utf8)
            .write(to: URL(fileURLWithPath: file), options: .atomic)
        XCTAssertEqual(try p.refreshConfig(), .applied(version: 32))
        XCTAssertEqual(try p.decision().reason, .rolloutIn)
    }

    func testAsyncTwinsAndStreams() async throws {
        let p = try await DualPublisher.open(config: config(deviceId("async"), percentage: 0), tokenProvider: nil, mqttCredentialProvider: nil)
        // The decision: the one in force first, then the change.
        var decisions = try p.decisionUpdates().makeAsyncIterator()
        let first = await decisions.next()
        XCTAssertEqual(first?.pubsubEnabled, false)
        _ = try p.applyConfig(config: MigrationConfig(version: 2, pubsubEnabled: true, pubsubPercentage: 100, rolloutAlgorithm: .v1))
        let changed = await decisions.next()
        XCTAssertEqual(changed?.pubsubEnabled, true)
        // Delivered: pending reaches 0 on both transports.
        _ = try (0..<5).map { try p.sendLocation(location: location($0)) }
        let report = try await p.flushAsync(timeoutMs: 20_000)
        XCTAssertTrue(report.completed)
        for await state in try p.deliveryStateUpdates() where state.pendingMqtt == 0 && state.pendingPubsub == 0 {
            XCTAssertNotNil(state.lastAckMqttMs)
            break
        }
        // Paused: refused, typed; purged: counted.
        try p.setCollectionEnabled(enabled: false)
        XCTAssertThrowsError(try p.sendLocation(location: location(9))) { error in
            guard case DualPubError.CollectionPaused = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try p.purge().locations, 0)
        await p.shutdownAsync()
    }
}
