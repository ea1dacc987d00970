//! The PROXY protocol header (versions 1 and 2) that a load balancer sends
//! before the client's own bytes, so the proxy knows who the client is.
//!
//! MySQL is server-first: the client says nothing until it has the
//! greeting, so whatever arrives before the greeting is the header alone.
//! It is still read byte-exact, never past its end.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Version 1 lines are at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's real address.
    Proxied(SocketAddr),
    /// The balancer's own connection (health check, `LOCAL`, `UNKNOWN`,
    /// or an address family without an IP): keep the socket's address.
    Local,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("connection closed during the PROXY protocol header")]
    Closed,
}

/// Reads one header (v1 or v2) from the start of a connection.
pub async fn read<S: AsyncRead + Unpin>(s: &mut S) -> Result<Header, HeaderError> {
    let mut start = [0u8; 6];
    read_exact(s, &mut start).await?;
    if &start == b"PROXY " {
        let mut line = Vec::with_capacity(V1_MAX);
        line.extend_from_slice(&start);
        while !line.ends_with(b"\r\n") {
            if line.len() == V1_MAX {
                return Err(HeaderError::Malformed("version 1 line longer than 107 bytes"));
            }
            let mut byte = [0u8; 1];
            read_exact(s, &mut byte).await?;
            line.push(byte[0]);
        }
        return parse_v1(&line);
    }
    if start != V2_SIGNATURE[..6] {
        return Err(HeaderError::Missing);
    }
    let mut fixed = [0u8; 16];
    fixed[..6].copy_from_slice(&start);
    read_exact(s, &mut fixed[6..]).await?;
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    let mut body = vec![0u8; len];
    read_exact(s, &mut body).await?;
    parse_v2(&fixed, &body)
}

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<(), HeaderError> {
    s.read_exact(buf).await.map(|_| ()).map_err(|_| HeaderError::Closed)
}

/// Parses a version 1 line, `PROXY TCP4 src dst sport dport\r\n`.
pub fn parse_v1(line: &[u8]) -> Result<Header, HeaderError> {
    let text = line
        .strip_suffix(b"\r\n")
        .and_then(|l| std::str::from_utf8(l).ok())
        .ok_or(HeaderError::Malformed("version 1 line is not ASCII ending in CRLF"))?;
    let mut words = text.split(' ');
    if words.next() != Some("PROXY") {
        return Err(HeaderError::Missing);
    }
    let family = words.next().ok_or(HeaderError::Malformed("no address family"))?;
    if family == "UNKNOWN" {
        return Ok(Header::Local);
    }
    let fields: Vec<&str> = words.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(HeaderError::Malformed("version 1 needs four address fields"));
    };
    let ip: IpAddr = match family {
        "TCP4" => src.parse::<Ipv4Addr>().map(IpAddr::V4),
        "TCP6" => src.parse::<Ipv6Addr>().map(IpAddr::V6),
        _ => return Err(HeaderError::Malformed("unknown address family")),
    }
    .map_err(|_| HeaderError::Malformed("bad source address"))?;
    let port: u16 = sport.parse().map_err(|_| HeaderError::Malformed("bad source port"))?;
    Ok(Header::Proxied(SocketAddr::new(ip, port)))
}

