//! Reference points for `scripts/kotlin-bench`, compiled only with the `ffi-bench` feature (never
//! in the shipped library or the committed bindings): exported functions that do nothing, so a
//! caller in Kotlin or Swift can time the bare cost of crossing the FFI with the same arguments
//! as `sendLocation` and set its own calls against it (docs/FFI-BENCH.md).

use crate::location::Location;

/// Takes a location like `sendLocation` and does nothing: the floor of a call with that record.
#[uniffi::export]
pub fn bench_empty(location: Location) {
    std::hint::black_box(location);
}

/// Takes a string and does nothing: the floor of a call with one string argument.
#[uniffi::export]
pub fn bench_empty_string(value: String) {
    std::hint::black_box(value);
}

/// Takes a location and returns a fixed string of an eventId's length (36 characters): the floor
/// of a call shaped like `sendLocation` (record in, string out), without its work.
#[uniffi::export]
pub fn bench_echo_id(location: Location) -> String {
    std::hint::black_box(location);
    "00000000-0000-7000-8000-000000000000".to_string()
}

/// An object with a method shaped exactly like `DualPublisher.sendLocation` (a method on an
/// object: the caller clones its handle first; a record in; a string or a `DualPubError` out)
/// that does nothing: the floor of the call `sendLocation` actually makes.
#[derive(uniffi::Object)]
pub struct BenchObject;

#[uniffi::export]
impl BenchObject {
    /// A new object.
    #[uniffi::constructor]
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(BenchObject)
    }

    /// Takes a location and returns a fixed string of an eventId's length, like `sendLocation`.
    pub fn echo_id(&self, location: Location) -> Result<String, crate::error::DualPubError> {
        Ok(bench_echo_id(location))
    }
}

/// Calls `publisher.sendLocation(location)` and returns how long it took inside Rust, in
/// nanoseconds (0 if it failed): the SDK's own share of a `sendLocation` call made from Kotlin
/// or Swift, measured in the same process, next to what the caller measures around the call.
#[uniffi::export]
pub fn bench_timed_send_location(publisher: std::sync::Arc<super::DualPublisher>, location: Location) -> u64 {
    let start = std::time::Instant::now();
    let ok = std::hint::black_box(publisher.send_location(location)).is_ok();
    if ok {
        start.elapsed().as_nanos().max(1) as u64
    } else {
        0
    }
}
