//! Client-side sockets: a listener is TCP or a unix socket, and a client
//! is known by its address (the one a PROXY protocol header names, when
//! the listener expects one).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Implements `AsyncRead` and `AsyncWrite` for an enum of streams by
/// passing each call to the variant's stream. `detached` names a variant
/// without a stream (a stream taken out for a TLS handshake): calls on it
/// fail with `NotConnected`. `vectored` lists the variants that write
/// vectored.
macro_rules! delegate_stream {
    ($ty:ident { $($variant:ident),+ } detached: $($detached:ident)?; vectored: $($vectored:ident),*) => {
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => std::pin::Pin::new(s).poll_read(cx, buf),)+
                    $($ty::$detached => std::task::Poll::Ready(Err($crate::net::detached())),)?
                }
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => std::pin::Pin::new(s).poll_write(cx, buf),)+
                    $($ty::$detached => std::task::Poll::Ready(Err($crate::net::detached())),)?
                }
            }
            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$variant(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),)+
                    $($ty::$detached => std::task::Poll::Ready(Err($crate::net::detached())),)?
                }
            }
            fn is_write_vectored(&self) -> bool {
                matches!(self, $($ty::$vectored(_))|*)
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => std::pin::Pin::new(s).poll_flush(cx),)+
                    $($ty::$detached => std::task::Poll::Ready(Err($crate::net::detached())),)?
                }
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $($ty::$variant(s) => std::pin::Pin::new(s).poll_shutdown(cx),)+
                    $($ty::$detached => std::task::Poll::Ready(Err($crate::net::detached())),)?
                }
            }
        }
    };
}
pub(crate) use delegate_stream;

/// The error of a stream enum's variant that holds no stream.
pub(crate) fn detached() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream detached for a TLS handshake")
}

/// A backend address: `host:port`, `[v6]:port`, a bare host or bare IPv6
/// (port 3306). The one reading of it for connecting, probing, TLS names
/// and validation.
pub fn split_address(address: &str) -> Option<(String, u16)> {
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => 3306,
            _ => after.strip_prefix(':')?.parse().ok()?,
        };
        return (!host.is_empty()).then(|| (host.to_string(), port));
    }
    match address.rsplit_once(':') {
        // Two colons or more without brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Some((address.to_string(), 3306)),
        Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => None,
        None if !address.is_empty() => Some((address.to_string(), 3306)),
        None => None,
    }
}

/// Pending connections the kernel queues for a TCP listener.
const LISTEN_BACKLOG: u32 = 4096;

/// Where a client connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    Tcp(SocketAddr),
    /// A local client on a unix socket.
    Unix,
}

impl ClientAddr {
    /// The client's IP, if it came over TCP.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Tcp(a) => Some(a.ip()),
            ClientAddr::Unix => None,
        }
    }

    /// The host part MySQL puts in messages such as "Access denied for
    /// user 'u'@'host'": the IP, or `localhost` for a unix socket.
    pub fn host(&self) -> String {
        match self {
            ClientAddr::Tcp(a) => a.ip().to_string(),
            ClientAddr::Unix => "localhost".into(),
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddr::Tcp(a) => a.fmt(f),
            ClientAddr::Unix => f.write_str("unix-socket"),
        }
    }
}

/// A bound client listener.
pub enum Listener {
    Tcp(TcpListener),
    /// The socket file is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a TCP address (`host:port`) from inside a runtime, with a
    /// listen backlog deep enough for connection storms (the usual 128
    /// overflows when hundreds of clients connect at once, and each
    /// dropped SYN costs that client a one-second retry).
    pub fn bind_tcp(address: &str) -> io::Result<Listener> {
        use std::net::ToSocketAddrs;
        let mut last = None;
        for addr in address.to_socket_addrs()? {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
                Ok(listener) => return Ok(Listener::Tcp(listener)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other(format!("{address} resolves to nothing"))))
    }

