//! `farmgate check`: exactly what `run` would build, exit 0 or 1, errors that say where.

use std::path::{Path, PathBuf};

use farmgate_testkit::pki::TestPki;

use crate::cli::{farmgate, mint_example_certs};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Run `farmgate check -c path`: (exit code, stdout, stderr).
pub fn check(path: &Path) -> (i32, String, String) {
    let out = farmgate(&["check", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn examples_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    mint_example_certs(dir.path());
    let mut checked = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let copy = dir.path().join(path.file_name().unwrap());
            std::fs::copy(&path, &copy).unwrap();
            let (code, stdout, stderr) = check(&copy);
            assert_eq!(code, 0, "{}:\n{stdout}{stderr}", path.display());
            assert!(stdout.contains(": OK"), "{stdout}");
            if path.ends_with("edge.toml") {
                // The effective limits, defaults included.
                assert!(
                    stdout.contains(
                        "limits: 10000 connections, 256 per client, requests per client 100 per 1s \
                         (burst 200), request body 10MiB, request header 64KiB; timeouts: \
                         handshake 10s, request header 30s, request body 60s, send 60s, idle 60s"
                    ),
                    "{stdout}"
                );
                assert!(
                    stdout.contains("no cap on requests in flight per server"),
                    "{stdout}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "examples/edge.toml, gate.toml and farm.toml");
}

/// A gate configuration whose certificate and key are `cert` and `key`.
fn gate_config(dir: &Path, cert: &Path, key: &Path, ca: &Path) -> PathBuf {
    let path = dir.join("gate.toml");
    let text = format!(
        "[[listener]]\nname = \"gate\"\nlisten = \"127.0.0.1:0\"\n[listener.tls]\ncertificate = {cert:?}\nprivate_key = {key:?}\n[listener.tls.client_auth]\ntrust = [{ca:?}]\nallow = [\"dns:edge.farm.test\"]\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:8080\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_summarises_a_valid_gate() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &backend.key, &pki.ca_file());
    let (code, stdout, _) = check(&config);
    assert_eq!(code, 0);
    assert!(stdout.contains("listener \"gate\""), "{stdout}");
    assert!(stdout.contains("allow dns:edge.farm.test"), "{stdout}");
    assert!(stdout.contains("eku client_auth"), "{stdout}");
}

#[test]
fn check_says_where_a_discovered_upstream_finds_its_servers_without_asking_dns() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &backend.key, &pki.ca_file());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "servers = [\"127.0.0.1:8080\"]",
        // A resolver nothing answers at: `check` builds what `run` would, and asks no DNS.
        "discover = { srv = \"_app._tcp.farm.test\", resolver = \"127.0.0.1:9\", min_ttl = \"5s\" }",
    );
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "upstream \"app\": servers from DNS (srv _app._tcp.farm.test, asking 127.0.0.1:9, TTL kept within 5s to 300s)"
        ),
        "{stdout}"
    );
}

#[test]
fn check_names_what_a_discovered_server_is_verified_as() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &backend.key, &pki.ca_file());
    let original = std::fs::read_to_string(&config).unwrap();
    let tls = format!("[upstream.app.tls]\ntrust = [{:?}]\n", pki.ca_file());
    for (discover, verified) in [
        (
            "discover = { dns = \"gates.farm.test\", port = 8443, resolver = \"127.0.0.1:9\" }",
            "TLS verifying gates.farm.test against",
        ),
        (
            "discover = { srv = \"_gate._tcp.farm.test\", resolver = \"127.0.0.1:9\" }",
            "TLS verifying each SRV target against",
        ),
    ] {
        let text = original.replace("servers = [\"127.0.0.1:8080\"]", discover) + &tls;
        std::fs::write(&config, text).unwrap();
        let (code, stdout, stderr) = check(&config);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains(verified), "{stdout}");
    }
}

#[test]
fn check_lists_whose_word_about_client_addresses_a_listener_takes() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &backend.key, &pki.ca_file());
    let (_, plain, _) = check(&config);
    assert!(!plain.contains("PROXY header"), "{plain}");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nproxy_protocol = { from = [\"10.0.0.0/8\"] }\ntrusted_proxies = [\"10.1.0.0/16\", \"192.0.2.7\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "    takes the client address from the PROXY header of connections from 10.0.0.0/8; \
             keeps X-Forwarded-For and Forwarded from clients in 10.1.0.0/16, 192.0.2.7/32 (trusted_proxies)"
        ),
        "{stdout}"
    );
}

