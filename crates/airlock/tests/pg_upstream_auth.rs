//! Upstream authentication with the held credential (cleartext, MD5, SCRAM-SHA-256) and
//! upstream TLS (`sslmode = require` / `verify-full`), against a throwaway PostgreSQL cluster
//! this test creates with initdb in a temp dir on its own port. The machine's cluster is untouched.
// Test code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a PostgreSQL tool as the `postgres` OS user (initdb refuses to run as root).
fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Cluster {
    fn start(root: &Path) -> Cluster {
        let bin = PathBuf::from(run(Command::new("pg_config").arg("--bindir")).trim());
        let dir = root.join("cluster");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir));
        let data = dir.join("data");
        run(as_postgres(&bin, "initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]));
        // A CA and a server certificate it signs, valid for 127.0.0.1, for upstream TLS.
        let ca_key = dir.join("ca.key");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=airlock-test-ca",
            ])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(dir.join("ca.crt")));
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(dir.join("server.csr")));
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(dir.join("server.csr"))
            .arg("-CA")
            .arg(dir.join("ca.crt"))
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(dir.join("san.ext"))
            .arg("-out")
            .arg(data.join("server.crt")));
        run(Command::new("chown")
            .args(["postgres:postgres"])
            .arg(data.join("server.key"))
            .arg(data.join("server.crt")));
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\npassword_encryption = 'scram-sha-256'\n",
            dir.display()
        );
        let mut pgconf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        pgconf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pgconf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all tls_user 127.0.0.1/32 scram-sha-256\n\
             host all scram_user 127.0.0.1/32 scram-sha-256\n\
             host all md5_user 127.0.0.1/32 md5\n\
             host all clear_user 127.0.0.1/32 password\n",
        )
        .unwrap();
        run(as_postgres(&bin, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "start"]));
        let c = Cluster { dir, bin, port };
        c.sql("create user scram_user password 'scram-secret-1'; create user tls_user password 'tls-secret-1'; create user clear_user password 'clear-secret-1'; set password_encryption = 'md5'; create user md5_user password 'md5-secret-1';");
        c
    }

    fn sql(&self, sql: &str) {
        run(as_postgres(&self.bin, "psql")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ]));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn held_credentials_work_for_every_upstream_auth_method() {
    let root = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(root.path());
    let secrets = root.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let mut upstream = String::new();
    let cases = [
        ("pg-scram", "scram_user", "scram-secret-1", "disable"),
        ("pg-md5", "md5_user", "md5-secret-1", "disable"),
        ("pg-clear", "clear_user", "clear-secret-1", "disable"),
        ("pg-tls", "tls_user", "tls-secret-1", "require"),
        ("pg-tls-verified", "tls_user", "tls-secret-1", "verify-full"),
        ("pg-wrong", "scram_user", "not-the-password", "disable"),
    ];
    let ca = cluster.dir.join("ca.crt");
    for (name, user, password, sslmode) in cases {
        let file = secrets.join(name);
        std::fs::write(&file, password).unwrap();
        upstream.push_str(&format!(
            "[[connections]]\nname = \"{name}\"\ntype = \"postgres\"\naddress = \"127.0.0.1:{}\"\ndatabase = \"postgres\"\nuser = \"{user}\"\npassword_file = \"{}\"\nsslmode = \"{sslmode}\"\nca_file = \"{}\"\nallow_groups = [\"ai-agents\"]\n\n",
            cluster.port,
            file.display(),
            ca.display()
        ));
    }
    let gw = Gateway::start_with(&upstream, "", None);
    for (name, user, password, _) in &cases[..5] {
        let o = psql(&gw.conninfo("agent", TOKEN, name), "select current_user as who, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as tls;\n");
        let s = text(&o);
        assert!(s.contains(user), "{name}: {s}");
        if name.starts_with("pg-tls") {
            assert!(
                s.contains(" t\n") || s.contains("| t"),
                "{name}: upstream connection not encrypted: {s}"
            );
        }
        assert!(
            !s.contains(password),
            "{name}: the held secret leaked to the client"
        );
    }
    let o = psql(&gw.conninfo("agent", TOKEN, "pg-wrong"), "select 1;\n");
    let s = text(&o);
    assert!(
        s.contains("could not open upstream connection `pg-wrong`") && s.contains("28P01"),
        "{s}"
    );
    assert!(!s.contains("not-the-password"), "{s}");
    // The held secrets never reach the audit log.
    let log = gw.audit_log();
    for (_, _, password, _) in cases {
        assert!(
            !log.contains(password),
            "secret {password} in the audit log"
        );
    }
}
