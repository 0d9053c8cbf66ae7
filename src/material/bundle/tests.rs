//! Bundles built here with the `zip` crate, including crafted hostile ones.

use super::*;
use std::io::Write;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

fn cert(name: &str) -> (String, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec![format!("{name}.example")]).unwrap();
    (c.cert.pem(), c.cert.der().to_vec())
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        w.start_file(*name, deflated()).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn xml_of(bodies: &[String]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<certificates>\n");
    for b in bodies {
        s.push_str(&format!("  <certificate><pem>{b}</pem></certificate>\n"));
    }
    s.push_str("</certificates>\n");
    s
}

fn lim() -> Limits {
    Limits::default()
}

#[test]
fn pem_files_one_bad_fails_alone() {
    let (a, a_der) = cert("a");
    let (b, _) = cert("b");
    let chain = format!("{a}{b}");
    let z = zip_of(&[
        ("a.pem", a.as_bytes()),
        ("dir/chain.PEM", chain.as_bytes()),
        ("key.pem", b"-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"),
    ]);
    let bundle = read_zip(&z, Format::Pem, lim()).unwrap();
    assert_eq!(bundle.format, Format::Pem);
    assert_eq!(bundle.entries.len(), 3);
    assert_eq!(bundle.entries[0].result.as_ref().unwrap()[0].der, a_der);
    assert_eq!(bundle.entries[1].result.as_ref().unwrap().len(), 2, "a chain keeps every certificate");
    let err = bundle.entries[2].result.as_ref().unwrap_err();
    assert!(err.contains("not a certificate"), "{err}");
    assert!(!err.contains("MAA="), "never echoes the content");
    assert_eq!(bundle.total(), 4);
}

#[test]
fn xml_in_the_vendor_structure() {
    let (_, a) = cert("a");
    let (_, b) = cert("b");
    let xml = xml_of(&[b64(&a), "not base64!".into(), b64(&b), format!("-----BEGIN CERTIFICATE-----{}-----END CERTIFICATE-----", b64(&a))]);
    let z = zip_of(&[("certificates.xml", xml.as_bytes())]);
    let bundle = read_zip(&z, Format::Xml, lim()).unwrap();
    assert_eq!(bundle.format, Format::Xml);
    let e = &bundle.entries;
    assert_eq!(e.len(), 4);
    assert_eq!(e[0].result.as_ref().unwrap()[0].der, a);
    assert!(e[1].result.as_ref().unwrap_err().contains("base64"));
    assert_eq!(e[2].result.as_ref().unwrap()[0].der, b);
    assert!(e[3].result.as_ref().unwrap_err().contains("BEGIN"), "headers are refused in the XML structure");
    // Wrapped lines and indentation are tolerated; unknown fields inside <certificate> skipped.
    let wrapped: String = b64(&a).as_bytes().chunks(64).map(|c| format!("\n      {}", std::str::from_utf8(c).unwrap())).collect();
    let xml = format!("<certificates><certificate><device_id>d1</device_id><pem>{wrapped}\n</pem></certificate><certificate/><certificate><x/></certificate></certificates>");
    let e = read_xml(xml.as_bytes(), 10).unwrap();
    assert_eq!(e[0].result.as_ref().unwrap()[0].der, a);
    assert!(e[1].result.is_err() && e[2].result.is_err());
}

#[test]
fn xml_with_doctype_entities_or_external_references_is_refused() {
    let (_, a) = cert("a");
    let body = b64(&a);
    let bombs = [
        format!("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><certificates><certificate><pem>{body}&lol2;</pem></certificate></certificates>"),
        format!("<?xml version=\"1.0\"?><!DOCTYPE c SYSTEM \"http://127.0.0.1:1/x.dtd\"><certificates><certificate><pem>{body}</pem></certificate></certificates>"),
        "<certificates><certificate><pem>&xxe;</pem></certificate></certificates>".to_string(),
        format!("<certificates><certificate><pem>{body}&#65;</pem></certificate></certificates>"),
        format!("<?xml-stylesheet href=\"http://127.0.0.1:1/s\"?><certificates><certificate><pem>{body}</pem></certificate></certificates>"),
        format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?><certificates><certificate><pem>{body}</pem></certificate></certificates>"),
        format!("<devices><certificate><pem>{body}</pem></certificate></devices>"),
        format!("<certificates><certificate><pem>{body}</pem></certificate></certificates><certificates/>"),
        format!("<certificates><certificate><pem>{body}</pem></certificate>"),
        format!("<certificates><certificate><pem>{body}</certificate></pem></certificates>"),
        "<certificates></certificates>".to_string(),
        "not xml at all".to_string(),
        format!("<certificates>{}<certificate><pem>{body}</pem></certificate>{}</certificates>", "<certificate>".repeat(0), "<a>".repeat(0)),
    ];
    for (i, x) in bombs.iter().enumerate().take(12) {
        let z = zip_of(&[("c.xml", x.as_bytes())]);
        match read_zip(&z, Format::Xml, lim()) {
            Err(BundleError::Xml(m)) => assert!(!m.is_empty()),
            other => panic!("case {i} not refused: {other:?}"),
        }
    }
    read_xml(bombs[12].as_bytes(), 10).unwrap();
    let deep = format!("<certificates><certificate>{}</certificate></certificates>", "<a>".repeat(40) + &"</a>".repeat(40));
    assert!(matches!(read_xml(deep.as_bytes(), 10), Err(BundleError::Xml(m)) if m.contains("deeper")));
    let many = xml_of(&vec![body.clone(); 6]);
    assert!(matches!(read_xml(many.as_bytes(), 5), Err(BundleError::TooManyEntries { max: 5, .. })));
}

