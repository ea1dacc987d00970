//! TLS towards clients: loading a listener's certificate and key, and the
//! client stream that is plain TCP until the client's SSL request upgrades
//! it in place.

use crate::net::Socket;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor from PEM files (certificate chain, private key).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A client socket that first yields bytes already read from it (the start of
/// a TLS handshake that arrived together with the SSL request).
pub struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: Socket,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The client's side of a session: plain, or TLS after an upgrade.
pub enum ClientStream {
    Plain(Socket),
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed>>),
    /// The compressed protocol, after the login of a client that asked
    /// for it (over a plain or TLS stream).
    Compressed(Box<crate::compress::Compressed<ClientStream>>),
    /// Only while an upgrade is in progress.
    Detached,
}

impl ClientStream {
    /// The client talks the compressed protocol.
    pub fn is_compressed(&self) -> bool {
        matches!(self, ClientStream::Compressed(_))
    }

    pub fn is_tls(&self) -> bool {
        match self {
            ClientStream::Tls(_) => true,
            ClientStream::Compressed(c) => c.get_ref().is_tls(),
            _ => false,
        }
    }

    /// The connection's TLS version and cipher as MariaDB names them in
    /// `Ssl_version` and `Ssl_cipher` (OpenSSL's names); `None` when plain.
    pub fn tls_names(&self) -> Option<(&'static str, std::borrow::Cow<'static, str>)> {
        match self {
            ClientStream::Tls(tls) => {
                let conn = tls.get_ref().1;
                let version = match conn.protocol_version()? {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                    rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                    _ => "",
                };
                Some((version, openssl_cipher_name(conn.negotiated_cipher_suite()?.suite())))
            }
            ClientStream::Compressed(c) => c.get_ref().tls_names(),
            _ => None,
        }
    }

    /// Switches to the compressed protocol (after the login's OK).
    pub fn compress(&mut self) {
        let plain = std::mem::replace(self, ClientStream::Detached);
        *self = ClientStream::Compressed(Box::new(crate::compress::Compressed::new(plain)));
    }

    /// Runs the TLS handshake on a plain stream; `early` are bytes already
    /// read past the SSL request.
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor, early: Vec<u8>) -> io::Result<()> {
        let ClientStream::Plain(tcp) = std::mem::replace(self, ClientStream::Detached) else {
            return Err(io::Error::other("stream is already TLS"));
        };
        let prefixed = Prefixed { prefix: early, pos: 0, inner: tcp };
        let tls = acceptor.accept(prefixed).await?;
        *self = ClientStream::Tls(Box::new(tls));
        Ok(())
    }
}

/// OpenSSL's name of a cipher suite (the name MariaDB shows), for the
/// suites the proxy offers; the standard name for any other.
fn openssl_cipher_name(suite: rustls::CipherSuite) -> std::borrow::Cow<'static, str> {
    use rustls::CipherSuite as S;
    let name = match suite {
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return std::borrow::Cow::Owned(other.as_str().unwrap_or("unknown").to_string()),
    };
    std::borrow::Cow::Borrowed(name)
}

crate::net::delegate_stream!(ClientStream { Plain, Tls, Compressed } detached: Detached; vectored: Plain);

#[cfg(test)]
mod tests {
    #[test]
    fn cipher_suites_have_openssls_names_as_mariadb_shows_them() {
        use rustls::CipherSuite as S;
        assert_eq!(
            super::openssl_cipher_name(S::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            super::openssl_cipher_name(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "ECDHE-RSA-AES128-GCM-SHA256"
        );
        // Every suite the proxy can negotiate has a name of its own.
        for suite in rustls::crypto::ring::default_provider().cipher_suites {
            let name = super::openssl_cipher_name(suite.suite());
            assert!(!name.starts_with("TLS_ECDHE"), "{name}");
            assert!(!name.starts_with("TLS13_"), "{name}");
        }
    }

    #[test]
    fn missing_files_are_reported() {
        let err = super::acceptor("no/such/cert.pem".as_ref(), "no/such/key.pem".as_ref()).err();
        assert!(err.as_deref().is_some_and(|e| e.contains("cannot read certificate")), "{err:?}");
    }
}
