//! What a probe of a gate found: refused with an alert, or answered.

use farmgate_testkit::client::Probe;
use rustls::AlertDescription;

#[track_caller]
pub fn assert_refused(probe: &Probe, alert: AlertDescription) {
    match probe {
        Probe::Refused(rustls::Error::AlertReceived(got)) => assert_eq!(*got, alert),
        other => panic!("expected the handshake to be refused with {alert:?}, got {other:?}"),
    }
}

/// The answer, which must be a `200`.
#[track_caller]
pub fn assert_answered(probe: &Probe) -> String {
    match probe {
        Probe::Answered(bytes) => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            text
        }
        other => panic!("expected an HTTP answer, got {other:?}"),
    }
}
