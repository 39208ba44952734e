//! A throwaway PostgreSQL (Debian's `postgresql` package) for tests: a cluster in a
//! temporary directory on a free 127.0.0.1 port, stopped on drop. [`Pg::start`] is `None`
//! (after a SKIP message) when `initdb` is not installed. As root (CI), the server runs as
//! the `postgres` user.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::Manager;

/// Runs `f` on a plain thread: the synchronous client must not run on the test's runtime.
pub fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// A running PostgreSQL cluster; stopped (immediately) on drop.
pub struct Pg {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

/// The database password (scram-sha-256; the manager reads it from `store.password_file`).
pub const PASSWORD: &str = "pg-test-password-5d1c";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Pg {
    pub fn start() -> Option<Pg> {
        Pg::start_with(false)
    }

    /// A cluster that accepts TLS connections only (`hostssl` in pg_hba.conf), with a
    /// server certificate for IP 127.0.0.1 signed by [`Pg::ca`]. Skips (None) without the
    /// `openssl` CLI as without PostgreSQL.
    pub fn start_tls() -> Option<Pg> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIP: no openssl CLI to make the test certificates");
            return None;
        }
        Pg::start_with(true)
    }

    /// The CA that signed the server's certificate ([`Pg::start_tls`]).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Another CA, which signed nothing here.
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.pem")
    }

    fn make_certs(&self) {
        let d = self.dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "job-manager test CA"), ("wrong-ca", "another CA")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            run(&args);
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&args);
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        if self.as_postgres {
            for f in ["server.key", "server.pem"] {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(d.join(f))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown {f}");
            }
        }
    }

    fn start_with(tls: bool) -> Option<Pg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            eprintln!("SKIP: no PostgreSQL server (install Debian's `postgresql` package; /usr/lib/postgresql/*/bin/initdb is absent)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            // initdb refuses root: the cluster belongs to the `postgres` user.
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the temp dir to postgres");
        }
        let port = common::testkit::free_port();
        let pg = Pg {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = pg.data();
        let pwfile = pg.password_file();
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        let out = pg
            .cmd("initdb")
            .args(["-A", "scram-sha-256", "-U", "jm", "--no-sync", "--pwfile"])
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.dir.path().display()
        );
        if tls {
            pg.make_certs();
            let d = pg.dir.path();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ));
            // TLS or nothing: a plain connection finds no pg_hba.conf entry (except to the
            // maintenance database, where the test creates its databases).
            let hba = data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).unwrap();
            let mut text: String = text
                .lines()
                .map(|l| match l.strip_prefix("host ") {
                    Some(rest) => format!("hostssl {rest}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            text.push_str("host postgres all 127.0.0.1/32 scram-sha-256\n");
            std::fs::write(&hba, text).unwrap();
        }
        let out = pg
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("log"))
            .arg("-o")
            .arg(options)
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default()
        );
        Some(pg)
    }

    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("password")
    }

    /// A manager using database `url` (password from the file), state under `data`.
    pub fn manager(&self, data: &Path, url: &str) -> Manager {
        std::fs::create_dir_all(data).unwrap();
        std::fs::write(
            data.join("config.yml"),
            format!(
                "controller:\n  poll_interval: 300ms\nstore:\n  password_file: {}\n",
                self.password_file().display()
            ),
        )
        .unwrap();
        Manager::start(data, &["--store.url", url])
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// A fresh, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let port = self.port;
        off_runtime(|| {
            let mut c = postgres::Client::connect(
                &format!("host=127.0.0.1 port={port} user=jm password={PASSWORD} dbname=postgres"),
                postgres::NoTls,
            )
            .unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        });
        format!("postgres://jm@127.0.0.1:{}/{name}", self.port)
    }

    /// The rows of one query (on a plain thread).
    pub fn query(
        &self,
        url: &str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Vec<postgres::Row> {
        off_runtime(|| {
            let url = url.replace("jm@", &format!("jm:{PASSWORD}@"));
            postgres::Client::connect(&url, postgres::NoTls)
                .unwrap()
                .query(sql, params)
                .unwrap()
        })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
