//! Burst analysis of a packet log (docs/RADIO.md): what a phone's cellular radio would have
//! done with the traffic a [`PacketLog`](crate::packet_log::PacketLog) recorded.
//!
//! A radio that sends or receives anything is promoted to its high-power state and stays there
//! for a tail `T` after the last packet (LTE ≈ 10–11.6 s, Huang et al., MobiSys 2012; 5G NSA ≈
//! 10 s). So packets closer together than `T` share one stay: a **burst** is a maximal run of
//! packets in which no gap exceeds `T`; each burst costs one **promotion** and keeps the radio on
//! for its span plus `T`. **Radio-on time** = Σ (burst span + T).
//!
//! Times here are simulated milliseconds: the harness runs time-scaled and multiplies what it
//! observed by the scale factor before calling in.

use crate::packet_log::{Direction, Entry, Kind};
use serde::Serialize;
use std::collections::BTreeMap;

/// The tails the harness reports, in seconds: 10 s (the main figure), and 4 s and 11.6 s
/// around it.
pub const TAILS_S: [f64; 3] = [10.0, 4.0, 11.6];

/// One packet on the simulated time line.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Simulated milliseconds since the start of the run.
    pub t_ms: f64,
    /// Backend label (`mqtt`, `pubsub`).
    pub backend: &'static str,
}

/// A run of packets no further apart than the tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    /// Time of its first packet (simulated ms).
    pub start_ms: f64,
    /// Time of its last packet (simulated ms).
    pub end_ms: f64,
    /// Packets in it.
    pub packets: usize,
    /// The backends its packets went to or came from, sorted.
    pub backends: Vec<&'static str>,
}

/// Splits `packets` (in any order) into bursts: a new burst starts where the gap since the
/// previous packet is more than `tail_ms`.
pub fn bursts(packets: &[Packet], tail_ms: f64) -> Vec<Burst> {
    let mut sorted: Vec<&Packet> = packets.iter().collect();
    sorted.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    let mut out: Vec<Burst> = Vec::new();
    for p in sorted {
        match out.last_mut() {
            Some(b) if p.t_ms - b.end_ms <= tail_ms => {
                b.end_ms = p.t_ms;
                b.packets += 1;
                if !b.backends.contains(&p.backend) {
                    b.backends.push(p.backend);
                    b.backends.sort_unstable();
                }
            }
            _ => out.push(Burst { start_ms: p.t_ms, end_ms: p.t_ms, packets: 1, backends: vec![p.backend] }),
        }
    }
    out
}

/// The radio's cost of a packet sequence for one tail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioCost {
    /// The tail, seconds.
    pub tail_s: f64,
    /// Promotions: the number of bursts.
    pub promotions: usize,
    /// Σ (burst span + tail), seconds.
    pub radio_on_s: f64,
    /// Bursts whose packets all belong to one backend.
    pub single_backend_bursts: usize,
}

/// [`RadioCost`] of `packets` for a tail of `tail_s` seconds.
pub fn cost(packets: &[Packet], tail_s: f64) -> RadioCost {
    let tail_ms = tail_s * 1000.0;
    let b = bursts(packets, tail_ms);
    let radio_on_ms: f64 = b.iter().map(|b| b.end_ms - b.start_ms + tail_ms).sum();
    RadioCost { tail_s, promotions: b.len(), radio_on_s: radio_on_ms / 1000.0, single_backend_bursts: b.iter().filter(|b| b.backends.len() == 1).count() }
}

/// Traffic of one backend in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackendTraffic {
    /// Log entries (chunks, opens, closes, refusals): what the radio carried.
    pub packets: u64,
    /// Bytes from the client.
    pub bytes_up: u64,
    /// Bytes to the client.
    pub bytes_down: u64,
    /// Connections forwarded to the backend.
    pub connections: u64,
    /// Connection attempts refused (an outage).
    pub refused: u64,
}

/// What a run's packet log says, on the simulated time line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// Simulated seconds per real second.
    pub scale: f64,
    /// Every logged entry inside the window, as packets.
    pub packets: usize,
    /// Per backend.
    pub backends: BTreeMap<&'static str, BackendTraffic>,
    /// The radio's cost for each of [`TAILS_S`], in that order.
    pub costs: Vec<RadioCost>,
}

