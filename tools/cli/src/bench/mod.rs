//! `dualpub bench …`: measurements that need the real SDK and real backends.

pub mod device;
pub mod memory;
pub mod memory_device;
pub mod network;
pub mod procfs;
pub mod radio;
pub mod throughput;

use clap::Subcommand;

/// The benchmarks.
#[derive(Subcommand)]
pub enum Bench {
    /// What the SDK and the seed design's peer cost a phone's cellular radio: every workload,
    /// time-scaled, through logging proxies; prints a markdown table (docs/RADIO.md).
    Radio(Box<radio::RadioArgs>),
    /// One SDK device driven by `bench radio` over stdin/stdout (internal).
    #[command(hide = true)]
    RadioDevice(Box<device::DeviceArgs>),
    /// The resident memory of an offline device holding 1,000 and 100,000 locations (sent, imported,
    /// restored at a restart) against its idle baseline; prints a markdown table (docs/PERFORMANCE.md).
    Memory(Box<memory::MemoryArgs>),
    /// One offline SDK device measured by `bench memory`; prints `done {json}` (internal).
    #[command(hide = true)]
    MemoryDevice(Box<memory_device::MemoryDeviceArgs>),
    /// Window-0 throughput of the SDK next to bare rumqttc + reqwest loops in the same run, and
    /// the time a 10,000-location backlog takes to leave (docs/PERFORMANCE.md); prints a
    /// markdown table.
    Throughput(Box<throughput::ThroughputArgs>),
    /// The SDK on links as phones have them: Toxiproxy faults over TLS, window 30 s and 0; lost,
    /// duplicates, recovery time, bytes and stalls; prints a markdown document (docs/NETWORK.md).
    Network(Box<network::NetworkArgs>),
}

/// Runs a benchmark; returns the exit code.
pub fn run(b: Bench) -> i32 {
    match b {
        Bench::Radio(a) => radio::run(*a),
        Bench::RadioDevice(a) => device::run(*a),
        Bench::Memory(a) => memory::run(*a),
        Bench::MemoryDevice(a) => memory_device::run(*a),
        Bench::Throughput(a) => throughput::run(*a),
        Bench::Network(a) => network::run(*a),
    }
}
