//! SIGTERM: the daemon stops its background work at a safe point — the unit of work in
//! flight finishes, nothing is left for the next start to undo — and what was not started
//! resumes after the restart.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn sigterm(d: &Daemon) {
    let pid = d.child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
}

fn imported(job: &serde_json::Value) -> usize {
    job["results"].as_array().map_or(0, |r| r.iter().filter(|r| r["status"] == "IMPORTED").count())
}

#[test]
fn sigterm_during_an_import_job_finishes_the_item_in_flight_and_the_rest_after_the_restart() {
    require("curl");
    require("openssl");
    require("python3");
    let mut d = Daemon::config("");
    // Each item holds between its token write and its commit for 1.5 s: a SIGTERM lands
    // inside an item, where dropping the work would leave an intent for the next start.
    d.env.push(("KEYPORT_TEST_PAUSE_BEFORE_COMMIT_MS".into(), "1500".into()));
    d.spawn();
    let edge = tlspc::edge(&d);
    let names = ["st-1", "st-2", "st-3", "st-4", "st-5"];
    let body = tlspc::body(&d, &edge, &names);
    let id = tlspc::submit(&d, &body);
    let start = Instant::now();
    while imported(&tlspc::job(&d, &id)) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no item imported in 60 s:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Inside the second item's pause.
    std::thread::sleep(Duration::from_millis(400));
    let signalled = Instant::now();
    sigterm(&d);
    let status = d.child.as_mut().unwrap().wait().unwrap();
    let took = signalled.elapsed();
    assert!(status.success(), "a SIGTERM ends keyport with 0: {status}\n{}", d.log());
    let log = d.log();
    assert!(log.contains("shutdown: background work stopped"), "the background work stopped cleanly:\n{log}");
    assert!(took < Duration::from_secs(20), "stopped in {took:?}, not after the drain time");
    eprintln!("FIGURES sigterm to exit {} ms", took.as_millis());

    // The restart has nothing to undo: the item in flight was committed, not dropped.
    d.spawn();
    let log = d.log();
    assert!(log.contains("intents_undone=0"), "no creation was left half-done by the SIGTERM:\n{log}");
    let job = tlspc::wait_finished(&d, &id, Duration::from_secs(60));
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(imported(&job), names.len(), "every item imported once: {job}");
    let (_, keys) = d.curl("GET", "/keyport/v1/keys", None, &[]);
    assert_eq!(keys["keys"].as_array().unwrap().len(), names.len(), "each key once: {keys}");
}
