//! Packet framing: the 4-byte header (3-byte length, 1-byte sequence id),
//! buffered reading of whole packets with a size limit, and the small
//! length-encoded primitives every other protocol module needs.
//!
//! Reading is buffered so that one `read` syscall can yield many small
//! packets; the relay looks at frames in place and forwards them without
//! copying their payloads.

use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload of one physical packet; a payload of exactly this size
/// is continued in the next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// Size of the packet header.
pub const HEADER: usize = 4;

/// Read buffer size a connection starts with; it grows for large packets
/// and is shrunk back when idle so that idle sessions stay small.
pub const INITIAL_BUFFER: usize = 4096;

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("packet of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("no memory admitted for a packet of {0} bytes")]
    NotAdmitted(usize),
    #[error("packets out of order: expected sequence {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One frame header as found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u8,
}

/// Parses the header at the start of `buf`, if 4 bytes are there.
#[inline]
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    if buf.len() < HEADER {
        return None;
    }
    let len = buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16;
    Some(Header { len, seq: buf[3] })
}

/// Appends a frame header to `out`.
#[inline]
pub fn put_header(out: &mut Vec<u8>, len: usize, seq: u8) {
    debug_assert!(len <= MAX_PAYLOAD);
    out.extend_from_slice(&[len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]);
}

/// Appends `payload` framed as one logical packet starting at `seq`,
/// split into 16 MiB physical packets as the protocol requires. Returns
/// the sequence id that follows.
pub fn put_packet(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        put_header(out, n, seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// A buffered packet reader over any byte stream.
pub struct PacketReader {
    buf: BytesMut,
    /// How much room a read gets at least (the initial capacity).
    chunk: usize,
}

impl Default for PacketReader {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketReader {
    pub fn new() -> Self {
        Self::with_capacity(INITIAL_BUFFER)
    }

    /// A reader whose reads take up to `chunk` bytes at a time (a backend
    /// connection's: a typical result arrives in one read).
    pub fn with_capacity(chunk: usize) -> Self {
        PacketReader { buf: BytesMut::with_capacity(chunk), chunk }
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Reads more bytes from `stream` into the buffer; fails with
    /// `Closed` at end of stream.
    pub async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<usize, FrameError> {
        if self.buf.capacity() < self.chunk {
            // Room up to a whole chunk, so that a reply that fits one read
            // arrives in one (a read into the few KiB left behind the last
            // reply split range results in two reads and two writes). The
            // bytes still buffered are few and move to the front of the
            // same allocation.
            self.buf.reserve(self.chunk - self.buf.len());
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(self.chunk.max(self.buf.len()));
        }
        let n = stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(FrameError::Closed);
        }
        Ok(n)
    }

    /// Ensures at least `n` bytes are buffered.
    pub async fn fill_to<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        n: usize,
    ) -> Result<(), FrameError> {
        if self.buf.capacity() < n {
            self.buf.reserve(n - self.buf.len());
        }
        while self.buf.len() < n {
            self.fill(stream).await?;
        }
        Ok(())
    }

    /// Reads one logical packet (joining 16 MiB continuations) into `out`
    /// (cleared first) and returns the sequence ids of its first and last
    /// physical packets. Payloads over `limit` bytes are refused before they are
    /// buffered whole.
    pub async fn read_packet<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(u8, u8), FrameError> {
        self.read_packet_admitted(stream, out, limit, |_| true).await
    }

    /// [`PacketReader::read_packet`], asking `admit` before the logical
    /// packet grows to each new length (before the bytes are buffered); a
    /// refusal is [`FrameError::NotAdmitted`].
    pub async fn read_packet_admitted<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        out: &mut Vec<u8>,
        limit: usize,
        mut admit: impl FnMut(usize) -> bool,
    ) -> Result<(u8, u8), FrameError> {
        out.clear();
        let mut first = None;
        loop {
            self.fill_to(stream, HEADER).await?;
            let h = parse_header(&self.buf).expect("header buffered");
            if out.len() + h.len > limit {
                return Err(FrameError::TooLarge(out.len() + h.len, limit));
            }
            if !admit(out.len() + h.len) {
                return Err(FrameError::NotAdmitted(out.len() + h.len));
            }
            self.fill_to(stream, HEADER + h.len).await?;
            out.extend_from_slice(&self.buf[HEADER..HEADER + h.len]);
            self.buf.advance(HEADER + h.len);
            let first = *first.get_or_insert(h.seq);
            if h.len < MAX_PAYLOAD {
                return Ok((first, h.seq));
            }
        }
    }

    /// Returns memory held by a large buffer once it is empty, so an idle
    /// session costs little.
    pub fn shrink_if_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 4 * self.chunk {
            self.buf = BytesMut::with_capacity(self.chunk);
        }
    }
}

/// Writes `payload` as one logical packet starting at `seq` and flushes.
pub async fn write_packet<S: AsyncWrite + Unpin>(
    stream: &mut S,
    seq: u8,
    payload: &[u8],
) -> io::Result<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER);
    let next = put_packet(&mut out, seq, payload);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(next)
}