    /// Binds a unix socket at `path`. A socket file left by a proxy that
    /// did not stop cleanly is replaced; one that a live process still
    /// accepts on is not (binding fails with "address in use").
    pub fn bind_unix(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path)
            && meta.file_type().is_socket()
            && std::os::unix::net::UnixStream::connect(path).is_err()
        {
            std::fs::remove_file(path)?;
        }
        Ok(Listener::Unix(UnixListener::bind(path)?, path.to_path_buf()))
    }

    /// What the listener is bound to, for logs and tests.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    pub async fn accept(&self) -> io::Result<(Socket, ClientAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true).ok();
                Ok((Socket::Tcp(stream), ClientAddr::Tcp(peer)))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept().await?;
                Ok((Socket::Unix(stream), ClientAddr::Unix))
            }
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => a.fmt(f),
                Err(_) => f.write_str("tcp"),
            },
            Listener::Unix(_, path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Unanswered keepalive probes after which a quiet peer is taken for gone.
const KEEPALIVE_PROBES: u32 = 3;

/// A client's connection, TCP or unix socket.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A client connection between runtimes (not registered with any).
pub enum StdSocket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    /// Detaches the connection from this thread's runtime, to hand it to
    /// another.
    pub fn into_std(self) -> io::Result<StdSocket> {
        match self {
            Socket::Tcp(s) => s.into_std().map(StdSocket::Tcp),
            Socket::Unix(s) => s.into_std().map(StdSocket::Unix),
        }
    }

    /// Makes a TCP connection whose peer is gone without a word (host
    /// down, cable cut) fail about `dead_after` after the peer's last
    /// acknowledgement: when the connection is quiet, by keepalive probes
    /// (the first at half of it, three more over the other half); when
    /// data waits for the peer's acknowledgement, by the kernel's user
    /// timeout, which otherwise retransmits for some fifteen minutes. A
    /// live peer that stops reading is cut off after as long. Zero leaves
    /// the system's settings.
    pub fn keep_alive(&self, dead_after: Duration) -> io::Result<()> {
        let Socket::Tcp(stream) = self else { return Ok(()) };
        if dead_after.is_zero() {
            return Ok(());
        }
        let first = (dead_after / 2).max(Duration::from_secs(1));
        let every =
            (dead_after.saturating_sub(first) / KEEPALIVE_PROBES).max(Duration::from_secs(1));
        let probes = socket2::TcpKeepalive::new()
            .with_time(first)
            .with_interval(every)
            .with_retries(KEEPALIVE_PROBES);
        let socket = socket2::SockRef::from(stream);
        socket.set_tcp_keepalive(&probes)?;
        socket.set_tcp_user_timeout(Some(dead_after))
    }

    /// Registers a handed-over connection with the current runtime.
    pub fn from_std(socket: StdSocket) -> io::Result<Socket> {
        match socket {
            StdSocket::Tcp(s) => TcpStream::from_std(s).map(Socket::Tcp),
            StdSocket::Unix(s) => UnixStream::from_std(s).map(Socket::Unix),
        }
    }
}

delegate_stream!(Socket { Tcp, Unix } detached: ; vectored: Tcp, Unix);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_read_like_mysql_hosts() {
        let tcp = ClientAddr::Tcp("192.0.2.7:5000".parse().unwrap());
        assert_eq!(tcp.host(), "192.0.2.7");
        assert_eq!(tcp.to_string(), "192.0.2.7:5000");
        assert_eq!(ClientAddr::Unix.host(), "localhost");
        assert_eq!(ClientAddr::Unix.ip(), None);
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("rwsplit-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stale.sock");
        // A socket file nobody accepts on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let listener = Listener::bind_unix(&path).unwrap();
        let client = UnixStream::connect(&path).await.unwrap();
        let (_socket, addr) = listener.accept().await.unwrap();
        assert_eq!(addr, ClientAddr::Unix);
        drop(client);
        // A live listener's socket is not taken over.
        assert!(Listener::bind_unix(&path).is_err());
        drop(listener);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
