//! The logging proxy records what crosses it: chunks each way with their sizes, opens, closes
//! and attempts refused during an outage; and the radio analysis reads that log.

use dualpub_testbed::packet_log::{Direction, Kind, PacketLog};
use dualpub_testbed::proxy::FaultProxy;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// An upstream that answers every chunk it reads with "ok:" + the chunk's length.
fn upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(format!("ok:{n}").as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn exchange(s: &mut TcpStream, msg: &[u8]) -> String {
    s.write_all(msg).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn wait_for(log: &PacketLog, pred: impl Fn(&[dualpub_testbed::packet_log::Entry]) -> bool) {
    let start = std::time::Instant::now();
    while !pred(&log.entries()) {
        assert!(start.elapsed() < Duration::from_secs(5), "log never matched: {:?}", log.entries());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_chunk_open_close_and_refusal_is_logged() {
    let log = PacketLog::new();
    let proxy = FaultProxy::start_logged(upstream(), log.clone(), "mqtt").unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    assert_eq!(exchange(&mut s, b"hello"), "ok:5");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(exchange(&mut s, &[7u8; 300]), "ok:300");
    drop(s);
    wait_for(&log, |e| e.iter().any(|e| e.kind == Kind::Close));

    let e = log.entries();
    let kinds: Vec<(Kind, Direction, u64)> = e.iter().map(|e| (e.kind, e.dir, e.bytes)).collect();
    assert_eq!(
        kinds,
        vec![
            (Kind::Open, Direction::Up, 0),
            (Kind::Data, Direction::Up, 5),
            (Kind::Data, Direction::Down, 4),
            (Kind::Data, Direction::Up, 300),
            (Kind::Data, Direction::Down, 6),
            (Kind::Close, Direction::Up, 0),
        ]
    );
    let first = e[0].conn;
    assert!(e.iter().all(|x| x.backend == "mqtt" && x.conn == first));
    assert!(e.windows(2).all(|w| w[0].t_us <= w[1].t_us));
    // The second exchange came ≥ 50 ms after the first.
    assert!(e[3].t_us - e[2].t_us >= 50_000, "{:?}", e);

    // An outage: the attempt is refused (and logged), the next connection gets a new id.
    proxy.outage();
    let refused = TcpStream::connect(("127.0.0.1", proxy.port)).and_then(|mut s| {
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"x")?;
        let mut b = [0u8; 8];
        match s.read(&mut b)? {
            0 => Err(std::io::Error::other("closed")),
            _ => Ok(()),
        }
    });
    assert!(refused.is_err(), "a refused connection must not be forwarded");
    wait_for(&log, |e| e.iter().any(|e| e.kind == Kind::Refused));
    proxy.restore();
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    assert_eq!(exchange(&mut s, b"again"), "ok:5");
    let e = log.entries();
    let conns: Vec<u64> = e.iter().filter(|e| matches!(e.kind, Kind::Open | Kind::Refused)).map(|e| e.conn).collect();
    assert_eq!(conns.len(), 3);
    assert!(conns[0] < conns[1] && conns[1] < conns[2], "{conns:?}");

    // The analysis reads the same log: at scale 1 everything above is one burst at T = 10 s.
    let a = dualpub_testbed::radio::analyse(&e, 1.0, 0, u64::MAX);
    let m = &a.backends["mqtt"];
    assert_eq!((m.bytes_up, m.connections, m.refused), (5 + 300 + 5, 2, 1));
    assert_eq!(a.costs[0].promotions, 1);
}

#[test]
fn two_backends_share_one_log_with_distinct_connections() {
    let log = PacketLog::new();
    let a = FaultProxy::start_logged(upstream(), log.clone(), "mqtt").unwrap();
    let b = FaultProxy::start_logged(upstream(), log.clone(), "pubsub").unwrap();
    let mut sa = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    let mut sb = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
    assert_eq!(exchange(&mut sa, b"a"), "ok:1");
    assert_eq!(exchange(&mut sb, b"bb"), "ok:2");
    // A cut connection is logged as closed.
    b.cut_connections();
    wait_for(&log, |e| e.iter().any(|e| e.kind == Kind::Close && e.backend == "pubsub"));
    let e = log.entries();
    let opens: Vec<(&str, u64)> = e.iter().filter(|e| e.kind == Kind::Open).map(|e| (e.backend, e.conn)).collect();
    assert_eq!(opens.len(), 2);
    assert_ne!(opens[0].1, opens[1].1);
    assert_eq!(e.iter().filter(|e| e.backend == "pubsub" && e.kind == Kind::Data && e.dir == Direction::Up).map(|e| e.bytes).sum::<u64>(), 2);
    let path = std::env::temp_dir().join(format!("packet-log-test-{}.tsv", std::process::id()));
    log.write_tsv(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(text.starts_with("t_ms\tbackend\tconn\tdir\tkind\tbytes\n"));
    assert!(text.contains("\tpubsub\t"), "{text}");
}
