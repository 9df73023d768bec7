//! dualpub: publish device locations to MQTT and Google Pub/Sub at once while a location
//! backend migrates from one to the other. See README.md, docs/CONTRACT.md and ARCHITECTURE.md.
//!
//! The pure-Rust core ([`Publisher`]) is usable directly; [`ffi`] exports it to Kotlin and
//! Swift through UniFFI. The public Rust surface is what README.md documents: the types
//! re-exported here and the public modules `clock`, `config`, `error`, `ffi`, `location`,
//! `logging`, `metrics`, `rollout` and `wire`; everything else is internal.
//!
//! The tree follows the architecture (ARCHITECTURE.md, "The tree"): one folder per subsystem —
//! `outbox/`, `config/`, `telemetry/`, `hub/`, `transport/`, `publisher/`, `ffi/`, each
//! importing only those before it in that list — and, at the top, the leaves they all use.

#![warn(missing_docs)]

uniffi::setup_scaffolding!();

pub(crate) mod callback;
pub mod clock;
pub mod config;
pub mod error;
pub mod ffi;
pub(crate) mod http;
pub(crate) mod hub;
pub mod location;
pub(crate) mod outbox;
mod publisher;
pub(crate) mod retry;
mod runtime;
mod secret;
pub(crate) mod telemetry;
mod tls;
mod transport;
pub mod wire;

pub use config::builder::SdkConfigBuilder;
pub use config::fetch::FetchResult;
pub use config::rollout;
pub use config::rollout::{DecisionReason, RolloutAlgorithm, RolloutDecision};
pub use config::source::{ConfigListener, ConfigSource, ConfigStatus};
pub use config::{MigrationConfig, MqttSettings, Override, PubSubSettings, PubsubCompression, SdkConfig};
pub use error::{DualPubError, TokenError};
pub use ffi::{sdk_version, DualPublisher};
pub use location::Location;
pub use outbox::{DeadLetter, Transport};
pub use publisher::{DeliveryState, DrainReport, FlushReport, Providers, Publisher, PurgeReport};
pub use secret::Secret;
pub use telemetry::events::{DebugEvent, DebugListener};
pub use telemetry::metrics::GzipSupport;
pub use telemetry::metrics::{MetricsSnapshot, TransportMetrics};
pub use telemetry::{logging, metrics};
pub use transport::credentials::{MqttCredentialProvider, MqttCredentials};
pub use transport::token::{AccessToken, TokenProvider};
pub use wire::{PubsubAttribute, ALL_ATTRIBUTES, DEFAULT_ATTRIBUTES};
