//! Random bytes and prefixed bearer tokens.
//!
//! Tokens look like `sbk_<43 base64url chars>`: a short prefix says what the token is
//! (so a leaked one is recognisable and greppable), then 256 random bits.

use crate::{Error, Secret};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills a fresh buffer of `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
    Ok(buf)
}

/// A new token: `prefix` followed by 32 random bytes in unpadded base64url.
pub fn random_token(prefix: &str) -> Result<Secret<String>, Error> {
    let mut bytes = random_bytes(32)?;
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_distinct() {
        let a = random_token("sbk_").unwrap();
        let b = random_token("sbk_").unwrap();
        assert!(a.expose().starts_with("sbk_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_ne!(a.expose(), b.expose());
    }
}
