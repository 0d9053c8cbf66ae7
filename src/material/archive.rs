//! The one ZIP writer (the `zip` crate): stored entries, for exports that hand several key
//! files back at once (KPS batch export, 004 export-file). The archive is built in a zeroizing
//! buffer sized up front, so no reallocation leaves a copy of a key behind.

use std::io::{Cursor, Write};

use zeroize::Zeroizing;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::key::MaterialError;

/// Local header, central directory entry and data descriptor room per entry, beyond its name
/// and data (30 + 46 + 16 bytes, rounded up; zip64 extras are not needed below 4 GiB).
const PER_ENTRY: usize = 128;
const END_RECORD: usize = 64;

/// A ZIP archive of `files` (name, contents), stored without compression, with the DOS epoch
/// as every entry's time so the same keys give the same bytes.
pub fn stored_zip(files: &[(&str, &[u8])]) -> Result<Zeroizing<Vec<u8>>, MaterialError> {
    let size = files.iter().map(|(n, d)| PER_ENTRY + 2 * n.len() + d.len()).sum::<usize>() + END_RECORD;
    let mut buf = Zeroizing::new(Vec::with_capacity(size));
    {
        let mut zip = ZipWriter::new(Cursor::new(&mut *buf));
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o600);
        for (name, data) in files {
            let fail = |e: &dyn std::fmt::Display| MaterialError::Malformed(format!("zip entry '{name}': {e}"));
            zip.start_file(*name, options).map_err(|e| fail(&e))?;
            zip.write_all(data).map_err(|e| fail(&e))?;
        }
        zip.finish().map_err(|e| MaterialError::Malformed(format!("zip: {e}")))?;
    }
    debug_assert!(buf.len() <= size, "the zip outgrew its zeroizing buffer");
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_reader_and_fits_its_buffer() {
        let files: [(&str, &[u8]); 2] = [("a.pem", b"hello"), ("b.pem", &[7u8; 3000])];
        let z = stored_zip(&files).unwrap();
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert!(z.capacity() >= z.len());
        let mut r = zip::ZipArchive::new(Cursor::new(&z[..])).unwrap();
        assert_eq!(r.len(), 2);
        for (name, data) in files {
            let mut f = r.by_name(name).unwrap();
            assert_eq!(f.compression(), CompressionMethod::Stored);
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut got).unwrap();
            assert_eq!(got, data);
        }
        assert_eq!(stored_zip(&files).unwrap()[..], z[..], "deterministic");
    }
}
