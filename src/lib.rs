//! dualpub: publish device locations to MQTT and Google Pub/Sub at once while a location
//! backend migrates from one to the other. See README.md and ARCHITECTURE.md.
//!
//! The pure-Rust core ([`Publisher`]) is usable directly; [`ffi`] exports it to Kotlin and
//! Swift through UniFFI.

#![warn(missing_docs)]

uniffi::setup_scaffolding!();

pub mod breaker;
pub mod clock;
pub mod config;
mod config_builder;
pub mod debug;
pub mod error;
pub mod fetch;
pub mod ffi;
pub mod location;
pub mod logging;
pub mod metrics;
pub mod outbox;
mod publisher;
pub mod remote;
pub mod retry;
pub mod rollout;
mod runtime;
pub mod store;
mod tls;
pub mod token;
mod transport;
pub mod wire;

pub use debug::{DebugEvent, DebugListener};
pub use config::{MigrationConfig, MqttSettings, Override, PubSubSettings, SdkConfig};
pub use config_builder::SdkConfigBuilder;
pub use error::{DualPubError, TokenError};
pub use ffi::DualPublisher;
pub use location::Location;
pub use metrics::{MetricsSnapshot, TransportMetrics};
pub use outbox::{DeadLetter, Transport};
pub use publisher::{FlushReport, Publisher};
pub use rollout::{DecisionReason, RolloutAlgorithm, RolloutDecision};
pub use fetch::FetchResult;
pub use remote::{ConfigListener, ConfigSource, ConfigStatus};
pub use token::{AccessToken, TokenProvider};
