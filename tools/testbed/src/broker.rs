//! rumqttd embedded in-process. It has no shutdown API: it lives until the process ends
//! (outages are tested against mosquitto, which can be killed and restarted).

use std::time::Duration;

/// A running embedded broker.
pub struct EmbeddedBroker {
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl EmbeddedBroker {
    /// Starts rumqttd (MQTT 3.1.1) on a free port of 127.0.0.1 and waits until it listens.
    pub fn start() -> std::io::Result<EmbeddedBroker> {
        let port = crate::free_port()?;
        let config = serde_json::json!({
            "id": 0,
            "router": {
                "max_connections": 10010,
                "max_outgoing_packet_count": 200,
                "max_segment_size": 104857600,
                "max_segment_count": 10
            },
            "v4": {
                "1": {
                    "name": "v4-1",
                    "listen": format!("127.0.0.1:{port}"),
                    "next_connection_delay_ms": 1,
                    "connections": {
                        "connection_timeout_ms": 60000,
                        "max_payload_size": 262144,
                        "max_inflight_count": 200,
                        "dynamic_filters": true
                    }
                }
            }
        });
        let config: rumqttd::Config = serde_json::from_value(config).map_err(std::io::Error::other)?;
        std::thread::Builder::new().name("rumqttd".into()).spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                log::error!("embedded broker stopped: {e}");
            }
        })?;
        if !crate::wait_for_port(port, Duration::from_secs(10)) {
            return Err(std::io::Error::other("embedded broker did not start listening"));
        }
        Ok(EmbeddedBroker { port })
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}
