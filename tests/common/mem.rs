//! In-memory streams for driving `relay` without sockets: a backend that
//! replays a prepared response in socket-sized reads, and a client that
//! only counts what it is sent. Shared by tests and benches.
#![allow(dead_code)]

use rwsplit::protocol::packet::{put_lenenc, put_lenenc_str, put_packet};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read of the replayed response yields at most (a typical
/// socket read under load).
pub const READ_CHUNK: usize = 64 * 1024;

/// A backend that replays `data` from the start each time it is rewound.
pub struct Replay {
    pub data: Vec<u8>,
    pub pos: usize,
}

impl Replay {
    pub fn new(data: Vec<u8>) -> Replay {
        Replay { data, pos: 0 }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(READ_CHUNK).min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A client that counts the bytes and writes it receives.
#[derive(Default)]
pub struct Counter {
    pub bytes: u64,
    pub writes: u64,
}

impl AsyncRead for Counter {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Counter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bytes += b.len() as u64;
        self.writes += 1;
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A text-protocol result set of one VARCHAR column and `rows` rows of
/// `row_len` bytes each, framed as a server sends it to a client with or
/// without CLIENT_DEPRECATE_EOF.
pub fn result_set(rows: usize, row_len: usize, deprecate_eof: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * (row_len + 8) + 128);
    let mut seq = 1u8;
    seq = put_packet(&mut out, seq, &[1]);
    let mut def = Vec::new();
    for part in [&b"def"[..], b"app", b"sbtest1", b"sbtest1", b"c", b"c"] {
        put_lenenc_str(&mut def, part);
    }
    put_lenenc(&mut def, 0x0c);
    def.extend_from_slice(&[45, 0, 0xf0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
    seq = put_packet(&mut out, seq, &def);
    let eof = [0xfe, 0, 0, 0x02, 0];
    if !deprecate_eof {
        seq = put_packet(&mut out, seq, &eof);
    }
    let mut row = Vec::with_capacity(row_len + 4);
    put_lenenc_str(&mut row, &vec![b'x'; row_len]);
    for _ in 0..rows {
        seq = put_packet(&mut out, seq, &row);
    }
    if deprecate_eof {
        put_packet(&mut out, seq, &[0xfe, 0, 0, 0x02, 0, 0, 0]);
    } else {
        put_packet(&mut out, seq, &eof);
    }
    out
}
