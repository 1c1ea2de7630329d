//! Installing farmgate as operators do: the Debian package (built by
//! `crates/farmgate/debian/package` with cargo-deb), its systemd unit (checked by
//! `systemd-analyze verify`) and the shell completions (parsed by bash). Behind the `interop`
//! feature: cargo-deb, dpkg-deb, systemd-analyze and bash must be installed (.ci/run installs
//! what is missing); a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::outside::{output_of as run, text};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_debian_package_holds_the_binary_the_unit_and_the_man_pages() {
    // The binary this test run built (the dev profile), packaged as a release would be.
    let binary = Path::new(env!("CARGO_BIN_EXE_farmgate"));
    let target = binary.parent().and_then(Path::parent).unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = run(
        "cargo-deb",
        Command::new(root().join("crates/farmgate/debian/package"))
            .args(["--profile", "dev", "--no-build", "--output"])
            .arg(out.path())
            .env("CARGO_TARGET_DIR", target),
    );
    assert!(built.status.success(), "{}", text(&built));
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .unwrap_or_else(|| panic!("no .deb in {}: {}", out.path().display(), text(&built)));

    let listing = run(
        "dpkg-deb",
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
    );
    assert!(listing.status.success(), "{}", text(&listing));
    let listing = text(&listing);
    for path in [
        "./usr/bin/farmgate",
        "./usr/lib/systemd/system/farmgate@.service",
        "./usr/lib/sysusers.d/farmgate.conf",
        "./usr/share/man/man1/farmgate.1",
        "./usr/share/man/man1/farmgate-run.1",
        "./usr/share/bash-completion/completions/farmgate",
        "./usr/share/zsh/vendor-completions/_farmgate",
        "./usr/share/fish/vendor_completions.d/farmgate.fish",
        "./usr/share/doc/farmgate/examples/edge.toml",
        "./usr/share/doc/farmgate/examples/gate.toml",
        "./usr/share/doc/farmgate/operations.md",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{listing}"
        );
    }

    let info = run("dpkg-deb", Command::new("dpkg-deb").arg("--info").arg(&deb));
    let info = text(&info);
    assert!(info.contains("Package: farmgate"), "{info}");
    assert!(
        info.contains("postinst"),
        "the user is created on install: {info}"
    );
}

#[test]
fn the_packaged_unit_passes_systemd_analyze_verify() {
    // The unit as packaged, pointing at the binary this test run built (verify checks that
    // ExecStart= can be executed). Man pages are not installed here, so Documentation= is not
    // looked up.
    let unit = std::fs::read_to_string(root().join("crates/farmgate/debian/farmgate@.service"))
        .unwrap()
        .replace("/usr/bin/farmgate", env!("CARGO_BIN_EXE_farmgate"));
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    assert!(unit.contains("StateDirectory=farmgate"), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("farmgate@.service");
    std::fs::write(&path, unit).unwrap();
    let verified = run(
        "systemd-analyze",
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
    );
    assert!(verified.status.success(), "{}", text(&verified));
    assert_eq!(text(&verified).trim(), "", "verify has nothing to say");
}

#[test]
fn bash_parses_the_bash_completions() {
    let script = crate::cli::farmgate(&["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success(), "{}", text(&script));
    let completions = String::from_utf8(script.stdout).unwrap();
    for subcommand in ["run", "check", "completions", "man"] {
        assert!(completions.contains(subcommand), "{completions}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("farmgate.bash");
    std::fs::write(&file, completions).unwrap();
    let parsed = run("bash", Command::new("bash").arg("-n").arg(&file));
    assert!(parsed.status.success(), "{}", text(&parsed));
}
