//! Toxiproxy (Shopify's TCP fault proxy, v2) as a child process on loopback, driven through its
//! REST API: a proxy per backend, and toxics for the links phones have — latency with jitter,
//! bandwidth, a black hole (`timeout` 0: the connection stays open and every byte vanishes, a
//! NAT that forgot the flow), resets, TCP sliced into tiny segments, connections cut after a
//! few kilobytes. Built by `scripts/setup.sh` into `target/tools/toxiproxy/server`
//! (docs/NETWORK.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where the Toxiproxy server binary is: `$DUALPUB_TOXIPROXY`, else the one `scripts/setup.sh`
/// builds under the workspace's `target/tools`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DUALPUB_TOXIPROXY") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/toxiproxy/server");
    root.exists().then_some(root)
}

/// A running Toxiproxy server; killed when dropped.
pub struct Toxiproxy {
    api: u16,
    child: Child,
}

/// One proxy of a [`Toxiproxy`]: clients connect to `port`, bytes go on to its upstream.
#[derive(Debug, Clone)]
pub struct Link {
    /// The proxy's name (its toxics are addressed by it).
    pub name: String,
    /// The port clients connect to.
    pub port: u16,
    api: u16,
}

/// Which way a toxic acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Up => "upstream",
            Stream::Down => "downstream",
        }
    }
}

impl Toxiproxy {
    /// Starts the server on a free loopback port (panics with how to build it if it is missing).
    pub fn start() -> std::io::Result<Toxiproxy> {
        let bin = binary().ok_or_else(|| std::io::Error::other("Toxiproxy is not built: run scripts/setup.sh (ensure_toxiproxy)"))?;
        let api = crate::free_port()?;
        let child = Command::new(bin).args(["-host", "127.0.0.1", "-port", &api.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let t = Toxiproxy { api, child };
        if !crate::wait_for_port(api, Duration::from_secs(10)) {
            return Err(std::io::Error::other("Toxiproxy did not start"));
        }
        Ok(t)
    }

    /// A new proxy named `name` in front of `upstream` (`host:port`).
    pub fn link(&self, name: &str, upstream: &str) -> std::io::Result<Link> {
        let body = serde_json::json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true});
        let resp = request(self.api, "POST", "/proxies", Some(&body))?;
        let listen = resp["listen"].as_str().ok_or_else(|| std::io::Error::other(format!("no listen address in {resp}")))?;
        let port = listen.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad listen address {listen}")))?;
        Ok(Link { name: name.to_string(), port, api: self.api })
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Link {
    /// Adds toxic `name` of `kind` on `stream` with `attributes` (Toxiproxy's names).
    pub fn add(&self, name: &str, kind: &str, stream: Stream, attributes: serde_json::Value) -> std::io::Result<()> {
        let body = serde_json::json!({"name": name, "type": kind, "stream": stream.as_str(), "toxicity": 1.0, "attributes": attributes});
        request(self.api, "POST", &format!("/proxies/{}/toxics", self.name), Some(&body)).map(drop)
    }

    /// Removes toxic `name`.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        request(self.api, "DELETE", &format!("/proxies/{}/toxics/{name}", self.name), None).map(drop)
    }

    /// Cellular: `latency_ms` ± `jitter_ms` each way and `kbps` KB/s each way.
    pub fn cellular(&self, latency_ms: u64, jitter_ms: u64, kbps: u64) -> std::io::Result<()> {
        for s in [Stream::Up, Stream::Down] {
            self.add(&format!("latency_{}", s.as_str()), "latency", s, serde_json::json!({"latency": latency_ms / 2, "jitter": jitter_ms / 2}))?;
            self.add(&format!("bandwidth_{}", s.as_str()), "bandwidth", s, serde_json::json!({"rate": kbps}))?;
        }
        Ok(())
    }

    /// A black hole: connections stay open, every byte either way vanishes, new connections are
    /// accepted and hear nothing (a NAT that forgot the flow). [`Link::heal`] ends it.
    pub fn black_hole(&self) -> std::io::Result<()> {
        for s in [Stream::Up, Stream::Down] {
            self.add(&format!("hole_{}", s.as_str()), "timeout", s, serde_json::json!({"timeout": 0}))?;
        }
        Ok(())
    }

    /// Ends a [`Link::black_hole`]: connections opened from now on work (those it held are
    /// dead; the client must notice and reconnect).
    pub fn heal(&self) -> std::io::Result<()> {
        for s in [Stream::Up, Stream::Down] {
            self.remove(&format!("hole_{}", s.as_str()))?;
        }
        Ok(())
    }

    /// Connections are cut (reset) after `bytes` bytes from the client.
    pub fn cut_after(&self, bytes: u64) -> std::io::Result<()> {
        self.add("limit_data", "limit_data", Stream::Up, serde_json::json!({"bytes": bytes}))
    }

    /// Enables or disables the proxy: disabled, it closes every connection and refuses new ones.
    pub fn set_enabled(&self, enabled: bool) -> std::io::Result<()> {
        request(self.api, "POST", &format!("/proxies/{}", self.name), Some(&serde_json::json!({"enabled": enabled}))).map(drop)
    }

    /// `mqtt://127.0.0.1:PORT` (or `mqtts://` with `tls`).
    pub fn mqtt_url(&self, tls: bool) -> String {
        format!("{}://127.0.0.1:{}", if tls { "mqtts" } else { "mqtt" }, self.port)
    }

    /// `http://127.0.0.1:PORT` (or `https://` with `tls`).
    pub fn http_url(&self, tls: bool) -> String {
        format!("{}://127.0.0.1:{}", if tls { "https" } else { "http" }, self.port)
    }
}

/// One request to the API (HTTP/1.1, connection closed after it); its JSON answer (`null` when
/// it has none). A status of 300 or more is an error with the answer's text.
fn request(api: u16, method: &str, path: &str, body: Option<&serde_json::Value>) -> std::io::Result<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", api))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, text) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if !(200..300).contains(&status) {
        return Err(std::io::Error::other(format!("Toxiproxy {method} {path}: {head} {text}")));
    }
    Ok(serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null))
}
