//! What the SDK tells about itself: the migration metrics, the migration reports cut from them,
//! the event funnel (platform log, `debugReport()`, the debug listener) and the process-wide
//! log level.

pub(crate) mod events;
pub mod logging;
pub mod metrics;
pub(crate) mod reports;
