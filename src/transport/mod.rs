//! The two transports. Each runs as one task on the SDK runtime, takes rows owed to it through
//! its [`crate::hub::Lane`], and reports acknowledgements back; neither keeps anything the outbox does not.

pub(crate) mod breaker;
pub(crate) mod credentials;
pub mod gzip;
pub(crate) mod mqtt;
pub(crate) mod pace;
pub(crate) mod pubsub;
pub(crate) mod token;