#[test]
fn format_must_match_the_profile() {
    let (a, der) = cert("a");
    let pem_zip = zip_of(&[("a.pem", a.as_bytes())]);
    let xml_zip = zip_of(&[("a.xml", xml_of(&[b64(&der)]).as_bytes())]);
    assert_eq!(read_zip(&pem_zip, Format::Xml, lim()).unwrap_err(), BundleError::FormatMismatch { expected: "XML", found: "PEM" });
    assert_eq!(read_zip(&xml_zip, Format::Pem, lim()).unwrap_err(), BundleError::FormatMismatch { expected: "PEM", found: "XML" });
    let mixed = zip_of(&[("a.pem", a.as_bytes()), ("a.xml", b"<certificates/>")]);
    assert_eq!(read_zip(&mixed, Format::Pem, lim()).unwrap_err(), BundleError::MixedFormats);
    let two = zip_of(&[("a.xml", b"<certificates/>"), ("b.xml", b"<certificates/>")]);
    assert_eq!(read_zip(&two, Format::Xml, lim()).unwrap_err(), BundleError::SeveralXml(2));
    assert_eq!(read_zip(&zip_of(&[]), Format::Pem, lim()).unwrap_err(), BundleError::Empty);
    assert!(matches!(read_zip(b"PK\x03\x04garbage", Format::Pem, lim()), Err(BundleError::NotAZip(_))));
    assert!(matches!(read_zip(a.as_bytes(), Format::Pem, lim()), Err(BundleError::NotAZip(_))));
    assert_eq!(read_zip(&zip_of(&[("a.txt", b"x")]), Format::Pem, lim()).unwrap_err(), BundleError::UnexpectedFile("a.txt".into()));
    assert_eq!(read_zip(&zip_of(&[("a.der", &der)]), Format::Pem, lim()).unwrap_err(), BundleError::UnexpectedFile("a.der".into()));
}

#[test]
fn unsafe_paths_are_refused() {
    let (a, _) = cert("a");
    for name in ["../a.pem", "x/../../a.pem", "/etc/a.pem", "C:/a.pem", "x\\..\\a.pem", "a\0.pem"] {
        let z = zip_of(&[("ok.pem", a.as_bytes()), (name, a.as_bytes())]);
        assert!(matches!(read_zip(&z, Format::Pem, lim()), Err(BundleError::UnsafePath(_))), "{name:?}");
    }
    // Not UTF-8: patch a name byte in both headers.
    let mut z = zip_of(&[("ab.pem", a.as_bytes())]);
    for i in 0..z.len() - 5 {
        if &z[i..i + 6] == b"ab.pem" {
            z[i] = 0xff;
        }
    }
    assert!(read_zip(&z, Format::Pem, lim()).is_err());
}

#[test]
fn symlinks_directories_and_os_litter() {
    let (a, _) = cert("a");
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_directory("certs/", SimpleFileOptions::default()).unwrap();
    w.start_file("certs/a.pem", deflated()).unwrap();
    w.write_all(a.as_bytes()).unwrap();
    w.start_file("__MACOSX/certs/._a.pem", deflated()).unwrap();
    w.write_all(b"\0\x05\x16\x07junk").unwrap();
    let ok = w.finish().unwrap().into_inner();
    assert_eq!(read_zip(&ok, Format::Pem, lim()).unwrap().entries.len(), 1, "directories and __MACOSX are skipped");

    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("a.pem", deflated()).unwrap();
    w.write_all(a.as_bytes()).unwrap();
    w.add_symlink("b.pem", "/etc/shadow", SimpleFileOptions::default()).unwrap();
    let z = w.finish().unwrap().into_inner();
    assert_eq!(read_zip(&z, Format::Pem, lim()).unwrap_err(), BundleError::NotRegular("b.pem".into()));
}

