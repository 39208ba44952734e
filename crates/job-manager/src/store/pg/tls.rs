//! TLS to the database, chosen in `store.url` the way libpq's users write it:
//! `?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=/path/ca.pem`.
//!
//! - `disable`: plain TCP.
//! - `prefer` (the default, as libpq's): TLS if the server offers it, without checking the
//!   certificate; plain TCP otherwise.
//! - `require`: TLS or no connection; the certificate is not checked unless `sslrootcert` is
//!   given (then as `verify-ca`, like libpq).
//! - `verify-ca`: TLS with a certificate signed by the CA in `sslrootcert`.
//! - `verify-full`: `verify-ca` and the certificate names the host of the URL.
//!
//! rustls does the TLS (no OpenSSL in the image); rust-postgres knows only
//! disable/prefer/require, so both parameters are taken out of the URL here.

use std::{path::PathBuf, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, DigitallySignedStruct, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::{Error, Result};

/// `sslmode` of the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How to connect: rust-postgres's mode and the connector (None: plain TCP only).
#[derive(Clone)]
pub struct Tls {
    pub mode: SslMode,
    pub connector: Option<MakeRustlsConnect>,
}

impl Tls {
    /// Takes `sslmode` and `sslrootcert` out of `url` and builds the connector.
    pub fn from_url(url: &mut url::Url) -> Result<Tls> {
        let mut mode = None;
        let mut root = None;
        let mut rest: Vec<(String, String)> = vec![];
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "sslmode" => mode = Some(v.into_owned()),
                "sslrootcert" => root = Some(PathBuf::from(v.as_ref())),
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        let mode = match mode.as_deref() {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(invalid(format!(
                    "store.url: sslmode={other:?} is not supported: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        };
        let connector = match (mode, root) {
            (SslMode::Disable, _) => None,
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(invalid(format!(
                    "store.url: sslmode={} needs sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate)",
                    if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
                )))
            }
            (SslMode::Prefer | SslMode::Require, None) => Some(connector(Arc::new(
                AnyCertificate(provider()),
            ))?),
            (_, Some(path)) => {
                let roots = roots(&path)?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::new(provider()),
                )
                .build()
                .map_err(|e| invalid(format!("store.url: sslrootcert {}: {e}", path.display())))?;
                let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                };
                Some(connector(verifier)?)
            }
        };
        Ok(Tls { mode, connector })
    }

    /// rust-postgres's mode: `require` for every verifying mode.
    pub fn pg_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }
}

fn invalid(message: String) -> Error {
    Error::Database { message }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn roots(path: &std::path::Path) -> Result<rustls::RootCertStore> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| {
            invalid(format!(
                "store.url: sslrootcert {}: cannot read PEM certificates: {e}",
                path.display()
            ))
        })?;
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(invalid(format!(
            "store.url: sslrootcert {} holds no usable CA certificate",
            path.display()
        )));
    }
    Ok(store)
}

fn connector(verifier: Arc<dyn ServerCertVerifier>) -> Result<MakeRustlsConnect> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer`/`require` without a CA: encryption only, as libpq does (the handshake's
/// signatures are still checked, against whatever certificate the server sends).
#[derive(Debug)]
struct AnyCertificate(CryptoProvider);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to the CA; the name in the certificate is not checked.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_leave_the_url_and_are_checked() {
        let mut u = url::Url::parse(
            "postgres://jm@db:5432/jm?sslmode=require&application_name=x&connect_timeout=5",
        )
        .unwrap();
        let tls = Tls::from_url(&mut u).unwrap();
        assert_eq!(tls.mode, SslMode::Require);
        assert!(tls.connector.is_some());
        assert_eq!(
            u.as_str(),
            "postgres://jm@db:5432/jm?application_name=x&connect_timeout=5"
        );
        let mut u = url::Url::parse("postgres://jm@db/jm?sslmode=disable").unwrap();
        let tls = Tls::from_url(&mut u).unwrap();
        assert!(tls.connector.is_none());
        assert_eq!(u.query(), None);
        let mut u = url::Url::parse("postgres://jm@db/jm").unwrap();
        assert_eq!(Tls::from_url(&mut u).unwrap().mode, SslMode::Prefer);
        let err = Tls::from_url(&mut url::Url::parse("postgres://db/jm?sslmode=allow").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"allow\" is not supported"), "{err}");
        let err =
            Tls::from_url(&mut url::Url::parse("postgres://db/jm?sslmode=verify-full").unwrap())
                .err()
                .unwrap()
                .to_string();
        assert!(err.contains("needs sslrootcert"), "{err}");
        let err = Tls::from_url(
            &mut url::Url::parse("postgres://db/jm?sslmode=verify-ca&sslrootcert=/nonexistent.pem")
                .unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("/nonexistent.pem"), "{err}");
    }
}
