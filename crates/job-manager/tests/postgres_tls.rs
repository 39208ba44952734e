//! TLS to the store's database (`sslmode` in `store.url`) against a local PostgreSQL that
//! accepts TLS connections only, with certificates made by the `openssl` CLI for this test.
//! Skips (with a message) without PostgreSQL or openssl.

mod pg_support;
mod support;

use job_manager::store::Store;
use pg_support::Pg;

fn open(pg: &Pg, url: &str) -> Result<Store, String> {
    let dir = tempfile::tempdir().unwrap();
    Store::open_at(dir.path(), Some(url), Some(&pg.password_file())).map_err(|e| e.to_string())
}

#[test]
fn sslmode_require_and_verify_full_connect_and_a_wrong_ca_is_refused_by_name() {
    let Some(pg) = Pg::start_tls() else { return };
    let url = pg.database("tls");
    // The server takes TLS only: without it there is no way in.
    let err = open(&pg, &format!("{url}?sslmode=disable")).err().unwrap();
    assert!(err.contains("no encryption"), "{err}");
    // require: encrypted, the certificate not checked (libpq's meaning).
    let store = open(&pg, &format!("{url}?sslmode=require")).unwrap();
    assert!(store.read().deployments.is_empty());
    drop(store);
    // prefer (the default): TLS, since the server offers it.
    open(&pg, &url).unwrap();
    // verify-full with the CA that signed the server's certificate (for IP 127.0.0.1).
    let ca = pg.ca().display().to_string();
    open(&pg, &format!("{url}?sslmode=verify-full&sslrootcert={ca}")).unwrap();
    // ...and with another CA: refused, saying why and where, never the password.
    let wrong = pg.wrong_ca().display().to_string();
    let err = open(
        &pg,
        &format!("{url}?sslmode=verify-full&sslrootcert={wrong}"),
    )
    .err()
    .unwrap();
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(!err.contains(pg_support::PASSWORD), "{err}");
    // A name the certificate does not carry: verify-full refuses, verify-ca (the chain
    // only) accepts.
    let by_name = url.replace("127.0.0.1", "localhost");
    let err = open(
        &pg,
        &format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"),
    )
    .err()
    .unwrap();
    assert!(err.contains("not valid for name \"localhost\""), "{err}");
    open(
        &pg,
        &format!("{by_name}?sslmode=verify-ca&sslrootcert={ca}"),
    )
    .unwrap();
}
