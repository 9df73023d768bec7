//! A local remote-config server (dev-only): serves one JSON file, re-read at every request, with
//! a strong ETag and `304 Not Modified` for a matching `If-None-Match`, and misbehaves on
//! request: always 304, 429 with `Retry-After`, 500, slow answers, garbage bodies.
//!
//! Every path serves the file except the control plane, for tests in other processes:
//! `POST /_control/mode` with `{"mode": "ok|not_modified|too_many_requests|server_error|slow|garbage",
//! "retryAfterSecs": 120, "delayMs": 5000}` and `GET /_control/stats`.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers document requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Mode {
    /// 200 with the file (404 if it does not exist), 304 when the ETag matches.
    #[default]
    Ok,
    /// 304 to every request.
    NotModified,
    /// 429 with `Retry-After`.
    TooManyRequests {
        /// The `Retry-After` value, seconds.
        #[serde(rename = "retryAfterSecs", default = "default_retry_after")]
        retry_after_secs: u64,
    },
    /// 500.
    ServerError,
    /// Waits, then answers as `Ok`.
    Slow {
        /// How long to wait, ms.
        #[serde(rename = "delayMs", default = "default_delay")]
        delay_ms: u64,
    },
    /// 200 with a body that is not a config document.
    Garbage,
}

fn default_retry_after() -> u64 {
    60
}

fn default_delay() -> u64 {
    5_000
}

/// What the server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigServerStats {
    /// Document requests.
    pub requests: u64,
    /// Of those, with `If-None-Match`.
    pub conditional: u64,
    /// Answered 304.
    pub not_modified: u64,
    /// Answered 200 with the document.
    pub served: u64,
}

struct Inner {
    file: PathBuf,
    mode: Mutex<Mode>,
    requests: AtomicU64,
    conditional: AtomicU64,
    not_modified: AtomicU64,
    served: AtomicU64,
}

/// A running config server on 127.0.0.1; stops when dropped.
pub struct ConfigServer {
    inner: Arc<Inner>,
    /// The port it listens on.
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Replaces `path` with `body` through a temporary file and a rename, so that a concurrent
/// reader sees the old or the new content, never a mix.
pub fn write_atomically(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The strong ETag of a document: its SHA-256, shortened.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl ConfigServer {
    /// Serves `file` on `port` (0: any free port) from a thread of its own.
    pub fn start(file: impl Into<PathBuf>, port: u16) -> std::io::Result<ConfigServer> {
        let inner = Inner::new(file.into());
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::Builder::new().name("config-server".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("config server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("config server listener");
                let _ = axum::serve(listener, router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
        Ok(ConfigServer { inner, port, stop: Some(stop), thread: Some(thread) })
    }

    /// The URL devices fetch.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/dualpub/config.json", self.port)
    }

    /// Serves `body` from now on: written to the served file atomically (a request never sees it
    /// half written).
    pub fn serve(&self, body: impl AsRef<[u8]>) -> std::io::Result<()> {
        write_atomically(&self.inner.file, body.as_ref())
    }

    /// Changes how the server answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// What the server saw so far.
    pub fn stats(&self) -> ConfigServerStats {
        self.inner.stats()
    }
}

impl Drop for ConfigServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn new(file: PathBuf) -> Arc<Inner> {
        Arc::new(Inner {
            file,
            mode: Mutex::new(Mode::Ok),
            requests: AtomicU64::new(0),
            conditional: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            served: AtomicU64::new(0),
        })
    }

    fn stats(&self) -> ConfigServerStats {
        ConfigServerStats {
            requests: self.requests.load(Ordering::SeqCst),
            conditional: self.conditional.load(Ordering::SeqCst),
            not_modified: self.not_modified.load(Ordering::SeqCst),
            served: self.served.load(Ordering::SeqCst),
        }
    }
}

/// The server's routes on `state` (also used by `dualpub config-server`).
fn router(state: Arc<Inner>) -> Router {
    Router::new().route("/_control/mode", post(set_mode)).route("/_control/stats", get(stats)).fallback(get(document)).with_state(state)
}

async fn set_mode(State(s): State<Arc<Inner>>, Json(mode): Json<Mode>) -> StatusCode {
    *s.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    StatusCode::NO_CONTENT
}

async fn stats(State(s): State<Arc<Inner>>) -> Json<ConfigServerStats> {
    Json(s.stats())
}

async fn document(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if if_none_match.is_some() {
        s.conditional.fetch_add(1, Ordering::SeqCst);
    }
    let mode = *s.mode.lock().unwrap_or_else(|p| p.into_inner());
    match mode {
        Mode::NotModified => {
            s.not_modified.fetch_add(1, Ordering::SeqCst);
            return StatusCode::NOT_MODIFIED.into_response();
        }
        Mode::TooManyRequests { retry_after_secs } => {
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after_secs.to_string())], "slow down").into_response()
        }
        Mode::ServerError => return (StatusCode::INTERNAL_SERVER_ERROR, "config backend down").into_response(),
        Mode::Garbage => return (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html><body>Sign in to the Wi-Fi</body></html>").into_response(),
        Mode::Slow { delay_ms } => tokio::time::sleep(Duration::from_millis(delay_ms)).await,
        Mode::Ok => {}
    }
    let body = match tokio::fs::read(&s.file).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{}: {e}", s.file.display())).into_response(),
    };
    let etag = etag_of(&body);
    if if_none_match.as_deref().is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    s.served.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json".to_string()), (header::ETAG, etag)], body).into_response()
}

/// Serves `file` on `port` until `stop` completes (for `dualpub config-server`); prints the URL.
pub async fn serve_until(file: PathBuf, port: u16, stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let inner = Inner::new(file);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("dualpub config server listening on http://{}/dualpub/config.json", listener.local_addr()?);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, router(inner)).with_graceful_shutdown(stop).await
}
