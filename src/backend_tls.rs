//! TLS from the proxy to its backends: the connector built from
//! `[backend_tls]`, and the stream a backend connection reads and writes,
//! plain TCP or TLS after the SSL request.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

/// How backend connections switch to TLS.
#[derive(Clone)]
pub struct BackendTls {
    connector: tokio_rustls::TlsConnector,
    /// The name certificates must carry; by default each backend's host.
    server_name: Option<String>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls").field("server_name", &self.server_name).finish()
    }
}

impl BackendTls {
    /// With `verify`, servers must present a certificate chaining to `ca`
    /// and naming the host; without, any certificate is accepted (the
    /// link is encrypted but not authenticated).
    pub fn new(
        ca: Option<&Path>,
        verify: bool,
        server_name: Option<String>,
    ) -> Result<BackendTls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if verify {
            let ca = ca.ok_or(
                "ca: required to verify the backends' certificates (or set verify = false)",
            )?;
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("ca: cannot read {}: {e}", ca.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca: bad certificate in {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("ca: no certificate in {}", ca.display()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("ca: {}: {e}", ca.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        };
        Ok(BackendTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Runs the TLS handshake on `tcp`, a connection to `addr` (`host:port`).
    pub async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<BackendStream> {
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => crate::net::split_address(addr).map_or_else(|| addr.to_string(), |(h, _)| h),
        };
        let name = ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = self.connector.connect(name, tcp).await?;
        Ok(BackendStream::Tls(Box::new(tls)))
    }
}

/// Accepts any server certificate (`verify = false`); signatures are still
/// checked, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A backend connection's stream.
pub enum BackendStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while the TLS handshake runs.
    Detached,
}

impl BackendStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, BackendStream::Tls(_))
    }

    /// Whether an idle connection has heard from its server: its close, or
    /// anything it said unasked (an error before closing), which leaves
    /// the connection unusable. Reads nothing when nothing arrived; looks
    /// only at what the runtime has already seen.
    pub fn heard_from_peer(&self) -> bool {
        let tcp = match self {
            BackendStream::Tcp(tcp) => tcp,
            BackendStream::Tls(tls) => tls.get_ref().0,
            BackendStream::Detached => return true,
        };
        let mut byte = [0u8; 1];
        !matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Takes the plain TCP stream out for a TLS handshake.
    pub fn take_tcp(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, BackendStream::Detached) {
            BackendStream::Tcp(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

crate::net::delegate_stream!(BackendStream { Tcp, Tls } detached: Detached; vectored: Tcp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_needs_a_readable_ca() {
        let err = BackendTls::new(None, true, None).err().unwrap();
        assert!(err.contains("ca: required"), "{err}");
        let err = BackendTls::new(Some("no/such/ca.pem".as_ref()), true, None).err().unwrap();
        assert!(err.contains("cannot read no/such/ca.pem"), "{err}");
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tls/ca.pem");
        assert!(BackendTls::new(Some(ca.as_ref()), true, None).is_ok());
        assert!(BackendTls::new(None, false, None).is_ok());
    }
}
