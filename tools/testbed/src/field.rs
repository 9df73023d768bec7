//! A phone's links on loopback: Toxiproxy in front of TLS fronts for an MQTT broker and a
//! Pub/Sub endpoint, with a CA made for the run. The SDK is pointed at the proxies
//! ([`Field::mqtt_url`], [`Field::endpoint`], [`LocalCa::ca_pem`]); faults are toxics on
//! [`Field::mqtt`] and [`Field::pubsub`]; independent subscribers read the backends directly
//! (tests/field_links.rs, `dualpub bench network`, docs/NETWORK.md).

use crate::tls::{LocalCa, TlsFront};
use crate::toxiproxy::{Link, Toxiproxy};
use std::net::SocketAddr;

/// Bad links in front of a broker and a Pub/Sub endpoint; stops when dropped.
pub struct Field {
    /// The CA the SDK must trust (`caCertificatesPem`).
    pub ca: LocalCa,
    /// The MQTT link (toxics go here).
    pub mqtt: Link,
    /// The Pub/Sub link.
    pub pubsub: Link,
    /// The broker's TLS front (counts handshakes).
    pub mqtts: TlsFront,
    /// The endpoint's TLS front.
    pub https: TlsFront,
    _toxiproxy: Toxiproxy,
}

impl Field {
    /// Links named `name-mqtt` and `name-pubsub` to the plaintext `broker` and `endpoint`
    /// (host:port), each behind a TLS front.
    pub fn start(name: &str, broker: SocketAddr, endpoint: SocketAddr) -> std::io::Result<Field> {
        let ca = LocalCa::new();
        let mqtts = TlsFront::start(broker, &ca)?;
        let https = TlsFront::start(endpoint, &ca)?;
        let toxiproxy = Toxiproxy::start()?;
        let mqtt = toxiproxy.link(&format!("{name}-mqtt"), &format!("127.0.0.1:{}", mqtts.port))?;
        let pubsub = toxiproxy.link(&format!("{name}-pubsub"), &format!("127.0.0.1:{}", https.port))?;
        Ok(Field { ca, mqtt, pubsub, mqtts, https, _toxiproxy: toxiproxy })
    }

    /// `mqtts://` through the MQTT link.
    pub fn mqtt_url(&self) -> String {
        self.mqtt.mqtt_url(true)
    }

    /// `https://` through the Pub/Sub link.
    pub fn endpoint(&self) -> String {
        self.pubsub.http_url(true)
    }

    /// Both links.
    pub fn links(&self) -> [&Link; 2] {
        [&self.mqtt, &self.pubsub]
    }
}
