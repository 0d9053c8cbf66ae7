//! The token layer recovers by itself: sessions closed under it, and a module finalized under
//! it (what a token unplug or a module restart looks like), are reopened and retried — on
//! SoftHSM and on a TPM (tpm2-pkcs11, `common::tpm`).

mod common;
use common::tpm::{On, Tpm};
use keyport::material::algorithm::Algorithm;
use keyport::token::{objects, Token};
use std::path::{Path, PathBuf};

/// The token under test, opened in this process, and its module.
fn open_token(dir: &Path, on: On, tpm: Option<&Tpm>) -> (std::sync::Arc<Token>, PathBuf) {
    let (block, module) = match (on, tpm) {
        (On::Tpm, Some(t)) => {
            // The module runs in this process: it reaches the TPM through these.
            for (k, v) in t.env() {
                std::env::set_var(k, v);
            }
            (t.token_toml("tpm"), common::tpm::module())
        }
        _ => (
            format!(
                "[[tokens]]\nname = \"soft\"\nmodule = \"{m}\"\nlabel = \"recovery\"\npin = {{ file = \"{d}/pin\" }}\nsofthsm = {{ dir = \"{d}/softhsm\" }}\n",
                d = dir.display(),
                m = common::softhsm_module().display()
            ),
            common::softhsm_module(),
        ),
    };
    let text = format!("state_dir = \"{}/state\"\n{block}sessions = 2\n", dir.display());
    let cfg: keyport::config::Config = toml::from_str(&text).unwrap();
    keyport::token::softhsm::prepare_env(&cfg).unwrap();
    (Token::open(cfg.tokens[0].clone()).unwrap(), module)
}

#[test]
fn closed_sessions_and_a_finalized_module_are_recovered() {
    recovered(On::Soft);
}

#[test]
fn closed_sessions_and_a_finalized_module_are_recovered_on_tpm() {
    recovered(On::Tpm);
}

fn recovered(on: On) {
    let tpm = (on == On::Tpm).then(Tpm::start);
    let dir = tempfile::tempdir().unwrap();
    let (token, module) = open_token(dir.path(), on, tpm.as_ref());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let id = b"recovery-key".to_vec();
        let i = id.clone();
        let pk = token.run(move |c| objects::generate_key_pair(c, Algorithm::EcP256, &i, "r", false)).await.unwrap();

        // Someone closes every session of the slot (the login goes with them).
        let slot = token.run(|c| Ok(c.live.slot.id())).await.unwrap();
        close_all_sessions(&module, slot);
        let i = id.clone();
        let again = token.run(move |c| objects::public_key(c, &i)).await.expect("recovered after C_CloseAllSessions");
        assert_eq!(again, pk);
        let i = id.clone();
        let sig = token.run(move |c| objects::sign(c, &i, Algorithm::EcP256, &[7u8; 32])).await.expect("signing needs the login back");
        assert_eq!(sig.len(), 64);

        // Someone finalizes the module (every handle and session in the process is gone).
        let other = cryptoki::context::Pkcs11::new(&module).unwrap();
        other.finalize().unwrap();
        let i = id.clone();
        let again = token.run(move |c| objects::public_key(c, &i)).await.expect("recovered after C_Finalize");
        assert_eq!(again, pk);
        let h = token.health().await;
        assert!(h.present && h.logged_in, "{h:?}");
        assert_eq!(h.objects, 2, "the index was rebuilt from the token");
    });
}

/// C_CloseAllSessions through the module's own function list (cryptoki does not wrap it).
#[allow(unsafe_code)]
fn close_all_sessions(module: &Path, slot: u64) {
    unsafe {
        let lib = cryptoki_sys::Pkcs11::new(module).unwrap();
        let mut fl: *mut cryptoki_sys::CK_FUNCTION_LIST = std::ptr::null_mut();
        assert_eq!(lib.C_GetFunctionList(&mut fl), cryptoki_sys::CKR_OK);
        let rv = ((*fl).C_CloseAllSessions.unwrap())(slot as _);
        assert_eq!(rv, cryptoki_sys::CKR_OK);
    }
}