/// Sets general-purpose flag bit 0 (encrypted) in every local and central header.
fn mark_encrypted(z: &mut [u8]) {
    for i in 0..z.len() - 4 {
        if &z[i..i + 4] == b"PK\x03\x04" {
            z[i + 6] |= 1;
        } else if &z[i..i + 4] == b"PK\x01\x02" {
            z[i + 8] |= 1;
        }
    }
}

#[test]
fn encrypted_entries_are_refused() {
    let (a, _) = cert("a");
    let mut z = zip_of(&[("a.pem", a.as_bytes())]);
    mark_encrypted(&mut z);
    assert_eq!(read_zip(&z, Format::Pem, lim()).unwrap_err(), BundleError::Encrypted("a.pem".into()));
}

#[test]
fn nested_archives_are_refused_by_name_and_by_content() {
    let (a, _) = cert("a");
    let inner = zip_of(&[("a.pem", a.as_bytes())]);
    let by_name = zip_of(&[("a.pem", a.as_bytes()), ("inner.zip", &inner)]);
    assert_eq!(read_zip(&by_name, Format::Pem, lim()).unwrap_err(), BundleError::Nested("inner.zip".into()));
    let by_content = zip_of(&[("a.pem", a.as_bytes()), ("inner.pem", &inner)]);
    assert_eq!(read_zip(&by_content, Format::Pem, lim()).unwrap_err(), BundleError::Nested("inner.pem".into()));
    let gz = zip_of(&[("c.xml", &[0x1f, 0x8b, 8, 0, 0, 0])]);
    assert_eq!(read_zip(&gz, Format::Xml, lim()).unwrap_err(), BundleError::Nested("c.xml".into()));
}

#[test]
fn too_many_entries() {
    let (a, _) = cert("a");
    let names: Vec<String> = (0..11).map(|i| format!("{i}.pem")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), a.as_bytes())).collect();
    let z = zip_of(&files);
    let l = Limits { max_entries: 10, ..lim() };
    assert_eq!(read_zip(&z, Format::Pem, l).unwrap_err(), BundleError::TooManyEntries { found: 11, max: 10 });
    assert_eq!(read_zip(&z, Format::Pem, Limits { max_entries: 11, ..lim() }).unwrap().entries.len(), 11);
}

/// 64 MiB of zeros deflate to ~64 KiB.
fn bomb() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("bomb.pem", deflated().large_file(false)).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        w.write_all(&zeros).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn zip_bombs_stop_while_reading() {
    let z = bomb();
    assert!(z.len() < 1024 * 1024);
    // The ratio stops it long before the total cap.
    assert!(matches!(read_zip(&z, Format::Pem, lim()), Err(BundleError::RatioExceeded { .. })));
    // With the ratio out of the way, the total cap stops it.
    let l = Limits { max_ratio: u64::MAX / 2, max_total_bytes: 4 * 1024 * 1024, ..lim() };
    assert_eq!(read_zip(&z, Format::Pem, l).unwrap_err(), BundleError::TooLarge { max: 4 * 1024 * 1024 });
    // Headers that lie about sizes change nothing: patch both size fields to 100 bytes.
    let mut lying = z.clone();
    let full = (64u32 * 1024 * 1024).to_le_bytes();
    for i in 0..lying.len() - 4 {
        if lying[i..i + 4] == full {
            lying[i..i + 4].copy_from_slice(&100u32.to_le_bytes());
        }
    }
    assert_ne!(lying, z);
    assert!(
        matches!(read_zip(&lying, Format::Pem, lim()), Err(BundleError::RatioExceeded { .. } | BundleError::Unreadable { .. })),
        "{:?}",
        read_zip(&lying, Format::Pem, lim()).map(|b| b.entries.len())
    );
    // Many small entries that add up are capped by the total too.
    let chunk = vec![b'A'; 300 * 1024];
    let names: Vec<String> = (0..20).map(|i| format!("{i}.pem")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), chunk.as_slice())).collect();
    let z = zip_of(&files);
    let l = Limits { max_ratio: u64::MAX / 2, max_total_bytes: 2 * 1024 * 1024, ..lim() };
    assert_eq!(read_zip(&z, Format::Pem, l).unwrap_err(), BundleError::TooLarge { max: 2 * 1024 * 1024 });
}

#[test]
fn stored_entries_and_crc_damage() {
    let (a, _) = cert("a");
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("a.pem", SimpleFileOptions::default().compression_method(CompressionMethod::Stored)).unwrap();
    w.write_all(a.as_bytes()).unwrap();
    let mut z = w.finish().unwrap().into_inner();
    assert_eq!(read_zip(&z, Format::Pem, lim()).unwrap().entries.len(), 1);
    // Flip a byte of the stored content: the CRC check refuses the upload.
    let at = z.windows(11).position(|w| w == b"-----BEGIN ").unwrap() + 30;
    z[at] ^= 0x01;
    assert!(matches!(read_zip(&z, Format::Pem, lim()), Err(BundleError::Unreadable { .. })));
}
