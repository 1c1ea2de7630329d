//! `farmgate man DIR` and `farmgate completions SHELL`: what packages install.

use crate::cli::farmgate;

#[test]
fn man_writes_a_page_for_the_command_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = farmgate(&["man", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "farmgate.1",
        "farmgate-run.1",
        "farmgate-check.1",
        "farmgate-ca-issue.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie \\n(.g .ds Aq"),
            "{page} is roff: {text}"
        );
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(listed.contains(page), "{page} is named: {listed}");
    }
    let main = std::fs::read_to_string(dir.path().join("farmgate.1")).unwrap();
    assert!(main.contains("completions"), "{main}");
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef farmgate"),
        ("fish", "complete -c farmgate"),
    ] {
        let out = farmgate(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
    }
    let out = farmgate(&["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
}
