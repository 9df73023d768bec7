//! A local Google Pub/Sub emulator, faithful to the documented REST surface (docs/emulator.md), with
//! fault injection. Dev-only: the tests, the demo and the Kotlin suite run it; the mobile
//! library never links it.
//!
//! Surface: topics (`PUT/GET/DELETE /v1/projects/{p}/topics/{t}`, `GET …/topics`,
//! `POST …/topics/{t}:publish`), subscriptions (`PUT/GET/DELETE …/subscriptions/{s}`,
//! `GET …/subscriptions`, `POST …:pull`, `…:acknowledge`, `…:modifyAckDeadline`). Errors are
//! google.rpc.Status JSON. Query parameters are ignored. Control plane for tests in other
//! processes: `POST /emulator/faults`, `GET /emulator/faults`, `GET`/`DELETE /emulator/faults/log`,
//! `GET /emulator/stats`.

mod faults;
mod rest;
mod store;
mod time;

pub use faults::{FaultLog, FaultPlan, Faults, Hit};
pub use store::Stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Options for a new emulator.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// When set, every `/v1` request must carry `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

/// Shared state of a running emulator: its store, faults and token check.
pub struct Emulator {
    pub(crate) store: store::Store,
    pub(crate) faults: Faults,
    pub(crate) bearer_token: std::sync::Mutex<Option<String>>,
}

impl Emulator {
    /// The fault injection control.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every message the delivery faults (discard, duplicate, delay) hit since the log was last
    /// cleared; setting or clearing the plan keeps it.
    pub fn fault_log(&self) -> FaultLog {
        self.faults.log()
    }

    /// Empties the fault log (also `DELETE /emulator/faults/log`).
    pub fn clear_fault_log(&self) {
        self.faults.clear_log()
    }

    /// Counters of what the emulator saw.
    pub fn stats(&self) -> Stats {
        self.store.stats()
    }

    /// Changes the accepted bearer token (`None` turns the check off).
    pub fn set_bearer_token(&self, token: Option<String>) {
        *self.bearer_token.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }
}

/// Serves the emulator on an already bound listener until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    emulator: Arc<Emulator>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = rest::router(emulator);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// A new emulator state with `options`.
pub fn new_emulator(options: &EmulatorOptions) -> Arc<Emulator> {
    Arc::new(Emulator { store: store::Store::default(), faults: Faults::default(), bearer_token: std::sync::Mutex::new(options.bearer_token.clone()) })
}

/// An emulator running on its own thread and runtime; stopped on drop.
pub struct EmulatorHandle {
    addr: SocketAddr,
    emulator: Arc<Emulator>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Starts an emulator on 127.0.0.1 in a background thread.
    pub fn spawn(options: EmulatorOptions) -> std::io::Result<EmulatorHandle> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", options.port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let emulator = new_emulator(&options);
        let (stop, stopped) = oneshot::channel::<()>();
        let served = emulator.clone();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().thread_name("pubsub-emulator").build()?;
        let thread = std::thread::Builder::new().name("pubsub-emulator".into()).spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(listener) => {
                        if let Err(e) = serve(listener, served, async {
                            let _ = stopped.await;
                        })
                        .await
                        {
                            log::error!("emulator stopped: {e}");
                        }
                    }
                    Err(e) => log::error!("emulator cannot listen: {e}"),
                }
            });
        })?;
        Ok(EmulatorHandle { addr, emulator, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The emulator's state (faults, stats, token).
    pub fn emulator(&self) -> &Arc<Emulator> {
        &self.emulator
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
