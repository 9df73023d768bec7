//! The test bed shared by the integration tests and the demo (dev-only): an embedded MQTT
//! broker (rumqttd), a mosquitto launcher, and two independent subscribers that count what
//! really reached each backend — an MQTT subscription and a Pub/Sub pull subscription — and a
//! local remote-config server.

pub mod broker;
pub mod config_server;
pub mod mosquitto;
pub mod packet_log;
pub mod proxy;
pub mod rabbitmq;
pub mod radio;
pub mod subscribers;

pub use dualpub_emulator::{EmulatorHandle, EmulatorOptions, FaultPlan};

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is accepted in dev tools).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `port`, up to `timeout`.
pub fn wait_for_port(port: u16, timeout: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// An HTTP client for the test bed. The workspace builds reqwest without a built-in crypto
/// provider (the SDK passes its own), so the test bed installs ring as the process default.
pub fn http_client() -> reqwest::Client {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::new()
}
