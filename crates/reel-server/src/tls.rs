//! TLS on both listeners (rustls with aws-lc): the server's certificate
//! and key, and for gRPC, optionally, the CA whose client certificates
//! identify recorders (mTLS; a client without one is refused at the
//! handshake).

use std::sync::Arc;

use anyhow::Context;

use reel_config::TlsConfig;

/// What each listener needs.
pub struct Tls {
    pub grpc: tonic::transport::ServerTlsConfig,
    pub http: axum_server::tls_rustls::RustlsConfig,
    /// Whether gRPC clients must show a certificate.
    pub client_certs: bool,
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// Reads the PEM files of `[tls]`.
pub async fn load(config: &TlsConfig) -> anyhow::Result<Tls> {
    // One process-wide provider for rustls (the one the S3 client uses).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cert = read(&config.cert_file, "certificate")?;
    let key = read(&config.key_file, "key")?;
    let mut grpc = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(&cert, &key));
    if let Some(ca) = &config.client_ca_file {
        let ca = read(ca, "client CA")?;
        grpc = grpc.client_ca_root(tonic::transport::Certificate::from_pem(ca));
    }
    let http = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
        .await
        .context("the TLS certificate or key is not valid PEM")?;
    Ok(Tls {
        grpc,
        http,
        client_certs: config.client_ca_file.is_some(),
    })
}

/// The subject's common name of a DER certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The identity a verified client certificate stands for: its common name,
/// with the recorder role.
pub fn certificate_identity(
    certs: Option<Arc<Vec<tonic::transport::CertificateDer<'static>>>>,
    client: String,
) -> Option<crate::access::Identity> {
    let certs = certs?;
    let name = common_name(certs.first()?.as_ref())?;
    Some(crate::access::Identity {
        name: format!("cert:{name}"),
        roles: vec![crate::access::Role::Recorder],
        scopes: Default::default(),
        client,
    })
}
