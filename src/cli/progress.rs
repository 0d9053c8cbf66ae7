//! Progress on long work (`sync now --wait`, `restore`, batch `keys import`) for a person at a
//! terminal; nothing at all when stdout or stderr is not a terminal (scripts, logs, pipes).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// A spinner with `msg` and the elapsed time, until dropped or cleared.
pub fn spinner(msg: &str) -> Option<ProgressBar> {
    if !interactive() {
        return None;
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

/// A bar over `len` items.
pub fn bar(len: u64, msg: &str) -> Option<ProgressBar> {
    if !interactive() || len < 2 {
        return None;
    }
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb.set_message(msg.to_string());
    Some(pb)
}

/// Clears a progress line, if there is one.
pub fn done(pb: Option<ProgressBar>) {
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}
