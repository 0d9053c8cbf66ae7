//! Name rules shared by config, core and faces (a leaf: it depends on nothing).

/// Namespaces, token names, principal names: 1–64 of letters, digits, `_` and `-`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Key names (CKA_LABEL): 1–128 of letters, digits, `_`, `-`, `.` and `@`, not starting with `.`.
pub fn is_valid_key_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(is_valid_name("web-1_a"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name(&"x".repeat(65)));
        assert!(is_valid_key_name("host.example.com"));
        assert!(!is_valid_key_name("../etc"));
        assert!(!is_valid_key_name("a b"));
    }
}
