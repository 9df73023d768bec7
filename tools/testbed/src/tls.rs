//! TLS as production has it, on loopback: a local CA made for the test bed ([`LocalCa`]), its
//! files for mosquitto's TLS listener, and [`TlsFront`], a TLS-terminating front (rustls) for
//! the embedded broker and the Pub/Sub emulator — what a load balancer is to the real ones. The
//! front counts full and resumed handshakes and the bytes each took, so a test or the radio
//! harness can see whether the SDK resumes its sessions across bursts.

use crate::mosquitto::TlsFiles;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A CA made for the test bed and a server certificate it signed, for `localhost` and
/// `127.0.0.1`.
pub struct LocalCa {
    /// The CA certificate, PEM: what the SDK is given as `caCertificatesPem`.
    pub ca_pem: String,
    /// The server certificate chain, PEM.
    pub cert_pem: String,
    /// The server key, PEM.
    pub key_pem: String,
}

impl LocalCa {
    /// A new CA and server certificate.
    pub fn new() -> LocalCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "dualpub test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
        LocalCa { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes the CA, certificate and key to `dir` (for mosquitto's TLS listener).
    pub fn write(&self, dir: &Path) -> std::io::Result<TlsFiles> {
        let files = TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
        std::fs::write(&files.ca, &self.ca_pem)?;
        std::fs::write(&files.cert, &self.cert_pem)?;
        std::fs::write(&files.key, &self.key_pem)?;
        Ok(files)
    }

    /// A rustls server config with this certificate; sessions can be resumed with stateless
    /// TLS 1.3 tickets (as a broker configured for it does: a fleet of thousands outgrows any
    /// server-side session cache, rustls's default of 256 included).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("certificate PEM");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        Arc::new(config)
    }
}

impl Default for LocalCa {
    fn default() -> Self {
        LocalCa::new()
    }
}

/// Handshakes a [`TlsFront`] completed, by kind, and when each connection came.
#[derive(Debug, Default)]
struct Counts {
    full: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
    arrivals: std::sync::Mutex<Vec<std::time::Instant>>,
}

/// What a [`TlsFront`] has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Handshakes {
    /// Full handshakes (certificate sent).
    pub full: u64,
    /// Resumed handshakes (a session ticket or id accepted; no certificate).
    pub resumed: u64,
    /// Connections whose handshake failed (an untrusted certificate, a cut link).
    pub failed: u64,
}

/// A TLS-terminating front on 127.0.0.1: TLS from the client, plaintext to `upstream`;
/// stops when dropped.
pub struct TlsFront {
    /// The port clients connect to.
    pub port: u16,
    counts: Arc<Counts>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    /// Starts a front for `upstream` with `ca`'s server certificate.
    pub fn start(upstream: SocketAddr, ca: &LocalCa) -> std::io::Result<TlsFront> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("tls-front").enable_all().build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, c) = (acceptor.clone(), c.clone());
                c.arrivals.lock().unwrap_or_else(|p| p.into_inner()).push(std::time::Instant::now());
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let tls = match acceptor.accept(client).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            c.failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    (if resumed { &c.resumed } else { &c.full }).fetch_add(1, Ordering::SeqCst);
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = server.set_nodelay(true);
                        pipe(tls, server).await;
                    }
                });
            }
        });
        Ok(TlsFront { port, counts, _runtime: runtime })
    }

    /// The handshakes completed so far.
    pub fn handshakes(&self) -> Handshakes {
        Handshakes {
            full: self.counts.full.load(Ordering::SeqCst),
            resumed: self.counts.resumed.load(Ordering::SeqCst),
            failed: self.counts.failed.load(Ordering::SeqCst),
        }
    }

    /// When each connection arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.counts.arrivals.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `mqtts://127.0.0.1:PORT`.
    pub fn mqtts_url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }
}

/// Copies both ways until either side ends.
async fn pipe(mut a: impl AsyncRead + AsyncWrite + Unpin, mut b: impl AsyncRead + AsyncWrite + Unpin) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

/// Connections per second over a run: the busiest second against the mean over the seconds
/// from the first connection to the last (a fleet in step shows a peak far above its mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectRate {
    /// Connections counted.
    pub total: usize,
    /// The most in any one second.
    pub peak: usize,
    /// Connections over the seconds spanned (at least one).
    pub mean: f64,
}

impl ConnectRate {
    /// The rate of `arrivals`, in one-second bins from the first.
    pub fn of(arrivals: &[std::time::Instant]) -> ConnectRate {
        let Some(first) = arrivals.iter().min() else { return ConnectRate { total: 0, peak: 0, mean: 0.0 } };
        let mut bins = std::collections::HashMap::<u64, usize>::new();
        for a in arrivals {
            *bins.entry(a.duration_since(*first).as_secs()).or_default() += 1;
        }
        let seconds = bins.keys().max().map_or(1, |last| last + 1);
        ConnectRate { total: arrivals.len(), peak: bins.values().copied().max().unwrap_or(0), mean: arrivals.len() as f64 / seconds as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_connect_rate_is_its_busiest_second_against_its_mean() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let r = ConnectRate::of(&[at(0), at(100), at(900), at(1_500), at(3_999)]);
        assert_eq!((r.total, r.peak), (5, 3));
        assert_eq!(r.mean, 5.0 / 4.0, "four seconds spanned");
        assert_eq!(ConnectRate::of(&[]).total, 0);
    }
}