/// Reads a length-encoded integer; `None` when the buffer is short or the
/// first byte is not an integer prefix (0xFB is NULL, 0xFF is an error).
#[inline]
pub fn read_lenenc(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    match first {
        0..=0xFA => Some((first as u64, 1)),
        0xFC => {
            let b = buf.get(1..3)?;
            Some((u16::from_le_bytes([b[0], b[1]]) as u64, 3))
        }
        0xFD => {
            let b = buf.get(1..4)?;
            Some((b[0] as u64 | (b[1] as u64) << 8 | (b[2] as u64) << 16, 4))
        }
        0xFE => {
            let b = buf.get(1..9)?;
            Some((u64::from_le_bytes(b.try_into().ok()?), 9))
        }
        _ => None,
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut Vec<u8>, v: u64) {
    if v < 0xFB {
        out.push(v as u8);
    } else if v <= 0xFFFF {
        out.push(0xFC);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= 0xFF_FFFF {
        out.push(0xFD);
        out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A cursor over a packet payload for the few packets the proxy decodes.
/// Every read is bounds-checked; a short packet yields `None`.
pub struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf }
    }
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    pub fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    pub fn lenenc(&mut self) -> Option<u64> {
        let (v, n) = read_lenenc(self.buf)?;
        self.buf = &self.buf[n..];
        Some(v)
    }
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.bytes(usize::try_from(n).ok()?)
    }
    /// Bytes up to a NUL (consumed); the whole rest when there is no NUL.
    pub fn null_str(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trips_every_width() {
        for v in [0u64, 250, 251, 0xFFFF, 0x10000, 0xFF_FFFF, 0x100_0000, u64::MAX] {
            let mut out = Vec::new();
            put_lenenc(&mut out, v);
            assert_eq!(read_lenenc(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn lenenc_of_short_buffer_is_none() {
        assert_eq!(read_lenenc(&[0xFC, 1]), None);
        assert_eq!(read_lenenc(&[0xFE, 1, 2, 3]), None);
        assert_eq!(read_lenenc(&[]), None);
        assert_eq!(read_lenenc(&[0xFF]), None);
    }

    #[test]
    fn large_payload_is_split_at_16_mib() {
        let payload = vec![7u8; MAX_PAYLOAD + 10];
        let mut out = Vec::new();
        let next = put_packet(&mut out, 3, &payload);
        assert_eq!(next, 5);
        assert_eq!(parse_header(&out), Some(Header { len: MAX_PAYLOAD, seq: 3 }));
        let second = &out[HEADER + MAX_PAYLOAD..];
        assert_eq!(parse_header(second), Some(Header { len: 10, seq: 4 }));
    }

    #[test]
    fn payload_of_exactly_16_mib_gets_empty_trailer() {
        let payload = vec![1u8; MAX_PAYLOAD];
        let mut out = Vec::new();
        put_packet(&mut out, 0, &payload);
        let trailer = &out[HEADER + MAX_PAYLOAD..];
        assert_eq!(parse_header(trailer), Some(Header { len: 0, seq: 1 }));
    }

    #[tokio::test]
    async fn a_reply_that_fits_the_chunk_arrives_in_one_read_whatever_came_before() {
        const CHUNK: usize = 16 * 1024;
        let mut r = PacketReader::with_capacity(CHUNK);
        // A first reply of 14 KiB, read and consumed whole, with one byte
        // of the next reply behind it.
        let first = vec![1u8; 14 * 1024 + 1];
        assert_eq!(r.fill(&mut first.as_slice()).await.unwrap(), first.len());
        r.consume(14 * 1024);
        // The rest of the next reply, 13 KiB, is there in one piece: one
        // read takes it all (not just the 2 KiB left behind the first).
        let second = vec![2u8; 13 * 1024];
        assert_eq!(r.fill(&mut second.as_slice()).await.unwrap(), second.len());
        assert_eq!(r.buffered().len(), 13 * 1024 + 1);
        assert_eq!(r.buffered()[0], 1);
    }

    #[tokio::test]
    async fn reader_joins_continuations_and_enforces_limit() {
        let payload = vec![9u8; MAX_PAYLOAD + 3];
        let mut wire = Vec::new();
        put_packet(&mut wire, 0, &payload);
        let mut r = PacketReader::new();
        let mut out = Vec::new();
        let seqs = r.read_packet(&mut wire.as_slice(), &mut out, usize::MAX).await.unwrap();
        assert_eq!(seqs, (0, 1));
        assert_eq!(out.len(), payload.len());

        let mut r = PacketReader::new();
        let err = r.read_packet(&mut wire.as_slice(), &mut out, 1000).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(..)));
    }

    #[test]
    fn cursor_reads_are_bounds_checked() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u16(), Some(0x0201));
        assert_eq!(c.u32(), None);
        assert_eq!(c.u8(), Some(3));
        assert_eq!(c.u8(), None);
        let mut c = Cursor::new(&[0xFC, 0xFF, 0xFF]);
        assert_eq!(c.lenenc_bytes(), None);
    }
}