/// Parses a version 2 header: the 16 fixed bytes and the body they announce.
pub fn parse_v2(fixed: &[u8; 16], body: &[u8]) -> Result<Header, HeaderError> {
    if fixed[..12] != V2_SIGNATURE {
        return Err(HeaderError::Missing);
    }
    if fixed[12] >> 4 != 2 {
        return Err(HeaderError::Malformed("unsupported version"));
    }
    match fixed[12] & 0x0f {
        0 => return Ok(Header::Local),
        1 => {}
        _ => return Err(HeaderError::Malformed("unknown command")),
    }
    let short = HeaderError::Malformed("address block shorter than its family needs");
    match fixed[13] >> 4 {
        1 => {
            let a = body.get(..12).ok_or(short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Ok(Header::Proxied(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]]))))
        }
        2 => {
            let a = body.get(..36).ok_or(short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Ok(Header::Proxied(SocketAddr::new(ip.into(), u16::from_be_bytes([a[32], a[33]]))))
        }
        // Unspecified or unix: no IP to report.
        0 | 3 => Ok(Header::Local),
        _ => Err(HeaderError::Malformed("unknown address family")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    async fn read_all(bytes: &[u8]) -> (Result<Header, HeaderError>, usize) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let header = read(&mut cursor).await;
        (header, cursor.position() as usize)
    }

    #[tokio::test]
    async fn version_1_gives_the_client_address_and_reads_nothing_more() {
        let mut bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 3306\r\n".to_vec();
        let header_len = bytes.len();
        bytes.extend_from_slice(b"client bytes");
        let (header, used) = read_all(&bytes).await;
        assert_eq!(header, Ok(Header::Proxied("192.0.2.7:51234".parse().unwrap())));
        assert_eq!(used, header_len);
        let (header, _) = read_all(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 3306\r\n").await;
        assert_eq!(header, Ok(Header::Proxied("[2001:db8::1]:4000".parse().unwrap())));
        assert_eq!(read_all(b"PROXY UNKNOWN\r\n").await.0, Ok(Header::Local));
    }

    #[tokio::test]
    async fn version_2_gives_the_client_address_and_reads_nothing_more() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
        body.extend_from_slice(&4321u16.to_be_bytes());
        body.extend_from_slice(&3306u16.to_be_bytes());
        body.extend_from_slice(&[0x04, 0, 1, 0]); // a TLV after the addresses
        let mut bytes = v2(1, 0x11, &body);
        let header_len = bytes.len();
        bytes.extend_from_slice(b"more");
        let (header, used) = read_all(&bytes).await;
        assert_eq!(header, Ok(Header::Proxied("198.51.100.9:4321".parse().unwrap())));
        assert_eq!(used, header_len);

        let mut body6 = vec![0u8; 36];
        body6[15] = 1; // ::1
        body6[32..34].copy_from_slice(&7000u16.to_be_bytes());
        let (header, _) = read_all(&v2(1, 0x21, &body6)).await;
        assert_eq!(header, Ok(Header::Proxied("[::1]:7000".parse().unwrap())));
        // LOCAL (a health check) and unix-socket sources keep the real peer.
        assert_eq!(read_all(&v2(0, 0x00, &[])).await.0, Ok(Header::Local));
        assert_eq!(read_all(&v2(1, 0x31, &[0; 216])).await.0, Ok(Header::Local));
    }

    #[tokio::test]
    async fn bad_headers_are_refused() {
        // A MySQL client that talks first (or a plain health check).
        assert_eq!(read_all(b"\x05\0\0\0\x03abc").await.0, Err(HeaderError::Missing));
        assert_eq!(read_all(b"PROX").await.0, Err(HeaderError::Closed));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(read_all(long.as_bytes()).await.0, Err(HeaderError::Malformed(_))));
        for bad in [
            &b"PROXY TCP4 300.1.1.1 10.0.0.1 1 2\r\n"[..],
            b"PROXY TCP4 1.1.1.1 10.0.0.1 99999 2\r\n",
            b"PROXY TCP4 1.1.1.1 10.0.0.1\r\n",
            b"PROXY UDP4 1.1.1.1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 \xff 10.0.0.1 1 2\r\n",
        ] {
            assert!(matches!(read_all(bad).await.0, Err(HeaderError::Malformed(_))), "{bad:?}");
        }
        // IPv4 family with too short an address block; unknown command.
        assert!(matches!(
            read_all(&v2(1, 0x11, &[1, 2, 3])).await.0,
            Err(HeaderError::Malformed(_))
        ));
        assert!(matches!(read_all(&v2(5, 0x11, &[0; 12])).await.0, Err(HeaderError::Malformed(_))));
        // A body shorter than announced.
        let mut cut = v2(1, 0x11, &[0; 12]);
        cut.truncate(20);
        assert_eq!(read_all(&cut).await.0, Err(HeaderError::Closed));
    }
}