/// Converts log entries between `from_us` and `to_us` (real microseconds on the log's clock)
/// to packets on the simulated time line (0 at `from_us`, real time × `scale`).
pub fn packets(entries: &[Entry], scale: f64, from_us: u64, to_us: u64) -> Vec<Packet> {
    entries
        .iter()
        .filter(|e| e.t_us >= from_us && e.t_us <= to_us)
        .map(|e| Packet { t_ms: (e.t_us - from_us) as f64 / 1000.0 * scale, backend: e.backend })
        .collect()
}

/// Analyses the entries between `from_us` and `to_us` with time scaled by `scale`.
pub fn analyse(entries: &[Entry], scale: f64, from_us: u64, to_us: u64) -> Analysis {
    let mut backends: BTreeMap<&'static str, BackendTraffic> = BTreeMap::new();
    let inside: Vec<&Entry> = entries.iter().filter(|e| e.t_us >= from_us && e.t_us <= to_us).collect();
    for e in &inside {
        let t = backends.entry(e.backend).or_default();
        t.packets += 1;
        match (e.kind, e.dir) {
            (Kind::Data, Direction::Up) => t.bytes_up += e.bytes,
            (Kind::Data, Direction::Down) => t.bytes_down += e.bytes,
            (Kind::Open, _) => t.connections += 1,
            (Kind::Refused, _) => t.refused += 1,
            (Kind::Close, _) => {}
        }
    }
    let p = packets(entries, scale, from_us, to_us);
    Analysis { scale, packets: inside.len(), backends, costs: TAILS_S.iter().map(|&t| cost(&p, t)).collect() }
}

/// The TLS handshakes of one backend's connections in a packet log, told apart by size: a
/// resumed handshake's server flight carries no certificate chain, so it is a fraction of a
/// full one's (against mosquitto's OpenSSL listener, 241 B resumed against 1,097 B full).
///
/// A connection's **client flight** is every byte it sent before its first byte down (the
/// ClientHello); its **server flight** every byte down after that and before the client's next
/// bytes (ServerHello through the server's Finished). The client's Finished and the session
/// tickets that follow it travel with application data and are not counted here. A server
/// flight under half the largest one seen for the backend in `entries` is a resumption (the
/// first connection of a run is always a full handshake); a connection that never got a byte
/// down (refused, cut) did no handshake.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsFlights {
    /// Full handshakes.
    pub full: u64,
    /// Resumed handshakes.
    pub resumed: u64,
    /// Bytes up and down of the full handshakes' client and server flights, summed.
    pub full_bytes_up: u64,
    /// See `full_bytes_up`.
    pub full_bytes_down: u64,
    /// Bytes up and down of the resumed handshakes' flights, summed.
    pub resumed_bytes_up: u64,
    /// See `resumed_bytes_up`.
    pub resumed_bytes_down: u64,
}

