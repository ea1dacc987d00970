//! The MySQL compressed protocol (CLIENT_COMPRESS, zlib) on the client's
//! side of a session. After the login, a client that asked for it wraps
//! its packets in frames: a 7-byte header (3 bytes of frame payload
//! length, a frame sequence id, 3 bytes of uncompressed length, 0 when the
//! payload is stored as it is) and the payload, zlib-compressed or not.
//! [`Compressed`] turns those frames back into the plain packet stream for
//! the session and frames what the session writes, so nothing else in the
//! proxy changes: backends are never asked to compress.
//!
//! Frame sequence ids restart with each command the client sends; the
//! replies continue from the id of the client's last frame, as a server's
//! do.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A frame header: payload length, sequence id, uncompressed length.
const HEADER: usize = 7;

/// Largest payload of one frame (and largest uncompressed length).
const MAX_FRAME: usize = 0xFF_FFFF;

/// Payloads shorter than this go out stored, not compressed (as servers do:
/// zlib would make them longer).
const MIN_COMPRESS: usize = 50;

/// What the session writes is framed once this much is waiting (and on
/// every flush), in whole packets.
const WRITE_CHUNK: usize = 64 << 10;

/// Bytes read from the client per read call.
const READ_CHUNK: usize = 16 << 10;

/// Decoded bytes produced per step.
const DECODE_CHUNK: usize = 64 << 10;

/// What is left of the frame being decoded.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// Payload bytes still to come.
    payload_left: usize,
    /// Uncompressed bytes still to come; None for a stored frame.
    unpacked_left: Option<usize>,
}

/// A client stream speaking the compressed protocol.
pub struct Compressed<S> {
    inner: S,
    /// Frame bytes read from the client and not yet decoded (at most one
    /// read's worth: frames are decoded as they arrive).
    raw: Vec<u8>,
    /// Decoded packet bytes not yet read by the session (at most
    /// DECODE_CHUNK: a frame inflates piece by piece, so a small frame
    /// announcing 16 MiB costs no more memory than a short one).
    plain: Vec<u8>,
    plain_pos: usize,
    /// The frame being decoded, once its header is read.
    frame: Option<Frame>,
    /// Packet bytes the session wrote, not yet framed.
    pending: Vec<u8>,
    /// Where the first incomplete packet in `pending` starts (the end of
    /// the whole packets before it).
    whole: usize,
    /// Frames not yet written to the client.
    out: Vec<u8>,
    out_pos: usize,
    /// Sequence id of the next frame to the client.
    seq: u8,
    inflate: Decompress,
    /// Reset for each frame: one zlib state per session, not per frame.
    deflate: flate2::Compress,
}

