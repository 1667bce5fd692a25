//! TLS for the `wss://` and STOMP-over-TLS listeners: the certificate chain and
//! key come from PEM files (`[tls] cert_file`, `key_file`), with rustls and its
//! ring provider. No client certificates.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use thiserror::Error;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the TLS configuration cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("tls.cert_file {0}: {1}")]
    Cert(String, String),
    /// The key file is unreadable or holds no private key.
    #[error("tls.key_file {0}: {1}")]
    Key(String, String),
    /// rustls refused the pair (for example a key that does not match).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// An acceptor for `cert_file` and `key_file`, offering `alpn` (e.g. `http/1.1`).
pub fn acceptor(cert_file: &str, key_file: &str, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| TlsError::Cert(cert_file.to_owned(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert(cert_file.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            cert_file.to_owned(),
            "no certificate in it".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| TlsError::Key(key_file.to_owned(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}
