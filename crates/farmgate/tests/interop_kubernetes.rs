//! The farmgate configurations shipped in deploy/kubernetes/ pass `farmgate check`: each
//! ConfigMap's farmgate.toml, taken out by `.ci/kubernetes.py --extract` (Python with PyYAML,
//! as CI installs it), its `/etc/farmgate/...` paths moved into a directory that holds what the
//! pod would mount there: certificates as cert-manager writes them (tls.crt, tls.key, ca.crt),
//! the ticket key, the admin token.

use std::path::{Path, PathBuf};
use std::process::Command;

use farmgate_testkit::pki::{CertFiles, TestPki};

use crate::check::check;

/// Each ConfigMap's farmgate.toml, by ConfigMap name, in `dir`.
fn extracted(dir: &Path) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(root.join(".ci/kubernetes.py"))
        .arg("--extract")
        .arg(dir)
        .output()
        .expect("python3 (CI installs PyYAML with kubernetes-validate)");
    assert!(
        out.status.success(),
        ".ci/kubernetes.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    found.sort();
    found
}

/// Put `files` where a Secret volume mounted at `mount` would: `tls.crt`, `tls.key`, `ca.crt`.
fn secret(mount: &Path, files: &CertFiles, ca: &Path) {
    std::fs::create_dir_all(mount).unwrap();
    std::fs::copy(&files.cert, mount.join("tls.crt")).unwrap();
    std::fs::copy(&files.key, mount.join("tls.key")).unwrap();
    std::fs::copy(ca, mount.join("ca.crt")).unwrap();
}

/// The ConfigMap `name`'s configuration, with what its pod mounts under `/etc/farmgate` laid
/// out in a directory of its own; `farmgate check`'s exit code and output.
fn check_configmap(name: &str, toml: &Path, pki: &TestPki) -> (i32, String) {
    let root = pki.dir().join(name);
    let ca = pki.ca_file();
    match name {
        "farmgate-edge" => {
            secret(
                &root.join("identity"),
                &pki.client("edge.farm.internal"),
                &ca,
            );
            secret(&root.join("site"), &pki.server("www.example.com"), &ca);
            std::fs::create_dir_all(root.join("tickets")).unwrap();
            // One raw 80-byte key, as `openssl rand 80` makes it.
            let key: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            std::fs::write(root.join("tickets/tickets.key"), key).unwrap();
        }
        "farmgate-gate" => {
            secret(
                &root.join("identity"),
                &pki.server("backend.farm.internal"),
                &ca,
            );
        }
        other => panic!("a ConfigMap this test knows nothing of: {other}"),
    }
    std::fs::create_dir_all(root.join("admin")).unwrap();
    std::fs::write(root.join("admin/admin.token"), "0123456789abcdef\n").unwrap();
    let text = std::fs::read_to_string(toml)
        .unwrap()
        .replace("/etc/farmgate/", &format!("{}/", root.display()));
    let config = root.join("farmgate.toml");
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = check(&config);
    (code, stdout + &stderr)
}

#[test]
fn the_gate_sidecar_configuration_passes_check() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let toml = extracted(dir.path())
        .into_iter()
        .find(|(name, _)| name == "farmgate-gate")
        .expect("30-app.yaml's ConfigMap farmgate-gate")
        .1;
    let (code, output) = check_configmap("farmgate-gate", &toml, &pki);
    assert_eq!(code, 0, "{output}");
}

/// Every ConfigMap, the edge's included: it uses `proxy_protocol`, `ticket_keys` and
/// `discover` (issue 15, items 1, 3 and 4), exactly as the issue spells them.
#[test]
fn every_kubernetes_configuration_passes_check() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let found = extracted(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    for (name, toml) in found {
        let (code, output) = check_configmap(&name, &toml, &pki);
        assert_eq!(code, 0, "{name}:\n{output}");
    }
}
