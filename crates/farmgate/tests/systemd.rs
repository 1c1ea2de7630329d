//! `farmgate run` under systemd's `Type=notify`: the test plays systemd, listening on a Unix
//! datagram socket named by `NOTIFY_SOCKET`, and reads what the process says as it starts,
//! reloads (on SIGHUP, and on a changed file), fails a reload and stops.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::cli::{Running, farmgate};

/// How long to wait for a notification before failing (the wait ends when it arrives).
const PATIENCE: Duration = Duration::from_secs(60);

/// The notifications the process sends, one datagram each.
struct Notifications(UnixDatagram);

impl Notifications {
    /// The next notification that is not a watchdog keep-alive; the keep-alives seen on the
    /// way are counted in `watchdog`.
    fn next(&self, watchdog: &mut usize) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .0
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no notification within {PATIENCE:?}: {e}"));
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message == "WATCHDOG=1\n" {
                *watchdog += 1;
                continue;
            }
            return message;
        }
    }
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let systemd = UnixDatagram::bind(&socket).unwrap();
    systemd.set_read_timeout(Some(PATIENCE)).unwrap();
    let systemd = Notifications(systemd);
    let config = dir.path().join("farmgate.toml");
    let text = "[[listener]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\n[[listener.route]]\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:9\"]\n";
    std::fs::write(&config, text).unwrap();

    let mut command = farmgate(&["run", "-c", config.to_str().unwrap()]);
    command
        .env("NO_COLOR", "1")
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut process = Running::start("farmgate", command);
    let mut watchdog = 0;

    let ready = systemd.next(&mut watchdog);
    assert_eq!(ready, "READY=1\nSTATUS=serving on 1 listener(s)\n");

    process.signal("HUP");
    let reloading = systemd.next(&mut watchdog);
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec > 0);
    assert_eq!(
        systemd.next(&mut watchdog),
        "READY=1\nSTATUS=serving (reloaded)\n"
    );

    // A broken file: the watcher reloads it on its own, and the reload fails.
    std::fs::write(&config, "[[listener]]\nname = 1\n").unwrap();
    let reloading = systemd.next(&mut watchdog);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let failed = systemd.next(&mut watchdog);
    assert!(
        failed.starts_with(
            "READY=1\nSTATUS=reload failed, still serving the previous configuration: "
        ) && failed.contains("farmgate.toml:2"),
        "{failed:?}"
    );
    assert_eq!(failed.lines().count(), 2, "STATUS= on one line: {failed:?}");

    process.signal("TERM");
    assert_eq!(systemd.next(&mut watchdog), "STOPPING=1\nSTATUS=draining\n");
    process.wait_for("stopped");
    assert_eq!(process.wait().code(), Some(0));
    assert!(
        watchdog >= 1,
        "WATCHDOG=1 is sent as soon as the service is ready"
    );
}
