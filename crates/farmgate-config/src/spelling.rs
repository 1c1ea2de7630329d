//! Enums written as one word in the configuration (`balance`, `eku`, `log.format`, …).
//!
//! Each such enum is declared through [`spelled!`], whose one table gives the variants, their
//! spellings, `as_str`, `parse` and the `expected …` text of the error for an unknown word, so
//! a new variant cannot be added without its spelling, and no other code spells it again.

use std::fmt;

/// Declares a field-less enum together with its spelling table. Each variant is written
/// `Variant = "word"`, optionally followed by a note in parentheses that the "expected …" text
/// shows after the word (`"client_auth" (default)`); `what` names the setting in errors
/// (`unknown log format "yaml"`) and `quoted` says whether the "expected …" text quotes the
/// words. The enum gets:
/// - `ALL`: every value, in table order (the order messages list them);
/// - `as_str()`: its spelling; `parse(word)`: the value spelled `word`, if any;
/// - `expected()`: the [`Expected`] text for an unknown word;
/// - `Display`, printing the spelling, and [`Spelled`], for code generic over such enums.
macro_rules! spelled {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident (what: $what:literal, quoted: $quoted:literal) {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $word:literal $(($note:literal))?
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order messages list them.
            #[allow(dead_code)] // a crate-private enum may list its values in tests only
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The configuration spelling.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The value spelled `word`; `None` for any other word.
            pub fn parse(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// What an error for an unknown word says is expected instead.
            pub fn expected() -> $crate::spelling::Expected {
                $crate::spelling::Expected::new(
                    &[$(($word, spelled!(@note $($note)?))),+],
                    $quoted,
                )
            }
        }

        impl $crate::spelling::Spelled for $name {
            const WHAT: &'static str = $what;

            fn parse(word: &str) -> Option<Self> {
                $name::parse(word)
            }

            fn expected() -> $crate::spelling::Expected {
                $name::expected()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    (@note $note:literal) => { $note };
    (@note) => { "" };
}

pub(crate) use spelled;

/// An enum declared with [`spelled!`]: what the builder needs to read one from a word.
pub(crate) trait Spelled: Sized {
    /// The setting, as errors name it: `log format`, `balance`, `eku`, `challenge`.
    const WHAT: &'static str;
    /// The value spelled `word`, if any.
    fn parse(word: &str) -> Option<Self>;
    /// The words, for an error.
    fn expected() -> Expected;
}

/// The words a key accepts, as an error for an unknown word lists them: `"text" or "json"`,
/// `round_robin, least_requests, p2c_ewma or hash`, `"client_auth" (default) or …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Each word with its note (empty for none).
    words: &'static [(&'static str, &'static str)],
    quoted: bool,
}

impl Expected {
    /// `words` (each with a note, possibly empty), quoted in messages or not.
    pub(crate) const fn new(words: &'static [(&'static str, &'static str)], quoted: bool) -> Self {
        Expected { words, quoted }
    }

    /// The words themselves, in order.
    pub fn words(&self) -> impl Iterator<Item = &'static str> {
        self.words.iter().map(|(word, _)| *word)
    }

    /// The words as alternatives in a value: `"a" | "b" | "c"`.
    pub fn alternatives(self) -> impl fmt::Display {
        Alternatives(self)
    }

    fn write_word(&self, f: &mut fmt::Formatter<'_>, (word, note): (&str, &str)) -> fmt::Result {
        if self.quoted {
            write!(f, "\"{word}\"")?;
        } else {
            f.write_str(word)?;
        }
        if !note.is_empty() {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.words.len().saturating_sub(1);
        for (i, &word) in self.words.iter().enumerate() {
            match i {
                0 => {}
                _ if i == last => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            self.write_word(f, word)?;
        }
        Ok(())
    }
}

struct Alternatives(Expected);

impl fmt::Display for Alternatives {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &word) in self.0.words.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            self.0.write_word(f, word)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    spelled! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Fruit (what: "fruit", quoted: true) {
            Apple = "apple" ("default"),
            Pear = "pear",
            Quince = "quince",
        }
    }

    spelled! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Bare (what: "bare", quoted: false) {
            One = "one",
        }
    }

    /// Every value of each configuration enum parses back from its spelling, and its
    /// spellings are the words its error lists.
    #[test]
    fn configuration_enums_round_trip() {
        macro_rules! round_trip {
            ($($ty:ty),+) => {$(
                for value in <$ty>::ALL {
                    assert_eq!(<$ty>::parse(value.as_str()), Some(*value));
                    assert_eq!(value.to_string(), value.as_str());
                }
                let words: Vec<&str> = <$ty>::ALL.iter().map(|v| v.as_str()).collect();
                assert_eq!(<$ty>::expected().words().collect::<Vec<_>>(), words);
                assert_eq!(<$ty>::parse("nonsense"), None);
            )+};
        }
        round_trip!(
            crate::LogFormat,
            crate::EkuPolicy,
            crate::Challenge,
            crate::upstream::BalanceKind
        );
        assert_eq!(crate::LogFormat::default(), crate::LogFormat::Text);
    }

    #[test]
    fn every_spelling_round_trips() {
        for fruit in Fruit::ALL {
            assert_eq!(Fruit::parse(fruit.as_str()), Some(*fruit));
            assert_eq!(fruit.to_string(), fruit.as_str());
        }
        assert_eq!(Fruit::parse("Apple"), None);
        assert_eq!(Fruit::parse(""), None);
    }

    #[test]
    fn expected_lists_words_with_notes() {
        assert_eq!(
            Fruit::expected().to_string(),
            "\"apple\" (default), \"pear\" or \"quince\""
        );
        assert_eq!(
            Fruit::expected().alternatives().to_string(),
            "\"apple\" (default) | \"pear\" | \"quince\""
        );
        assert_eq!(
            Fruit::expected().words().collect::<Vec<_>>(),
            ["apple", "pear", "quince"]
        );
        assert_eq!(Bare::expected().to_string(), "one");
    }
}
