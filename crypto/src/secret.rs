//! [`Secret`]: holds key material so that it cannot leak by accident.
//!
//! `Debug` and `Display` print `[redacted]`, the value is zeroized when dropped, and
//! the only way to read it is the explicit [`Secret::expose`]. Config structs, the
//! admin token, API keys in flight and the master key all live in one.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A value that must never appear in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Reads the secret. Every call site is a place the value can escape: keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> ZeroizeOnDrop for Secret<T> {}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("hunter2-very-secret"));
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    [redacted],\n)");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
