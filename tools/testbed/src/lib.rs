//! The test bed shared by the integration tests and the demo (dev-only): an embedded MQTT
//! broker (rumqttd), a mosquitto launcher, and two independent subscribers that count what
//! really reached each backend — an MQTT subscription and a Pub/Sub pull subscription — with
//! their counterparts on the migration-report topics, and a local remote-config server.

pub mod broker;
pub mod config_server;
pub mod field;
pub mod mosquitto;
pub mod packet_log;
pub mod proxy;
pub mod rabbitmq;
pub mod radio;
pub mod report_subscribers;
pub mod subscribers;
pub mod tls;
pub mod toxiproxy;

pub use dualpub_emulator::{EmulatorHandle, EmulatorOptions, FaultPlan};

/// A free TCP port on 127.0.0.1 (bound and released; a tiny race is accepted in dev tools).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Host and port of a URL (`default_port` when it names none), e.g. a broker's `mqtt://host:port`.
pub fn url_host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let rest = url.split_once("://").map(|(_, r)| r).ok_or_else(|| format!("{url:?} is not a URL"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((h.trim_matches(['[', ']']).to_string(), p.parse().map_err(|_| format!("bad port in {url:?}"))?)),
        None => Ok((hostport.to_string(), default_port)),
    }
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

/// An HTTP client for the test bed, with timeouts (a backend that accepts connections and never
/// answers must not hang a subscriber or a demo): 10 s to connect, 30 s a request. The
/// workspace builds reqwest without a built-in crypto provider (the SDK passes its own), so the
/// test bed installs ring as the process default.
pub fn http_client() -> reqwest::Client {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_host_and_port_or_takes_the_default() {
        assert_eq!(url_host_port("mqtt://127.0.0.1:1884", 1883), Ok(("127.0.0.1".into(), 1884)));
        assert_eq!(url_host_port("mqtts://broker.example", 8883), Ok(("broker.example".into(), 8883)));
        assert_eq!(url_host_port("http://[::1]:8085/v1/projects", 80), Ok(("::1".into(), 8085)));
        assert_eq!(url_host_port("http://emulator/v1", 80), Ok(("emulator".into(), 80)));
        assert_eq!(url_host_port("127.0.0.1:1883", 1883), Err("\"127.0.0.1:1883\" is not a URL".into()));
        assert_eq!(url_host_port("mqtt://host:port", 1883), Err("bad port in \"mqtt://host:port\"".into()));
    }
}
