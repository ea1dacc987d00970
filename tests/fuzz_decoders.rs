//! Bounded fuzzing on the stable toolchain: every decoder that reads bytes
//! from a client or a server is fed random and mutated inputs; none may
//! panic or allocate more than its limit. `RWSPLIT_FUZZ_SECONDS` sets the
//! time per target (default 2 s) and `RWSPLIT_FUZZ_SEED` the seed (printed,
//! so a failure can be replayed).

use mysql_common::constants::CapabilityFlags;
use rwsplit::protocol::handshake::{ChangeUser, Greeting, HandshakeResponse};
use rwsplit::protocol::messages::{parse_eof, parse_err, parse_ok};
use rwsplit::protocol::packet::{PacketReader, put_packet};
use rwsplit::relay::{Expect, Machine};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A copy of `seed` with a few random edits: flips, truncation,
    /// insertions, and "interesting" bytes (0x00, 0xFB..0xFF).
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            match self.below(5) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => v.truncate(self.below(v.len() + 1)),
                2 => {
                    let i = self.below(v.len() + 1);
                    let junk = self.bytes(16);
                    v.splice(i..i, junk);
                }
                3 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = [0x00, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF][self.below(6)];
                }
                _ => {}
            }
        }
        v
    }
}

fn budget() -> Duration {
    let secs =
        std::env::var("RWSPLIT_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn rng(target: &str) -> Rng {
    let seed =
        std::env::var("RWSPLIT_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        }) | 1;
    println!("{target}: RWSPLIT_FUZZ_SEED={seed}");
    Rng(seed)
}

/// Runs `f` on inputs until the time budget is spent; returns the count.
fn fuzz(target: &str, seeds: &[Vec<u8>], mut f: impl FnMut(&[u8])) -> u64 {
    let mut rng = rng(target);
    let deadline = Instant::now() + budget();
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            let input = if seeds.is_empty() || rng.below(4) == 0 {
                rng.bytes(300)
            } else {
                let s = &seeds[rng.below(seeds.len())];
                rng.mutate(s)
            };
            f(&input);
            n += 1;
        }
    }
    println!("{target}: {n} inputs");
    n
}

fn greeting_seed() -> Vec<u8> {
    let g = Greeting {
        server_version: b"5.5.5-10.11.6-MariaDB".to_vec(),
        connection_id: 1,
        scramble: vec![b'a'; 20],
        capabilities: CapabilityFlags::from_bits_truncate(0xF7FE_F7FF),
        collation: 45,
        status: 2,
        mariadb_caps: 8,
        auth_plugin: b"mysql_native_password".to_vec(),
    };
    let mut out = Vec::new();
    g.write(&mut out);
    out
}

fn response_seed() -> Vec<u8> {
    let r = HandshakeResponse {
        capabilities: CapabilityFlags::from_bits_truncate(0x01BF_A68F),
        max_packet: 1 << 24,
        collation: 45,
        mariadb_caps: 0,
        user: b"app".to_vec(),
        auth_response: vec![1; 20],
        database: Some(b"app".to_vec()),
        auth_plugin: Some(b"mysql_native_password".to_vec()),
        attributes: Some(b"\x03_os\x05Linux".to_vec()),
    };
    let mut out = Vec::new();
    r.write(&mut out);
    out
}

#[test]
fn handshake_parsers_never_panic() {
    let seeds = vec![greeting_seed(), response_seed()];
    let n = fuzz("handshake", &seeds, |input| {
        let _ = Greeting::parse(input);
        let _ = HandshakeResponse::parse(input);
        let _ = HandshakeResponse::parse_ssl_request(input);
        let _ = ChangeUser::parse(input, CapabilityFlags::from_bits_truncate(0xFFFF_FFFF));
        let _ = ChangeUser::parse(input, CapabilityFlags::empty());
    });
    assert!(n > 1000);
}

#[test]
fn response_packet_decoders_never_panic() {
    let seeds = vec![
        vec![0x00, 0x01, 0x0f, 0x02, 0x40, 0x00, 0x00, 0x00, 0x13, 0x00, 0x11, 0x09],
        vec![0xFE, 0, 0, 2, 0],
        b"\xFF\x15\x04#28000Access denied".to_vec(),
    ];
    let all = CapabilityFlags::from_bits_truncate(0xFFFF_FFFF);
    let n = fuzz("messages", &seeds, |input| {
        let _ = parse_ok(input, all);
        let _ = parse_ok(input, CapabilityFlags::empty());
        let _ = parse_eof(input);
        let _ = parse_err(input);
    });
    assert!(n > 1000);
}

#[test]
fn response_machine_never_panics_on_any_packet_sequence() {
    let mut rng = rng("machine");
    let deadline = Instant::now() + budget();
    let expects = [
        Expect::Result,
        Expect::Rows,
        Expect::FieldList,
        Expect::Single,
        Expect::Prepare { left: 3 },
        Expect::ColumnDefs { left: 2 },
        Expect::ColumnsEof,
    ];
    let mut n = 0u64;
    while Instant::now() < deadline {
        let caps = CapabilityFlags::from_bits_truncate(rng.next() as u32);
        let mut m = Machine::new(expects[rng.below(expects.len())], caps);
        for _ in 0..rng.below(20) {
            let payload = rng.bytes(24);
            let len = if rng.below(50) == 0 { 0xFF_FFFF } else { payload.len() };
            match m.step(len, &payload) {
                Ok(rwsplit::relay::Step::Continue) => {}
                _ => break,
            }
        }
        n += 1;
    }
    println!("machine: {n} sequences");
}

#[test]
fn packet_reader_never_allocates_past_its_limit() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut valid = Vec::new();
    put_packet(&mut valid, 0, b"\x03SELECT 1");
    let n = fuzz("reader", &[valid], |input| {
        rt.block_on(async {
            let mut reader = PacketReader::new();
            let mut out = Vec::new();
            let mut stream = input;
            while reader.read_packet(&mut stream, &mut out, 1 << 16).await.is_ok() {
                assert!(out.len() <= 1 << 16);
            }
        });
    });
    assert!(n > 1000);
}

#[test]
fn config_parser_never_panics() {
    let seed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/rwsplit.toml")).unwrap();
    let n = fuzz("config", &[seed], |input| {
        if let Ok(text) = std::str::from_utf8(input)
            && let Ok(c) = rwsplit::Config::parse(text)
        {
            let _ = c.validate();
        }
    });
    assert!(n > 100);
}

#[test]
fn proxy_protocol_header_parsers_never_panic() {
    use rwsplit::protocol::proxy_header::{parse_v1, parse_v2};
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 3306\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[192, 0, 2, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x0c, 0xea]);
    let n = fuzz("proxy_header", &[v1, v2], |input| {
        let _ = parse_v1(input);
        if input.len() >= 16 {
            let fixed: [u8; 16] = input[..16].try_into().unwrap();
            let _ = parse_v2(&fixed, &input[16..]);
        }
    });
    assert!(n > 100);
}