impl TlsFlights {
    /// Reads the handshakes of `backend`'s connections in `entries`.
    pub fn of(entries: &[Entry], backend: &str) -> TlsFlights {
        // Per connection, in log order: (client flight, server flight, client spoke again).
        let mut conns: BTreeMap<u64, (u64, u64, bool)> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.backend == backend && e.kind == Kind::Data) {
            let (up, down, done) = conns.entry(e.conn).or_default();
            match e.dir {
                Direction::Up if *down == 0 => *up += e.bytes,
                Direction::Up => *done = true,
                Direction::Down if !*done => *down += e.bytes,
                Direction::Down => {}
            }
        }
        let handshakes: Vec<(u64, u64)> = conns.values().filter(|(_, down, _)| *down > 0).map(|&(up, down, _)| (up, down)).collect();
        let largest = handshakes.iter().map(|(_, down)| *down).max().unwrap_or(0);
        let mut f = TlsFlights::default();
        for (up, down) in handshakes {
            if down * 2 < largest {
                f.resumed += 1;
                f.resumed_bytes_up += up;
                f.resumed_bytes_down += down;
            } else {
                f.full += 1;
                f.full_bytes_up += up;
                f.full_bytes_down += down;
            }
        }
        f
    }

    /// Handshakes of either kind.
    pub fn total(&self) -> u64 {
        self.full + self.resumed
    }

    /// Bytes of every handshake's flights, both ways.
    pub fn bytes(&self) -> u64 {
        self.full_bytes_up + self.full_bytes_down + self.resumed_bytes_up + self.resumed_bytes_down
    }

    /// The share of reconnects (every handshake after the first) that resumed, if any.
    pub fn resumed_share_of_reconnects(&self) -> Option<f64> {
        (self.total() > 1).then(|| self.resumed as f64 / (self.total() - 1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet_log::{Direction, Entry, Kind};

    fn at(t_s: &[f64], backend: &'static str) -> Vec<Packet> {
        t_s.iter().map(|&t| Packet { t_ms: t * 1000.0, backend }).collect()
    }

    #[test]
    fn tls_flights_tell_full_from_resumed_handshakes_by_the_server_flight() {
        let e = |t_us: u64, conn: u64, dir: Direction, bytes: u64| Entry { t_us, backend: "mqtt", conn, dir, kind: Kind::Data, bytes };
        let open = |t_us: u64, conn: u64| Entry { t_us, backend: "mqtt", conn, dir: Direction::Up, kind: Kind::Open, bytes: 0 };
        let entries = vec![
            // A full handshake: ClientHello in two reads, the server flight in two, then data.
            open(0, 1),
            e(1, 1, Direction::Up, 200),
            e(2, 1, Direction::Up, 36),
            e(3, 1, Direction::Down, 900),
            e(4, 1, Direction::Down, 197),
            e(5, 1, Direction::Up, 80),
            e(6, 1, Direction::Down, 500),
            // A resumed one.
            open(10, 2),
            e(11, 2, Direction::Up, 519),
            e(12, 2, Direction::Down, 241),
            e(13, 2, Direction::Up, 80),
            // Cut before any answer: no handshake.
            open(20, 3),
            e(21, 3, Direction::Up, 519),
            // Another backend's traffic is not counted.
            Entry { t_us: 30, backend: "pubsub", conn: 4, dir: Direction::Down, kind: Kind::Data, bytes: 5000 },
        ];
        let f = TlsFlights::of(&entries, "mqtt");
        assert_eq!((f.full, f.resumed), (1, 1));
        assert_eq!((f.full_bytes_up, f.full_bytes_down, f.resumed_bytes_up, f.resumed_bytes_down), (236, 1097, 519, 241));
        assert_eq!(f.bytes(), 236 + 1097 + 519 + 241);
        assert_eq!(f.resumed_share_of_reconnects(), Some(1.0));
        assert_eq!(TlsFlights::of(&entries, "none"), TlsFlights::default());
    }

    #[test]
    fn packets_closer_than_the_tail_share_a_burst() {
        // Three bursts at T = 10 s: [0, 1, 2], [20, 29.5] (9.5 s apart) and [45].
        let p = at(&[0.0, 1.0, 2.0, 20.0, 29.5, 45.0], "mqtt");
        let b = bursts(&p, 10_000.0);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].start_ms, b[0].end_ms, b[0].packets), (0.0, 2000.0, 3));
        assert_eq!((b[1].start_ms, b[1].end_ms, b[1].packets), (20_000.0, 29_500.0, 2));
        assert_eq!((b[2].start_ms, b[2].end_ms, b[2].packets), (45_000.0, 45_000.0, 1));
        let c = cost(&p, 10.0);
        assert_eq!(c.promotions, 3);
        // (2 + 10) + (9.5 + 10) + (0 + 10)
        assert!((c.radio_on_s - 41.5).abs() < 1e-9, "{}", c.radio_on_s);
    }

    #[test]
    fn a_gap_of_exactly_the_tail_does_not_split_a_burst() {
        let p = at(&[0.0, 10.0, 20.0], "mqtt");
        assert_eq!(cost(&p, 10.0).promotions, 1);
        assert!((cost(&p, 10.0).radio_on_s - 30.0).abs() < 1e-9);
        // 10.001 s apart: three promotions.
        let p = at(&[0.0, 10.001, 20.002], "mqtt");
        assert_eq!(cost(&p, 10.0).promotions, 3);
        assert!((cost(&p, 10.0).radio_on_s - 30.0).abs() < 1e-9);
    }

    #[test]
    fn the_tail_decides_what_merges() {
        // A location every 5 s for a minute: 13 packets, 12 gaps of 5 s.
        let t: Vec<f64> = (0..13).map(|i| i as f64 * 5.0).collect();
        let p = at(&t, "mqtt");
        let short = cost(&p, 4.0);
        assert_eq!(short.promotions, 13, "5 s gaps are longer than a 4 s tail");
        assert!((short.radio_on_s - 13.0 * 4.0).abs() < 1e-9);
        for tail in [10.0, 11.6] {
            let c = cost(&p, tail);
            assert_eq!(c.promotions, 1, "5 s gaps stay inside a {tail} s tail");
            assert!((c.radio_on_s - (60.0 + tail)).abs() < 1e-9);
        }
    }

    #[test]
    fn unsorted_input_and_the_backends_of_each_burst() {
        let mut p = at(&[30.0, 0.0], "mqtt");
        p.extend(at(&[0.5, 60.0], "pubsub"));
        let b = bursts(&p, 10_000.0);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].backends, vec!["mqtt", "pubsub"]);
        assert_eq!(b[1].backends, vec!["mqtt"]);
        assert_eq!(b[2].backends, vec!["pubsub"]);
        assert_eq!(cost(&p, 10.0).single_backend_bursts, 2);
        assert!(bursts(&[], 10_000.0).is_empty());
        assert_eq!(cost(&[], 10.0), RadioCost { tail_s: 10.0, promotions: 0, radio_on_s: 0.0, single_backend_bursts: 0 });
    }

    #[test]
    fn radio_on_is_at_least_the_tail_per_promotion() {
        let t: Vec<f64> = (0..200).map(|i| ((i * 7919) % 1000) as f64 * 0.37).collect();
        let p = at(&t, "mqtt");
        for tail in TAILS_S {
            let c = cost(&p, tail);
            assert!(c.promotions >= 1);
            assert!(c.radio_on_s >= tail * c.promotions as f64 - 1e-9);
        }
    }

    fn entry(t_us: u64, backend: &'static str, dir: Direction, kind: Kind, bytes: u64) -> Entry {
        Entry { t_us, backend, conn: 1, dir, kind, bytes }
    }

    #[test]
    fn analysis_scales_time_and_counts_traffic_inside_the_window() {
        // Scale 30: 100 ms real apart = 3 s simulated (one burst at T = 4 s and 10 s);
        // 500 ms real = 15 s simulated (a new burst at every tail).
        let e = vec![
            entry(500, "mqtt", Direction::Up, Kind::Data, 99), // before the window
            entry(1_000, "mqtt", Direction::Up, Kind::Open, 0),
            entry(1_100, "mqtt", Direction::Up, Kind::Data, 40),
            entry(101_000, "mqtt", Direction::Down, Kind::Data, 4),
            entry(601_000, "pubsub", Direction::Up, Kind::Data, 700),
            entry(601_500, "pubsub", Direction::Down, Kind::Data, 200),
            entry(650_000, "pubsub", Direction::Up, Kind::Refused, 0),
            entry(9_000_000, "mqtt", Direction::Up, Kind::Data, 99), // after it
        ];
        let a = analyse(&e, 30.0, 1_000, 1_000_000);
        assert_eq!(a.packets, 6);
        let m = &a.backends["mqtt"];
        assert_eq!((m.packets, m.bytes_up, m.bytes_down, m.connections, m.refused), (3, 40, 4, 1, 0));
        let p = &a.backends["pubsub"];
        assert_eq!((p.packets, p.bytes_up, p.bytes_down, p.connections, p.refused), (3, 700, 200, 0, 1));
        let ten = &a.costs[0];
        assert_eq!(ten.tail_s, 10.0);
        assert_eq!(ten.promotions, 2);
        // Burst 1: 0 .. 3 s; burst 2: 18 s .. 19.47 s (649 ms real after the start × 30).
        assert!((ten.radio_on_s - (3.0 + 10.0 + 1.47 + 10.0)).abs() < 1e-6, "{}", ten.radio_on_s);
        assert_eq!(ten.single_backend_bursts, 2);
        assert_eq!(a.costs[1].tail_s, 4.0);
        assert_eq!(a.costs[1].promotions, 2);
    }
}
