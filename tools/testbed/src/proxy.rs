//! A TCP fault proxy between the SDK and a broker or the emulator: forwards bytes both ways,
//! and on command cuts every open connection and refuses new ones, or delays them. Started
//! with [`FaultProxy::start_logged`] it also records every chunk, open, close and refused
//! attempt in a [`PacketLog`] (the radio harness, docs/RADIO.md).

use crate::packet_log::{Direction, Kind, PacketLog};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
struct Control {
    refusing: AtomicBool,
    delay_ms: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
}

/// A running proxy on 127.0.0.1; stops when dropped.
pub struct FaultProxy {
    /// The port clients connect to.
    pub port: u16,
    control: Arc<Control>,
    _runtime: tokio::runtime::Runtime,
}

/// Forwards both ways until both sides are done or one fails; with a log, chunk by chunk.
async fn forward(client: &mut TcpStream, server: &mut TcpStream, log: Option<&(PacketLog, &'static str, u64)>) {
    let Some((log, backend, conn)) = log else {
        let _ = tokio::io::copy_bidirectional(client, server).await;
        return;
    };
    // Forward each chunk as it came: without this, Nagle's algorithm on the proxy's sockets
    // holds a client's second write (an HTTP body after its headers) until the first is
    // acknowledged, which a delayed ACK makes 40 ms, a delay the client itself never had.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let up = pump(&mut cr, &mut sw, log, backend, *conn, Direction::Up);
    let down = pump(&mut sr, &mut cw, log, backend, *conn, Direction::Down);
    let _ = tokio::try_join!(up, down);
}

/// Copies `from` to `to`, logging each chunk as it is read; shuts `to` down at end of stream.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    log: &PacketLog,
    backend: &'static str,
    conn: u64,
    dir: Direction,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        log.record(backend, conn, dir, Kind::Data, n as u64);
        to.write_all(&buf[..n]).await?;
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        Self::start_inner(upstream, None)
    }

    /// Starts a proxy to `upstream` that records what crosses it in `log`, labelled `backend`.
    pub fn start_logged(upstream: SocketAddr, log: PacketLog, backend: &'static str) -> std::io::Result<FaultProxy> {
        Self::start_inner(upstream, Some((log, backend)))
    }

    // SO_LINGER 0 is used on purpose: dropping the socket then sends a RST at once (a cut
    // connection, as a phone sees on a network change) and never blocks.
    #[allow(deprecated)]
    fn start_inner(upstream: SocketAddr, log: Option<(PacketLog, &'static str)>) -> std::io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().thread_name("fault-proxy").build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let control = Arc::new(Control {
            refusing: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            cut: watch::channel(0).0,
        });
        let c = control.clone();
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(std_listener) else { return };
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                if c.refusing.load(Ordering::SeqCst) {
                    if let Some((log, backend)) = &log {
                        log.record(backend, log.next_conn(), Direction::Up, Kind::Refused, 0);
                    }
                    let _ = client.set_linger(Some(Duration::ZERO));
                    drop(client);
                    continue;
                }
                c.accepted.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                let log = log.as_ref().map(|(log, backend)| {
                    let conn = log.next_conn();
                    log.record(backend, conn, Direction::Up, Kind::Open, 0);
                    (log.clone(), *backend, conn)
                });
                tokio::spawn(async move {
                    let delay = c.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        let _ = client.shutdown().await;
                        if let Some((log, backend, conn)) = &log {
                            log.record(backend, *conn, Direction::Up, Kind::Close, 0);
                        }
                        return;
                    };
                    let mut cut = c.cut.subscribe();
                    c.open.fetch_add(1, Ordering::SeqCst);
                    tokio::select! {
                        _ = forward(&mut client, &mut server, log.as_ref()) => {}
                        _ = cut.changed() => {
                            let _ = client.set_linger(Some(Duration::ZERO));
                            let _ = server.set_linger(Some(Duration::ZERO));
                        }
                    }
                    if let Some((log, backend, conn)) = &log {
                        log.record(backend, *conn, Direction::Up, Kind::Close, 0);
                    }
                    c.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(FaultProxy { port, control, _runtime: runtime })
    }

    /// Cuts (resets) every open connection and refuses new ones until [`FaultProxy::restore`].
    pub fn outage(&self) {
        self.control.refusing.store(true, Ordering::SeqCst);
        self.cut_connections();
    }

    /// Resets every open connection; new ones are still accepted.
    pub fn cut_connections(&self) {
        self.control.cut.send_modify(|v| *v += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.control.refusing.store(false, Ordering::SeqCst);
    }

    /// Delays every new connection by `ms` before it is forwarded.
    pub fn set_connect_delay_ms(&self, ms: u64) {
        self.control.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Connections open right now (through to the upstream).
    pub fn open_connections(&self) -> u64 {
        self.control.open.load(Ordering::SeqCst)
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.control.accepted.load(Ordering::SeqCst)
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn mqtt_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
