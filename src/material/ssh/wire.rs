//! The SSH wire encoding (RFC 4251 §5): `uint32`, `string` and `mpint`, read from untrusted
//! bytes with every length checked, and written for public-key blobs.

use super::super::key::MaterialError;

/// A bounded reader over a byte slice. Every read that would run past the end fails with
/// `MaterialError::Malformed` naming `what` was being read; nothing panics.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

fn truncated(what: &str) -> MaterialError {
    MaterialError::Malformed(format!("truncated while reading {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], MaterialError> {
        if n > self.remaining() {
            return Err(truncated(what));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, MaterialError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `string`: uint32 length, then that many bytes.
    pub fn string(&mut self, what: &str) -> Result<&'a [u8], MaterialError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }

    /// A `string` that must be UTF-8 text (algorithm and cipher names).
    pub fn text(&mut self, what: &str) -> Result<&'a str, MaterialError> {
        let b = self.string(what)?;
        std::str::from_utf8(b).map_err(|_| MaterialError::Malformed(format!("{what} is not text")))
    }

    /// An `mpint` that must be non-negative: returns the magnitude, big-endian without
    /// leading zeros (zero is the empty slice). Non-minimal encodings (extra 0x00 bytes) are
    /// accepted, as ssh-keygen accepts them.
    pub fn mpint(&mut self, what: &str) -> Result<&'a [u8], MaterialError> {
        let b = self.string(what)?;
        if b.first().is_some_and(|&x| x & 0x80 != 0) {
            return Err(MaterialError::Malformed(format!("{what} is a negative number")));
        }
        Ok(strip_zeros(b))
    }
}

/// `b` without leading zero bytes (zero becomes the empty slice).
pub fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// Appends SSH wire values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn string(&mut self, b: &[u8]) -> &mut Self {
        // Lengths here come from our own key material, far below 4 GiB.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(b);
        self
    }

    /// A non-negative `mpint` from a big-endian magnitude: minimal, with a 0x00 prefix when
    /// the top bit is set.
    pub fn mpint(&mut self, magnitude: &[u8]) -> &mut Self {
        let m = strip_zeros(magnitude);
        if m.first().is_some_and(|&x| x & 0x80 != 0) {
            self.u32(u32::try_from(m.len() + 1).unwrap_or(u32::MAX));
            self.buf.push(0);
            self.buf.extend_from_slice(m);
        } else {
            self.string(m);
        }
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc4251_examples() {
        // RFC 4251 §5 mpint examples.
        let data = hex::decode("00000000" /* 0 */).unwrap();
        assert_eq!(Reader::new(&data).mpint("x").unwrap(), b"");
        let data = hex::decode("0000000809a378f9b2e332a7").unwrap();
        assert_eq!(Reader::new(&data).mpint("x").unwrap(), hex::decode("09a378f9b2e332a7").unwrap());
        let data = hex::decode("000000020080").unwrap();
        assert_eq!(Reader::new(&data).mpint("x").unwrap(), [0x80]);
        let data = hex::decode("00000002edcc").unwrap();
        assert!(matches!(Reader::new(&data).mpint("x"), Err(MaterialError::Malformed(_))));
        // Non-minimal but non-negative: accepted and normalised.
        let data = hex::decode("00000003000001").unwrap();
        assert_eq!(Reader::new(&data).mpint("x").unwrap(), [1]);
    }

    #[test]
    fn writer_is_minimal() {
        let mut w = Writer::new();
        w.mpint(&[0, 0, 0x80]).mpint(&[]).mpint(&[0x7f]).string(b"ab").u32(7);
        assert_eq!(hex::encode(w.into_bytes()), concat!("000000020080", "00000000", "000000017f", "000000026162", "00000007"));
    }

    #[test]
    fn lengths_are_untrusted() {
        let data = [0xff, 0xff, 0xff, 0xff, 1, 2];
        let mut r = Reader::new(&data);
        assert!(matches!(r.string("blob"), Err(MaterialError::Malformed(m)) if m.contains("blob")));
        let mut r = Reader::new(&[0, 0]);
        assert!(r.u32("n").is_err());
        let mut r = Reader::new(&[0, 0, 0, 1, 9]);
        assert_eq!(r.string("s").unwrap(), [9]);
        assert!(r.is_empty());
    }
}
