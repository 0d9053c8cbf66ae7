//! The symmetric ciphers SSH key files use, by their SSH names, decrypting in place.

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit};

use super::super::key::MaterialError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Ctr,
    Cbc,
    Gcm,
}

/// A cipher named in a key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cipher {
    pub name: &'static str,
    pub key_len: usize,
    pub iv_len: usize,
    pub block: usize,
    /// Bytes of authentication tag that follow the ciphertext (GCM).
    pub tag_len: usize,
    mode: Mode,
    des: bool,
}

const fn c(name: &'static str, key_len: usize, iv_len: usize, block: usize, tag_len: usize, mode: Mode, des: bool) -> Cipher {
    Cipher { name, key_len, iv_len, block, tag_len, mode, des }
}

const CIPHERS: &[Cipher] = &[
    c("none", 0, 0, 8, 0, Mode::None, false),
    c("aes128-ctr", 16, 16, 16, 0, Mode::Ctr, false),
    c("aes192-ctr", 24, 16, 16, 0, Mode::Ctr, false),
    c("aes256-ctr", 32, 16, 16, 0, Mode::Ctr, false),
    c("aes128-cbc", 16, 16, 16, 0, Mode::Cbc, false),
    c("aes192-cbc", 24, 16, 16, 0, Mode::Cbc, false),
    c("aes256-cbc", 32, 16, 16, 0, Mode::Cbc, false),
    c("aes128-gcm@openssh.com", 16, 12, 16, 16, Mode::Gcm, false),
    c("aes256-gcm@openssh.com", 32, 12, 16, 16, Mode::Gcm, false),
    c("3des-cbc", 24, 8, 8, 0, Mode::Cbc, true),
];

impl Cipher {
    /// Looks up an SSH cipher name; unknown ones are `Unsupported` with what to do instead.
    pub fn by_name(name: &str) -> Result<Cipher, MaterialError> {
        CIPHERS.iter().copied().find(|c| c.name == name).ok_or_else(|| {
            MaterialError::Unsupported(format!(
                "the key is encrypted with cipher {:?}; re-encrypt it with aes256-ctr (`ssh-keygen -p -Z aes256-ctr -f KEY`) and import again",
                name.chars().take(64).collect::<String>()
            ))
        })
    }

    pub fn is_none(&self) -> bool {
        self.mode == Mode::None
    }

    /// Decrypts `buf` in place. `buf.len()` must be a multiple of the block size (checked by
    /// the caller, reported as Malformed); a GCM tag that does not verify is `WrongPassword`.
    pub fn decrypt(&self, key: &[u8], iv: &[u8], buf: &mut [u8], tag: &[u8]) -> Result<(), MaterialError> {
        let internal = |_| MaterialError::Malformed("cipher parameters of the wrong size".into());
        if buf.len() % self.block != 0 {
            return Err(MaterialError::Malformed(format!("encrypted data is not a multiple of the {} block size", self.name)));
        }
        match (self.mode, self.des, self.key_len) {
            (Mode::None, _, _) => Ok(()),
            (Mode::Ctr, _, 16) => ctr::Ctr128BE::<Aes128>::new_from_slices(key, iv).map_err(internal).map(|mut c| c.apply_keystream(buf)),
            (Mode::Ctr, _, 24) => ctr::Ctr128BE::<Aes192>::new_from_slices(key, iv).map_err(internal).map(|mut c| c.apply_keystream(buf)),
            (Mode::Ctr, _, _) => ctr::Ctr128BE::<Aes256>::new_from_slices(key, iv).map_err(internal).map(|mut c| c.apply_keystream(buf)),
            (Mode::Cbc, true, _) => cbc_decrypt::<des::TdesEde3>(key, iv, buf),
            (Mode::Cbc, _, 16) => cbc_decrypt::<Aes128>(key, iv, buf),
            (Mode::Cbc, _, 24) => cbc_decrypt::<Aes192>(key, iv, buf),
            (Mode::Cbc, _, _) => cbc_decrypt::<Aes256>(key, iv, buf),
            (Mode::Gcm, _, len) => {
                if tag.len() != 16 || iv.len() != 12 {
                    return Err(MaterialError::Malformed("GCM tag or nonce of the wrong size".into()));
                }
                let ok = if len == 16 {
                    Aes128Gcm::new_from_slice(key).map_err(internal)?.decrypt_in_place_detached(iv.into(), b"", buf, tag.into())
                } else {
                    Aes256Gcm::new_from_slice(key).map_err(internal)?.decrypt_in_place_detached(iv.into(), b"", buf, tag.into())
                };
                ok.map_err(|_| MaterialError::WrongPassword)
            }
        }
    }
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), MaterialError>
where
    C: aes::cipher::BlockDecrypt + aes::cipher::BlockCipher + aes::cipher::KeyInit,
{
    let dec = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| MaterialError::Malformed("cipher parameters of the wrong size".into()))?;
    dec.decrypt_padded_mut::<NoPadding>(buf)
        .map(|_| ())
        .map_err(|_| MaterialError::Malformed("encrypted data is not a whole number of blocks".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Cipher::by_name("none").unwrap().is_none());
        assert_eq!(Cipher::by_name("aes256-gcm@openssh.com").unwrap().tag_len, 16);
        assert!(matches!(Cipher::by_name("chacha20-poly1305@openssh.com"), Err(MaterialError::Unsupported(m)) if m.contains("aes256-ctr")));
    }

    #[test]
    fn nist_sp800_38a_vectors() {
        // F.5.5 CTR-AES256.Decrypt and F.2.6 CBC-AES256.Decrypt, first block.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").unwrap();
        let mut b = hex::decode("601ec313775789a5b7a7f504bbf3d228").unwrap();
        let iv = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap();
        Cipher::by_name("aes256-ctr").unwrap().decrypt(&key, &iv, &mut b, &[]).unwrap();
        assert_eq!(hex::encode(&b), "6bc1bee22e409f96e93d7e117393172a");
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let mut b = hex::decode("f58c4c04d6e5f1ba779eabfb5f7bfbd6").unwrap();
        Cipher::by_name("aes256-cbc").unwrap().decrypt(&key, &iv, &mut b, &[]).unwrap();
        assert_eq!(hex::encode(&b), "6bc1bee22e409f96e93d7e117393172a");
        let mut odd = vec![0u8; 15];
        assert!(Cipher::by_name("aes256-cbc").unwrap().decrypt(&key, &iv, &mut odd, &[]).is_err());
    }

    #[test]
    fn gcm_bad_tag_is_wrong_password() {
        let mut b = vec![0u8; 16];
        let r = Cipher::by_name("aes256-gcm@openssh.com").unwrap().decrypt(&[0; 32], &[0; 12], &mut b, &[0; 16]);
        assert_eq!(r, Err(MaterialError::WrongPassword));
    }
}
