//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` in the `--store` URL say.
//!
//! Contract:
//! - `sslmode=disable`: plain TCP. `prefer` (the default, as libpq's): TLS when the server
//!   offers it, else plain. `require`: TLS or no connection. These three encrypt without
//!   checking who answers, as libpq does (a root certificate file makes libpq check the
//!   chain even then; sundial asks for `verify-ca` to be said).
//! - `verify-ca`: TLS, and the server's certificate must chain to a trusted root.
//!   `verify-full`: that, and it must name the host connected to (DNS name or IP address).
//! - The trusted roots are the PEM file `sslrootcert=FILE`, else Mozilla's list (built in,
//!   the roots the notifications' HTTPS uses). A file that cannot be read or holds no
//!   certificate is an error naming it, at start.
//! - TLS is rustls (with ring), the same as the webhooks'; no OpenSSL.

use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypted, nobody's identity checked (`disable`, `prefer`, `require`).
    Nothing,
    /// The chain to a trusted root (`verify-ca`).
    Chain,
    /// The chain and the host's name (`verify-full`).
    Full,
}

/// What the URL says of TLS, and the URL left for `postgres::Config` (which knows only
/// `disable`, `prefer` and `require`, and no `sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub url: String,
    pub verify: Verify,
    pub root: Option<PathBuf>,
}

/// Takes `sslmode`'s `verify-ca`/`verify-full` and `sslrootcert` out of a `postgres://`
/// URL. The error says what is wrong.
pub fn take_params(url: &str) -> Result<TlsParams, String> {
    // The query begins at the first `?` after the credentials (a password may hold one).
    // Only its pieces that are sundial's to read are rewritten; every other piece is
    // passed on byte for byte, for `postgres::Config` to read (it percent-decodes).
    let credentials_end = url.rfind('@').map_or(0, |at| at + 1);
    let (base, query) = match url[credentials_end..].find('?') {
        Some(at) => url.split_at(credentials_end + at),
        None => (url, ""),
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    let (mut verify, mut root, mut modes) = (Verify::Nothing, None, 0);
    let mut kept: Vec<&str> = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        let value = percent_decode_str(value).decode_utf8_lossy();
        match percent_decode_str(key).decode_utf8_lossy().as_ref() {
            "sslmode" => {
                modes += 1;
                match value.as_ref() {
                    "verify-ca" => {
                        verify = Verify::Chain;
                        kept.push("sslmode=require");
                    }
                    "verify-full" => {
                        verify = Verify::Full;
                        kept.push("sslmode=require");
                    }
                    "allow" => return Err("sslmode=allow is not supported; give disable, prefer, require, verify-ca or verify-full".into()),
                    _ => kept.push(piece),
                }
            }
            "sslrootcert" if value == "system" => root = None,
            "sslrootcert" => root = Some(PathBuf::from(value.as_ref())),
            _ => kept.push(piece),
        }
    }
    if modes > 1 {
        return Err("sslmode is given more than once; give it once".into());
    }
    if root.is_some() && verify == Verify::Nothing {
        return Err("sslrootcert is given but nothing checks the server against it: add sslmode=verify-full (or verify-ca)".into());
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(TlsParams { url, verify, root })
}

/// The connector every connection to the database uses.
pub fn connector(verify: Verify, root: Option<&PathBuf>) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match root {
        Some(file) => {
            let what = file.display();
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("sslrootcert {what}: cannot read it ({e}); give the path of the PEM file of the CA that signed the server's certificate"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {what}: not PEM certificates ({e})"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {what}: holds no certificate sundial can use; give the PEM file of the CA that signed the server's certificate"
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match verify {
        Verify::Full => builder.with_root_certificates(roots),
        Verify::Chain | Verify::Nothing => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    verify,
                    provider,
                }))
        }
    }
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The checks of `verify-ca` (the chain, not the name) and of `require` (none): the
/// handshake's signatures are still verified, so the session is the certificate holder's.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    verify: Verify,
    /// The handshake's signature algorithms (the connector's, made once).
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verify == Verify::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_the_root_file_are_taken_out_of_the_url() {
        let p = take_params("postgres://u:p%40ss@db:5432/s?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x").unwrap();
        assert_eq!(p.verify, Verify::Full);
        assert_eq!(p.root, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            p.url,
            "postgres://u:p%40ss@db:5432/s?sslmode=require&application_name=x"
        );
        let p = take_params("postgres://u@db/s?sslmode=verify-ca").unwrap();
        assert_eq!((p.verify, p.root), (Verify::Chain, None));
        let p = take_params("postgres://u@db/s?sslmode=require").unwrap();
        assert_eq!(
            (p.verify, p.url.as_str()),
            (Verify::Nothing, "postgres://u@db/s?sslmode=require")
        );
        let p = take_params("postgres://u@db/s").unwrap();
        assert_eq!(p.url, "postgres://u@db/s");
        let p = take_params("postgres://u@a:5432,b:5433/s?sslmode=verify-full").unwrap();
        assert_eq!(p.url, "postgres://u@a:5432,b:5433/s?sslmode=require");
        // Other pieces pass byte for byte (`%20` stays `%20`, not `+`); a `?` in the
        // password is not the query's.
        let p = take_params(
            "postgres://u:pa?ss@db/s?options=-c%20search_path%3Dapp&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca%20a.pem",
        )
        .unwrap();
        assert_eq!(
            p.url,
            "postgres://u:pa?ss@db/s?options=-c%20search_path%3Dapp&sslmode=require"
        );
        assert_eq!(p.root, Some(PathBuf::from("/etc/ca a.pem")));
        let e = take_params("postgres://u@db/s?sslmode=verify-full&sslmode=disable").unwrap_err();
        assert!(e.contains("more than once"), "{e}");
    }

    #[test]
    fn a_root_file_nothing_checks_or_that_cannot_be_read_is_an_error_naming_it() {
        let e = take_params("postgres://u@db/s?sslrootcert=/etc/ca.pem").unwrap_err();
        assert!(e.contains("sslmode=verify-full"), "{e}");
        let e = connector(Verify::Full, Some(&PathBuf::from("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(
            e.starts_with("sslrootcert /nonexistent/ca.pem: cannot read it"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = connector(Verify::Full, Some(&empty)).err().unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(connector(Verify::Nothing, None).is_ok());
    }
}
