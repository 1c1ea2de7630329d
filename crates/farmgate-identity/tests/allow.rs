//! Allow rules print back to text that parses to the same rule, and no text makes the parser
//! panic.

use farmgate_identity::AllowRule;
use proptest::prelude::*;

/// Entries shaped like what operators write, in every kind, with case, trailing dots and
/// wildcards mixed in: most parse, some are refused, none may panic.
fn entry() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?";
    let dns = (
        prop::option::of(Just("*.")),
        prop::collection::vec(label, 1..5),
        prop::option::of(Just(".")),
    )
        .prop_map(|(wild, labels, dot)| {
            format!(
                "dns:{}{}{}",
                wild.unwrap_or(""),
                labels.join("."),
                dot.unwrap_or("")
            )
        });
    let uri = "uri:(spiffe|https)://[a-z0-9.-]{1,20}(/[ -~]{0,20})?";
    let cn = "cn:[ -~\u{a0}-\u{3ff}]{0,30}";
    let pin = prop::array::uniform32(any::<u8>()).prop_map(|bytes| {
        use base64::Engine as _;
        format!(
            "spki-sha256:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    });
    prop_oneof![
        dns,
        uri.prop_map(String::from),
        cn.prop_map(String::from),
        pin
    ]
}

proptest! {
    #[test]
    fn parse_print_parse_is_identity(text in entry()) {
        if let Ok(rule) = text.parse::<AllowRule>() {
            let printed = rule.to_string();
            let again: AllowRule = printed.parse().map_err(|e| {
                TestCaseError::fail(format!("{text:?} printed as {printed:?}, which fails: {e}"))
            })?;
            prop_assert_eq!(&again, &rule);
            prop_assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_round_trips_when_accepted(text in "\\PC{0,40}") {
        if let Ok(rule) = text.parse::<AllowRule>() {
            prop_assert_eq!(rule.to_string().parse::<AllowRule>().ok(), Some(rule));
        }
    }
}
