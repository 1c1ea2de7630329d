//! The dated facts about public CAs that farmgate's warnings rest on, in one table.
//!
//! Every warning that depends on what public CAs do (`farmgate check`, `farmgate inspect`) cites
//! rows of [`FACTS`] by [`FactId`] instead of repeating dates or profile names, so when the
//! WebPKI moves again there is one place to change.

use std::fmt;

use serde::Serialize;
use time::{Date, Month};

/// Names a row of [`FACTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FactId {
    /// Let's Encrypt's default profile stopped including clientAuth.
    LetsEncryptDefaultDropsClientAuth,
    /// Let's Encrypt issued its last certificates with clientAuth.
    LetsEncryptLastClientAuth,
    /// Chrome's root program requires hierarchies dedicated to TLS server authentication.
    ChromeServerAuthOnly,
    /// Let's Encrypt's `tlsserver` profile leaves out the subject common name.
    LetsEncryptTlsServerNoCn,
    /// Let's Encrypt's `shortlived` profile leaves out the subject common name.
    LetsEncryptShortLivedNoCn,
    /// CA/Browser Forum ballot SC-081: public TLS certificates live at most 47 days.
    Sc081FortySevenDays,
}

/// One dated change in what public CAs issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// Which row this is.
    pub id: FactId,
    /// Who made the change: a CA, a root program or the CA/Browser Forum.
    pub ca: &'static str,
    /// The issuance profile or policy concerned, if any.
    pub profile: Option<&'static str>,
    /// When it took effect.
    #[serde(serialize_with = "iso_date")]
    pub date: Date,
    /// What changed, as a sentence fragment ("dropped ...").
    pub change: &'static str,
    /// Where it is published.
    pub source: &'static str,
}

/// Every fact farmgate's warnings cite, oldest first.
pub const FACTS: &[Fact] = &[
    Fact {
        id: FactId::LetsEncryptDefaultDropsClientAuth,
        ca: "Let's Encrypt",
        profile: Some("classic"),
        date: date(2026, Month::February, 11),
        change: "the default profile no longer includes the TLS Client Authentication EKU (clientAuth)",
        source: "https://letsencrypt.org/2025/05/14/ending-tls-client-authentication/",
    },
    Fact {
        id: FactId::ChromeServerAuthOnly,
        ca: "Chrome Root Program",
        profile: Some("Root Program Policy 1.6 and later"),
        date: date(2026, Month::June, 15),
        change: "hierarchies in the Chrome Root Store must be dedicated to TLS server authentication, \
                 so public CAs issue serverAuth-only intermediates and leaves",
        source: "https://g.co/chrome/root-policy",
    },
    Fact {
        id: FactId::LetsEncryptLastClientAuth,
        ca: "Let's Encrypt",
        profile: Some("tlsclient"),
        date: date(2026, Month::July, 8),
        change: "the last profile with clientAuth was withdrawn; its 90-day certificates had all \
                 expired by October 2026",
        source: "https://letsencrypt.org/docs/profiles/",
    },
    Fact {
        id: FactId::LetsEncryptTlsServerNoCn,
        ca: "Let's Encrypt",
        profile: Some("tlsserver"),
        date: date(2025, Month::January, 9),
        change: "45-day certificates with no subject common name (names only in SANs)",
        source: "https://letsencrypt.org/docs/profiles/",
    },
    Fact {
        id: FactId::LetsEncryptShortLivedNoCn,
        ca: "Let's Encrypt",
        profile: Some("shortlived"),
        date: date(2025, Month::February, 20),
        change: "160-hour certificates with no subject common name (names only in SANs)",
        source: "https://letsencrypt.org/docs/profiles/",
    },
    Fact {
        id: FactId::Sc081FortySevenDays,
        ca: "CA/Browser Forum",
        profile: Some("ballot SC-081v3"),
        date: date(2029, Month::March, 15),
        change: "public TLS certificates may live at most 47 days (200 days from 2026-03-15, \
                 100 days from 2027-03-15)",
        source: "https://cabforum.org/2025/04/11/ballot-sc081v3-introduce-schedule-of-reducing-validity-and-data-reuse-periods/",
    },
];

/// The row `id` names.
pub fn fact(id: FactId) -> &'static Fact {
    // Every FactId has exactly one row; the test `every_fact_id_has_one_row` keeps it so.
    FACTS.iter().find(|fact| fact.id == id).unwrap_or(&FACTS[0])
}

/// `Let's Encrypt "classic", 2026-02-11: the default profile ... <https://...>`
impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ca)?;
        if let Some(profile) = self.profile {
            write!(f, " {profile:?}")?;
        }
        write!(f, ", {}: {} <{}>", self.date, self.change, self.source)
    }
}

/// A calendar date, checked when the table is compiled.
const fn date(year: i32, month: Month, day: u8) -> Date {
    match Date::from_calendar_date(year, month, day) {
        Ok(date) => date,
        Err(_) => panic!("FACTS holds an impossible date"),
    }
}

fn iso_date<S: serde::Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FactId; 6] = [
        FactId::LetsEncryptDefaultDropsClientAuth,
        FactId::LetsEncryptLastClientAuth,
        FactId::ChromeServerAuthOnly,
        FactId::LetsEncryptTlsServerNoCn,
        FactId::LetsEncryptShortLivedNoCn,
        FactId::Sc081FortySevenDays,
    ];

    #[test]
    fn every_fact_id_has_one_row() {
        for id in ALL {
            assert_eq!(FACTS.iter().filter(|f| f.id == id).count(), 1, "{id:?}");
            assert_eq!(fact(id).id, id);
        }
        assert_eq!(FACTS.len(), ALL.len());
    }

    #[test]
    fn dates_are_the_published_ones() {
        let at = |id| fact(id).date.to_string();
        assert_eq!(at(FactId::LetsEncryptDefaultDropsClientAuth), "2026-02-11");
        assert_eq!(at(FactId::LetsEncryptLastClientAuth), "2026-07-08");
        assert_eq!(at(FactId::Sc081FortySevenDays), "2029-03-15");
    }

    #[test]
    fn a_fact_reads_as_a_citation() {
        let text = fact(FactId::LetsEncryptDefaultDropsClientAuth).to_string();
        assert!(
            text.starts_with("Let's Encrypt \"classic\", 2026-02-11: the default profile"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "<https://letsencrypt.org/2025/05/14/ending-tls-client-authentication/>"
            )
        );
        for fact in FACTS {
            assert!(fact.source.starts_with("https://"), "{fact}");
        }
    }
}
