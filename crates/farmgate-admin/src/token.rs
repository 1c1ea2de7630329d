//! The admin endpoint's bearer token: read from `[admin] token_file`, compared in constant time.

use std::fmt;
use std::path::Path;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};

/// The bearer token that guards the admin endpoint. Only its SHA-256 digest is kept: a
/// presented token is hashed and the two digests compared in constant time, so neither the
/// token's content nor its length shows in how long a refusal takes.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file cannot be read (or is not UTF-8 text).
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// Nothing but whitespace.
    #[error(
        "it is empty: write the bearer token into it, e.g. `openssl rand -hex 32 > admin.token`"
    )]
    Empty,
    /// Whitespace or control characters inside the token.
    #[error(
        "the token holds whitespace or control characters: a token is one word of visible \
         characters, e.g. `openssl rand -hex 32`"
    )]
    NotOneWord,
}

impl Token {
    /// The token in the file at `path`: its content without surrounding whitespace (the
    /// trailing newline an editor or `echo` adds).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        let text = std::fs::read_to_string(path).map_err(TokenError::Read)?;
        Token::new(&text)
    }

    /// The token `text` holds, without surrounding whitespace.
    pub fn new(text: &str) -> Result<Token, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        // A header value cannot carry it otherwise (and a bearer token never holds a space).
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::NotOneWord);
        }
        Ok(Token {
            digest: sha256(token.as_bytes()),
        })
    }

    /// Whether `presented` (the credentials of an `Authorization: Bearer` header) is this
    /// token, in time that reveals nothing of this token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        verify_slices_are_equal(&self.digest, &sha256(presented)).is_ok()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn surrounding_whitespace_is_not_part_of_the_token() {
        let token = Token::new("  s3cret-token\n").unwrap();
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-token\n"));
        assert!(!token.matches(b"s3cret-toke"));
        assert!(!token.matches(b""));
    }

    #[test]
    fn an_empty_or_multi_word_token_is_refused() {
        assert!(matches!(Token::new(""), Err(TokenError::Empty)));
        assert!(matches!(Token::new(" \n\t\n"), Err(TokenError::Empty)));
        assert!(matches!(
            Token::new("two words"),
            Err(TokenError::NotOneWord)
        ));
        assert!(matches!(
            Token::new("line\nline"),
            Err(TokenError::NotOneWord)
        ));
    }

    #[test]
    fn debug_shows_nothing_of_the_token() {
        let token = Token::new("s3cret").unwrap();
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
