//! TLS and mTLS end to end, with certificates made here: a CA, the
//! server's certificate for 127.0.0.1, and a recorder's client certificate.
//! HTTP and gRPC answer over TLS only; a recorder with a client certificate
//! records as the certificate's name; one without is refused at the
//! handshake, whatever token it has; `reel` works with `--ca-file`.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reel_testkit::{Recorder, Reeld, metadata, terminal_event};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Reel test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(vec!["127.0.0.1".into(), "localhost".into()], "reeld"),
        client: leaf(Vec::new(), "bastion-7"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn channel(
    endpoint: &str,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_listeners_and_client_certificates_for_recorders() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let ca_file = write(dir.path(), "ca.pem", &pki.ca);
    let cert = write(dir.path(), "server.pem", &pki.server.0);
    let key = write(dir.path(), "server.key", &pki.server.1);
    let config = write(
        dir.path(),
        "reel.toml",
        &format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
            cert, key, ca_file
        ),
    );
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    reeld.ca_file = Some(ca_file.clone());
    assert!(reeld.http.starts_with("https://"), "{}", reeld.http);
    assert!(reeld.grpc.starts_with("https://"), "{}", reeld.grpc);

    // A recorder with a client certificate records as the certificate's name.
    let ch = channel(&reeld.grpc, &pki.ca, Some(&pki.client))
        .await
        .unwrap();
    let mut rec = Recorder::start_on(ch, None, metadata("alice", "db-1"))
        .await
        .unwrap();
    rec.append((0..10).map(|i| terminal_event(1, i)).collect())
        .await
        .unwrap();
    let id = rec.id.clone();
    rec.close().await.unwrap();

    // Without a client certificate: refused, even with a valid token.
    let refused = match channel(&reeld.grpc, &pki.ca, None).await {
        Err(_) => true,
        Ok(ch) => Recorder::start_on(ch, Some(&reeld.token().unwrap()), metadata("a", "b"))
            .await
            .is_err(),
    };
    assert!(refused, "a recorder without a client certificate recorded");

    // HTTP over TLS, with the token; plain HTTP gets nothing.
    let events = reeld.export_events(&id).await.unwrap();
    assert_eq!(events.len(), 10);
    let plain = reeld.http.replace("https://", "http://");
    assert!(
        reqwest::get(format!("{plain}/healthz")).await.is_err()
            || !reqwest::get(format!("{plain}/healthz"))
                .await
                .unwrap()
                .status()
                .is_success()
    );

    // The CLI with --ca-file (REEL_CA_FILE, set by the harness).
    let out = reeld.reel(&["ls", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    // `reel ingest` over mTLS, with the client certificate.
    let client_cert = write(dir.path(), "client.pem", &pki.client.0);
    let client_key = write(dir.path(), "client.key", &pki.client.1);
    let cast = write(
        dir.path(),
        "s.cast",
        "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.5, \"o\", \"hello\\r\\n\"]\n",
    );
    let out = reeld.reel(&[
        "--client-cert",
        client_cert.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
        "ingest",
        cast.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Who recorded is the certificate's name (resume is its alone).
    let detail: serde_json::Value = reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap();
    assert_eq!(detail["owner"], "cert:bastion-7", "{detail}");
    reeld.stop();
}