#[test]
fn unreadable_certificate_is_reported_with_file_line_and_key() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let missing = pki.dir().join("nowhere.pem");
    let config = gate_config(pki.dir(), &missing, &backend.key, &pki.ca_file());
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1);
    let expected = format!(
        "{}:5: listener.tls.certificate: cannot read {}",
        config.display(),
        missing.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn mismatched_key_is_reported_with_file_line_and_key() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let other = pki.server("other.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &other.key, &pki.ca_file());
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("{}:6: listener.tls.private_key", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}

#[test]
fn garbage_certificate_is_reported() {
    let pki = TestPki::new();
    let backend = pki.server("backend.farm.test");
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let config = gate_config(pki.dir(), &garbage, &backend.key, &pki.ca_file());
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1);
    assert!(stderr.contains("holds no certificate"), "{stderr}");
}

#[test]
fn config_errors_exit_1_and_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[listener]]\nname = \"x\"\nlisen = 1\n").unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.toml:3: lisen: unknown field `lisen`"),
        "{stderr}"
    );
    let usage = farmgate(&["check", "--no-such-flag"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let missing = farmgate(&["check", "-c", "/nonexistent/farmgate.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

/// An edge whose listener takes its certificate from ACME, with `acme` as its `[acme]` table.
fn acme_config(dir: &Path, acme: &str) -> PathBuf {
    let path = dir.join("edge.toml");
    let text = format!(
        "[acme]\n{acme}\n[[listener]]\nname = \"public\"\nlisten = \"127.0.0.1:0\"\ntls = {{ acme = {{ domains = [\"www.farm.test\"] }} }}\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:8080\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_names_a_bad_acme_directory_url() {
    let dir = tempfile::tempdir().unwrap();
    let config = acme_config(
        dir.path(),
        "directory = \"acme-v02.api.letsencrypt.org/directory\"\nstorage = \"acme\"",
    );
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2: acme.directory: \"acme-v02.api.letsencrypt.org/directory\" is not an ACME directory URL",
            config.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_refuses_unwritable_acme_storage() {
    let dir = tempfile::tempdir().unwrap();
    // Under a regular file: no directory can be made there, not even by root.
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let config = acme_config(
        dir.path(),
        "directory = \"https://127.0.0.1:1/directory\"\nstorage = \"a-file/acme\"",
    );
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3: acme.storage: cannot keep ACME state in {}",
            config.display(),
            dir.path().join("a-file/acme").display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_warns_when_the_acme_server_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let config = acme_config(
        dir.path(),
        "directory = \"https://127.0.0.1:1/directory\"\nstorage = \"acme\"",
    );
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("TLS via ACME for www.farm.test (no certificate yet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warning: ")
            && stdout.contains("cannot reach https://127.0.0.1:1/directory"),
        "{stdout}"
    );
}

/// `gate_config` with `admin` appended: (path, the 1-based line of each of `keys`).
fn gate_config_with_admin(pki: &TestPki, admin: &str, keys: &[&str]) -> (PathBuf, Vec<usize>) {
    let backend = pki.server("backend.farm.test");
    let config = gate_config(pki.dir(), &backend.cert, &backend.key, &pki.ca_file());
    let text = std::fs::read_to_string(&config).unwrap() + admin;
    std::fs::write(&config, &text).unwrap();
    let lines = keys
        .iter()
        .map(|k| text.lines().position(|l| l.starts_with(k)).unwrap() + 1)
        .collect();
    (config, lines)
}

#[test]
fn an_admin_endpoint_beyond_loopback_without_a_token_file_is_refused() {
    let pki = TestPki::new();
    let (config, lines) = gate_config_with_admin(
        &pki,
        "[admin]\nlisten = \"0.0.0.0:9901\"\n",
        &["listen = \"0.0"],
    );
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "{}:{}: admin.listen: an admin endpoint that listens beyond loopback must require a token: add token_file",
        config.display(),
        lines[0]
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn an_empty_admin_token_file_is_reported_with_file_line_and_key() {
    let pki = TestPki::new();
    let token = pki.dir().join("admin.token");
    std::fs::write(&token, " \n").unwrap();
    let admin = format!("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = {token:?}\n");
    let (config, lines) = gate_config_with_admin(&pki, &admin, &["token_file"]);
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "{}:{}: admin.token_file: {}: it is empty",
        config.display(),
        lines[0],
        token.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