impl<S> Compressed<S> {
    pub fn new(inner: S) -> Compressed<S> {
        Compressed {
            inner,
            raw: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            frame: None,
            pending: Vec::new(),
            whole: 0,
            out: Vec::new(),
            out_pos: 0,
            seq: 0,
            inflate: Decompress::new(true),
            deflate: flate2::Compress::new(flate2::Compression::fast(), true),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Decodes what `raw` holds of the current frame (reading a header
    /// first) into `plain`, at most DECODE_CHUNK bytes; false when `raw`
    /// holds nothing more to decode.
    fn decode(&mut self) -> io::Result<bool> {
        let Some(frame) = self.frame else {
            let Some(header) = self.raw.get(..HEADER) else {
                return Ok(false);
            };
            let payload_left = u24(&header[0..3]);
            let unpacked = u24(&header[4..7]);
            // The replies to this frame continue its sequence.
            self.seq = header[3].wrapping_add(1);
            self.raw.drain(..HEADER);
            self.inflate.reset(true);
            let unpacked_left = (unpacked != 0).then_some(unpacked);
            self.frame = Some(Frame { payload_left, unpacked_left });
            return Ok(true);
        };
        self.plain.clear();
        self.plain_pos = 0;
        let input = &self.raw[..self.raw.len().min(frame.payload_left)];
        let (used, made, ended) = match frame.unpacked_left {
            None => {
                self.plain.extend_from_slice(input);
                (input.len(), input.len(), true)
            }
            Some(left) => {
                // Room for what is left of this frame only: a payload that
                // inflates past its announced length stops short, caught below.
                self.plain.resize(left.min(DECODE_CHUNK), 0);
                let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
                let status = self.inflate.decompress(input, &mut self.plain, FlushDecompress::None);
                let used = (self.inflate.total_in() - in_before) as usize;
                let made = (self.inflate.total_out() - out_before) as usize;
                self.plain.truncate(made);
                let status = status.map_err(|e| invalid(format!("bad compressed frame: {e}")))?;
                let ended = status == Status::StreamEnd;
                if ended && (made != left || used != frame.payload_left) {
                    return Err(invalid("compressed frame does not match its length".into()));
                }
                if left == 0 && used == 0 && !input.is_empty() {
                    // More payload than the announced length inflates to.
                    return Err(invalid("compressed frame does not match its length".into()));
                }
                (used, made, ended)
            }
        };
        self.raw.drain(..used);
        let payload_left = frame.payload_left - used;
        let unpacked_left = frame.unpacked_left.map(|left| left - made);
        let done = payload_left == 0 && unpacked_left.unwrap_or(0) == 0;
        // The last of a compressed frame must end its zlib stream; input
        // used up with output still owed must keep producing it.
        if (done && !ended) || (payload_left == 0 && !done && made == 0) {
            return Err(invalid("compressed frame does not match its length".into()));
        }
        self.frame = if done { None } else { Some(Frame { payload_left, unpacked_left }) };
        Ok(used > 0 || made > 0 || self.frame.is_none())
    }

    /// The end of the whole packets in `pending`.
    fn whole_packets(&mut self) -> usize {
        while let Some(header) = self.pending.get(self.whole..self.whole + 4) {
            let end = self.whole + 4 + u24(header);
            if end > self.pending.len() {
                break;
            }
            self.whole = end;
        }
        self.whole
    }

    /// Frames the whole packets in `pending` into `out`. Frames end at
    /// packet boundaries, as a server's do: clients (Connector/Python)
    /// read a packet's header from one frame and at most one more frame
    /// for the rest of it. Only a packet too long for one frame is split,
    /// in two, its header in the first.
    fn frame_pending(&mut self) {
        let end = self.whole_packets();
        for chunk in self.pending[..end].chunks(MAX_FRAME) {
            let at = self.out.len();
            self.out.extend_from_slice(&[0; HEADER]);
            let mut unpacked = 0;
            if chunk.len() >= MIN_COMPRESS {
                self.deflate.reset();
                self.out.reserve(chunk.len() + 64);
                let ok =
                    self.deflate.compress_vec(chunk, &mut self.out, flate2::FlushCompress::Finish);
                let packed = self.out.len() - at - HEADER;
                if matches!(ok, Ok(Status::StreamEnd)) && packed < chunk.len() {
                    unpacked = chunk.len();
                } else {
                    self.out.truncate(at + HEADER);
                }
            }
            if unpacked == 0 {
                self.out.extend_from_slice(chunk);
            }
            let len = self.out.len() - at - HEADER;
            self.out[at..at + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
            self.out[at + 3] = self.seq;
            self.out[at + 4..at + 7].copy_from_slice(&(unpacked as u32).to_le_bytes()[..3]);
            self.seq = self.seq.wrapping_add(1);
        }
        self.pending.drain(..end);
        self.whole = 0;
    }
}

impl<S: AsyncWrite + Unpin> Compressed<S> {
    /// Frames what is pending and writes every frame to the client.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.out_pos < self.out.len() {
                let n =
                    ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.out_pos += n;
                continue;
            }
            self.out.clear();
            self.out_pos = 0;
            if self.whole_packets() == 0 {
                // Nothing, or only the start of a packet whose rest the
                // session has yet to write.
                return Poll::Ready(Ok(()));
            }
            self.frame_pending();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Compressed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_pos);
                buf.put_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.decode()? {
                continue;
            }
            let at = this.raw.len();
            this.raw.resize(at + READ_CHUNK, 0);
            let mut read = ReadBuf::new(&mut this.raw[at..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let n = read.filled().len();
            this.raw.truncate(at + n);
            ready!(polled)?;
            if n == 0 {
                if this.raw.is_empty() && this.frame.is_none() {
                    return Poll::Ready(Ok(())); // end of stream between frames
                }
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Compressed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= WRITE_CHUNK {
            ready!(this.poll_drain(cx))?;
        }
        // What is left pending is at most the start of one packet (up to
        // 16 MiB: it goes out whole, as a server sends it).
        let room = WRITE_CHUNK.saturating_sub(this.pending.len()).max(READ_CHUNK);
        let n = buf.len().min(room);
        this.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

fn u24(b: &[u8]) -> usize {
    b[0] as usize | (b[1] as usize) << 8 | (b[2] as usize) << 16
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn stored_frame(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        f.push(seq);
        f.extend_from_slice(&[0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn zlib_frame(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let mut packed = Vec::with_capacity(payload.len() + 64);
        z.compress_vec(payload, &mut packed, flate2::FlushCompress::Finish).unwrap();
        let mut f = (packed.len() as u32).to_le_bytes()[..3].to_vec();
        f.push(seq);
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
        f.extend_from_slice(&packed);
        f
    }

    /// Decodes frames as a client would: the packet bytes and each frame's
    /// sequence id.
    fn unframe(mut bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (mut plain, mut seqs) = (Vec::new(), Vec::new());
        while !bytes.is_empty() {
            let len = u24(&bytes[0..3]);
            let unpacked = u24(&bytes[4..7]);
            seqs.push(bytes[3]);
            let payload = &bytes[HEADER..HEADER + len];
            if unpacked == 0 {
                plain.extend_from_slice(payload);
            } else {
                let mut d = Decompress::new(true);
                let mut out = Vec::with_capacity(unpacked);
                d.decompress_vec(payload, &mut out, FlushDecompress::Finish).unwrap();
                assert_eq!(out.len(), unpacked);
                plain.extend_from_slice(&out);
            }
            bytes = &bytes[HEADER + len..];
        }
        (plain, seqs)
    }

    #[tokio::test]
    async fn frames_in_both_forms_read_back_as_the_packets_they_carry() {
        let (client, proxy) = tokio::io::duplex(1 << 20);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let mut sent = stored_frame(0, b"\x05\x00\x00\x00\x03SEL");
        sent.extend(zlib_frame(1, &big));
        // A frame split across writes.
        let (a, b) = sent.split_at(9);
        client.write_all(a).await.unwrap();
        client.write_all(b).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        proxy.read_to_end(&mut got).await.unwrap();
        let mut want = b"\x05\x00\x00\x00\x03SEL".to_vec();
        want.extend_from_slice(&big);
        assert_eq!(got, want);
    }

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(payload);
        p
    }

    #[tokio::test]
    async fn writes_are_framed_in_whole_packets_continuing_the_clients_sequence() {
        let (client, proxy) = tokio::io::duplex(4 << 20);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        client.write_all(&stored_frame(0, b"\x01\x00\x00\x00\x0e")).await.unwrap();
        let mut command = [0u8; 5];
        proxy.read_exact(&mut command).await.unwrap();
        // A short reply goes stored; rows go compressed. The session writes
        // the stream in pieces that cut packets (and their headers) apart.
        let mut stream = packet(1, b"\x00\x00\x00\x02\x00\x00\x00");
        for i in 0..100u8 {
            let row: Vec<u8> =
                b"row data ".iter().cycle().take(3_000 + i as usize).copied().collect();
            stream.extend(packet(i.wrapping_add(2), &row));
        }
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        stream.extend(packet(102, &big));
        for piece in stream.chunks(7_001) {
            proxy.write_all(piece).await.unwrap();
        }
        proxy.flush().await.unwrap();
        drop(proxy);
        let mut framed = Vec::new();
        client.read_to_end(&mut framed).await.unwrap();
        let (plain, seqs) = unframe(&framed);
        assert_eq!(plain, stream);
        assert_eq!(seqs, (1..=seqs.len() as u8).collect::<Vec<_>>());
        assert!(framed.len() < stream.len() / 2, "compressed: {} bytes", framed.len());
        // Every frame ends at a packet boundary.
        let (mut rest, mut at) = (&framed[..], 0);
        let mut boundaries = std::collections::HashSet::new();
        let mut p = 0;
        while p < stream.len() {
            p += 4 + u24(&stream[p..]);
            boundaries.insert(p);
        }
        while !rest.is_empty() {
            let len = u24(&rest[0..3]);
            let (frame_plain, _) = unframe(&rest[..HEADER + len]);
            at += frame_plain.len();
            assert!(boundaries.contains(&at), "a frame ends inside a packet, at {at}");
            rest = &rest[HEADER + len..];
        }
    }

    #[tokio::test]
    async fn the_start_of_a_packet_waits_for_its_rest_across_a_flush() {
        let (client, proxy) = tokio::io::duplex(1 << 20);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        let whole = packet(1, &[b'z'; 500]);
        proxy.write_all(&whole[..2]).await.unwrap();
        proxy.flush().await.unwrap();
        proxy.write_all(&whole[2..]).await.unwrap();
        proxy.flush().await.unwrap();
        drop(proxy);
        let mut framed = Vec::new();
        client.read_to_end(&mut framed).await.unwrap();
        let (plain, seqs) = unframe(&framed);
        assert_eq!((plain, seqs.len()), (whole, 1), "one frame, whole");
    }

    #[tokio::test]
    async fn a_frame_that_lies_about_its_length_is_an_error() {
        let (client, proxy) = tokio::io::duplex(1 << 16);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        let mut frame = zlib_frame(0, &[b'x'; 1000]);
        frame[4] = 0xE7; // claims 999 bytes uncompressed
        frame[5] = 0x03;
        client.write_all(&frame).await.unwrap();
        let mut got = Vec::new();
        let err = proxy.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(got.len() <= 999, "no more than announced");
        let mut buf = [0u8; 16];
        // Garbage that is not zlib at all.
        let (client, proxy) = tokio::io::duplex(1 << 16);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        client.write_all(b"\x04\x00\x00\x00\x10\x00\x00junk").await.unwrap();
        assert!(proxy.read(&mut buf).await.is_err());
    }

    #[tokio::test]
    async fn frames_fed_a_byte_at_a_time_decode_whole() {
        let (client, proxy) = tokio::io::duplex(64);
        let mut proxy = Compressed::new(proxy);
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i / 1000) as u8).collect();
        let mut sent = zlib_frame(0, &payload);
        sent.extend(stored_frame(1, b"tail"));
        sent.extend(zlib_frame(2, &payload[..70_000]));
        let writer = tokio::spawn(async move {
            let mut client = client;
            for b in sent {
                client.write_all(&[b]).await.unwrap();
            }
        });
        let mut got = Vec::new();
        proxy.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        let mut want = payload.clone();
        want.extend_from_slice(b"tail");
        want.extend_from_slice(&payload[..70_000]);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }

    #[tokio::test]
    async fn a_frame_inflating_to_16_mib_is_decoded_in_bounded_pieces() {
        let (client, proxy) = tokio::io::duplex(1 << 16);
        let mut proxy = Compressed::new(proxy);
        let zeros = vec![0u8; MAX_FRAME];
        let frame = zlib_frame(0, &zeros);
        assert!(frame.len() < 64 << 10, "a small frame: {} bytes", frame.len());
        let writer = tokio::spawn(async move {
            let mut client = client;
            client.write_all(&frame).await.unwrap();
        });
        let mut buf = vec![0u8; 8 << 10];
        let mut total = 0;
        let mut most = 0;
        while total < MAX_FRAME {
            let n = proxy.read(&mut buf).await.unwrap();
            assert!(n > 0 && buf[..n].iter().all(|&b| b == 0));
            total += n;
            most = most.max(proxy.plain.capacity()).max(proxy.raw.capacity());
        }
        writer.await.unwrap();
        assert_eq!(total, MAX_FRAME);
        assert!(most <= 2 * DECODE_CHUNK, "buffers stayed small: {most} bytes");
    }

    #[tokio::test]
    async fn more_payload_than_its_length_inflates_to_is_an_error() {
        let (client, proxy) = tokio::io::duplex(1 << 16);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        let mut frame = zlib_frame(0, &[b'q'; 5000]);
        frame[4..7].copy_from_slice(&100u32.to_le_bytes()[..3]); // claims 100 bytes
        client.write_all(&frame).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        let err = proxy.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(got.len() <= 100);
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_unexpected_end() {
        let (client, proxy) = tokio::io::duplex(1 << 16);
        let mut proxy = Compressed::new(proxy);
        let mut client = client;
        client.write_all(&stored_frame(0, b"abcdef")[..9]).await.unwrap();
        drop(client);
        let mut buf = Vec::new();
        let err = proxy.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
