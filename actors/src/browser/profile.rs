//! A session's browser profile at rest: the parts of a Chromium profile that hold a
//! site's login (IndexedDB and Local Storage), packed as a gzip-compressed tar so the
//! channel can seal it into the database when the session stops, and unpacked again
//! before the session's browser next starts. The profile directory itself is then
//! removed, so a stopped session leaves no login in clear on disk (what
//! whatsapp-web.js's RemoteAuth keeps, minus its plaintext zip).

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io;
use std::path::Path;

/// What is kept: the storage a web login lives in, and the channel's own marker files.
const KEPT: &[&str] = &["Default/IndexedDB", "Default/Local Storage"];

/// Whether `bytes` is a packed profile (gzip) rather than something else.
pub fn is_packed(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Packs the login-bearing parts of `profile` and the top-level `markers` files.
pub fn pack(profile: &Path, markers: &[&str]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    tar.follow_symlinks(false);
    for rel in KEPT {
        let dir = profile.join(rel);
        if dir.is_dir() {
            tar.append_dir_all(rel, &dir)?;
        }
    }
    for name in markers {
        let file = profile.join(name);
        if file.is_file() {
            tar.append_path_with_name(&file, name)?;
        }
    }
    tar.into_inner()?.finish()
}

/// Unpacks a [`pack`]ed profile into `profile` (created if missing). Entries that
/// would land outside it are refused by `tar` itself.
pub fn unpack(bytes: &[u8], profile: &Path) -> io::Result<()> {
    std::fs::create_dir_all(profile)?;
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    archive.set_overwrite(true);
    archive.unpack(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_without_what_it_does_not_need() {
        let dir = std::env::temp_dir().join(format!("sb-profile-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("Default/IndexedDB/https_x_0.indexeddb.leveldb")).unwrap();
        std::fs::create_dir_all(src.join("Default/Local Storage/leveldb")).unwrap();
        std::fs::create_dir_all(src.join("Default/Cache")).unwrap();
        std::fs::write(
            src.join("Default/IndexedDB/https_x_0.indexeddb.leveldb/000003.log"),
            b"keys",
        )
        .unwrap();
        std::fs::write(
            src.join("Default/Local Storage/leveldb/CURRENT"),
            b"MANIFEST-1",
        )
        .unwrap();
        std::fs::write(src.join("Default/Cache/big"), vec![0u8; 4096]).unwrap();
        std::fs::write(src.join("paired"), b"yes").unwrap();
        let packed = pack(&src, &["paired", "absent"]).unwrap();
        assert!(is_packed(&packed));
        assert!(!is_packed(b"{\"localStorage\":{}}"));
        let dst = dir.join("dst");
        unpack(&packed, &dst).unwrap();
        assert_eq!(
            std::fs::read(dst.join("Default/IndexedDB/https_x_0.indexeddb.leveldb/000003.log"))
                .unwrap(),
            b"keys"
        );
        assert!(dst.join("Default/Local Storage/leveldb/CURRENT").is_file());
        assert!(dst.join("paired").is_file());
        assert!(!dst.join("Default/Cache").exists(), "caches are not kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
