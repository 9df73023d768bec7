//! One rustls configuration for both transports: the `ring` provider (the small one) passed
//! explicitly, so the SDK never installs a process-wide default in the host app, and the
//! bundled web PKI roots, which work on Android and iOS where no system store is reachable
//! from Rust; plus any CA certificates the app adds for a private broker.

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// Why a TLS setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM text does not parse.
    #[error("bad CA certificate PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
    /// A certificate parses but cannot be a trust anchor.
    #[error("unusable CA certificate: {0}")]
    Unusable(rustls::Error),
    /// The PEM text holds no certificate at all.
    #[error("caCertificatesPem holds no certificate")]
    Empty,
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
}

/// Parses PEM CA certificates into a root store of their own: at least one, each usable as
/// a trust anchor.
pub fn parse_ca_pem(pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert?).map_err(TlsError::Unusable)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Empty);
    }
    Ok(roots)
}

/// Builds the client TLS config; `extra_ca_pem` holds zero or more PEM certificates.
pub fn client_config(extra_ca_pem: Option<&str>, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = extra_ca_pem {
        roots.roots.extend(parse_ca_pem(pem)?.roots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
