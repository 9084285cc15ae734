//! WhatsApp's media encryption, as the stand-in's phones and media servers apply it.
//!
//! A file is never stored in the clear on WhatsApp's servers: each message carries a
//! random 32-byte `mediaKey`, expanded with HKDF-SHA256 (no salt, an info string per
//! kind of media) into 112 bytes: IV (16), AES-256-CBC key (32), MAC key (32) and a
//! ref key. The server keeps `AES-CBC(file) ‖ HMAC-SHA256(iv ‖ ciphertext)[..10]` under
//! a `directPath`; the message says `filehash` (SHA-256 of the file, base64) and
//! `encFilehash` (SHA-256 of what the server keeps). The page downloads and decrypts
//! it itself (`WAWebDownloadManager.downloadAndMaybeDecrypt`), as it encrypts before
//! uploading (`WAWebMediaMmsV4Upload.uploadMedia`).

use aes::Aes256;
use base64::Engine;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Bytes of HMAC kept after the ciphertext.
const MAC_LEN: usize = 10;

/// The HKDF info string for a message type.
pub fn key_info(msg_type: &str) -> &'static [u8] {
    match msg_type {
        "video" | "gif" => b"WhatsApp Video Keys",
        "audio" | "ptt" => b"WhatsApp Audio Keys",
        "document" => b"WhatsApp Document Keys",
        // Images and stickers.
        _ => b"WhatsApp Image Keys",
    }
}

struct Keys {
    iv: [u8; 16],
    cipher: [u8; 32],
    mac: [u8; 32],
}

fn expand(media_key: &[u8], msg_type: &str) -> Keys {
    let mut okm = [0u8; 112];
    Hkdf::<Sha256>::new(None, media_key)
        .expand(key_info(msg_type), &mut okm)
        .expect("112 bytes is a valid HKDF-SHA256 length");
    let mut k = Keys {
        iv: [0; 16],
        cipher: [0; 32],
        mac: [0; 32],
    };
    k.iv.copy_from_slice(&okm[..16]);
    k.cipher.copy_from_slice(&okm[16..48]);
    k.mac.copy_from_slice(&okm[48..80]);
    k
}

fn mac(key: &[u8; 32], iv: &[u8], ciphertext: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    m.update(iv);
    m.update(ciphertext);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// A file as a phone uploads it.
#[derive(Debug)]
pub struct Sealed {
    /// What the media server keeps (ciphertext ‖ MAC).
    pub file: Vec<u8>,
    /// base64.
    pub media_key: String,
    /// base64 SHA-256 of the plaintext.
    pub filehash: String,
    /// base64 SHA-256 of `file`.
    pub enc_filehash: String,
}

/// Encrypts `plain` for a message of `msg_type` under a fresh media key.
pub fn seal(msg_type: &str, plain: &[u8]) -> Sealed {
    let mut media_key = [0u8; 32];
    getrandom::fill(&mut media_key).expect("system randomness");
    let k = expand(&media_key, msg_type);
    let mut file = cbc::Encryptor::<Aes256>::new(&k.cipher.into(), &k.iv.into())
        .encrypt_padded_vec::<Pkcs7>(plain);
    let tag = mac(&k.mac, &k.iv, &file);
    file.extend_from_slice(&tag);
    Sealed {
        enc_filehash: B64.encode(Sha256::digest(&file)),
        filehash: B64.encode(Sha256::digest(plain)),
        media_key: B64.encode(media_key),
        file,
    }
}

/// Decrypts what a page uploaded, checking its MAC and hashes.
pub fn open(
    msg_type: &str,
    media_key_b64: &str,
    file: &[u8],
    enc_filehash: &str,
    filehash: &str,
) -> Result<Vec<u8>, String> {
    let media_key = B64
        .decode(media_key_b64)
        .map_err(|e| format!("mediaKey is not base64: {e}"))?;
    if media_key.len() != 32 {
        return Err(format!("mediaKey has {} bytes, not 32", media_key.len()));
    }
    if B64.encode(Sha256::digest(file)) != enc_filehash {
        return Err("encFilehash does not match the uploaded file".into());
    }
    if file.len() < MAC_LEN + 16 {
        return Err("the uploaded file is too short".into());
    }
    let (ciphertext, tag) = file.split_at(file.len() - MAC_LEN);
    let k = expand(&media_key, msg_type);
    if mac(&k.mac, &k.iv, ciphertext) != tag {
        return Err(format!(
            "media MAC mismatch (wrong key or keys for another type than `{msg_type}`)"
        ));
    }
    let plain = cbc::Decryptor::<Aes256>::new(&k.cipher.into(), &k.iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| "bad padding".to_owned())?;
    if B64.encode(Sha256::digest(&plain)) != filehash {
        return Err("filehash does not match the decrypted file".into());
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_media_opens_with_its_key_and_type_only() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let s = seal("ptt", &plain);
        assert_eq!(s.file.len(), (plain.len() / 16 + 1) * 16 + MAC_LEN);
        let back = open("audio", &s.media_key, &s.file, &s.enc_filehash, &s.filehash).unwrap();
        assert_eq!(back, plain);
        let wrong = open("image", &s.media_key, &s.file, &s.enc_filehash, &s.filehash);
        assert!(wrong.unwrap_err().contains("MAC"));
        let mut tampered = s.file.clone();
        tampered[3] ^= 1;
        let enc = B64.encode(Sha256::digest(&tampered));
        assert!(open("audio", &s.media_key, &tampered, &enc, &s.filehash).is_err());
    }
}
