//! Property test of the whole sign path: mutated CSRs (bit flips,
//! truncations, inserted and removed bytes) of every accepted key kind,
//! and of crafted near-miss keys, go through [`Ca::sign`] with a valid
//! token, and none may end as an internal error: client input is refused
//! as the client's fault (4xx), never as the CA's (500).

#[path = "../../tests/src/crafted_csr.rs"]
#[allow(dead_code)]
mod crafted_csr;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pki_ca::authority::init_root;
use pki_ca::policy::IssuancePolicy;
use pki_ca::{Ca, CaPaths, SignError};
use pki_common::cert::Profile;
use proptest::prelude::*;
use rcgen::KeyPair;

const NAME: &str = "app.pki.test";

/// A CA in a temporary directory, a token for [`NAME`], and the CSRs the
/// mutations start from.
struct Fixture {
    _dir: tempfile::TempDir,
    ca: Ca,
    token: Mutex<String>,
    seeds: Vec<(&'static str, Vec<u8>)>,
    /// Keys whose CSRs are edited and signed again.
    keys: Vec<(&'static str, KeyPair)>,
}

impl Fixture {
    fn mint(ca: &Ca) -> String {
        ca.mint_token(&[NAME.into()], Profile::Server, Duration::from_secs(3600))
            .unwrap()
            .to_string()
    }

    /// Signs `csr` with the current token; a token spent on a mutation
    /// that still verified is replaced.
    fn sign(&self, csr: &[u8]) -> Result<(), SignError> {
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.ca.sign(Some(&token), csr).map(|_| ());
        if result.is_ok() {
            *token = Fixture::mint(&self.ca);
        }
        result
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let paths = CaPaths::new(dir.path());
        init_root(&paths, Duration::from_secs(3650 * 24 * 3600), false).unwrap();
        let ca = Ca::open(&paths, IssuancePolicy::default()).unwrap();
        let token = Mutex::new(Fixture::mint(&ca));
        let seeds = seeds(dir.path());
        let keys = vec![
            (
                "p256",
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            ),
            (
                "ed25519",
                KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            ),
            ("rsa2048", crafted_csr::rsa_key(dir.path())),
        ];
        Fixture {
            _dir: dir,
            ca,
            token,
            seeds,
            keys,
        }
    })
}

/// Every key kind the CA accepts, and the near misses it must refuse.
fn seeds(dir: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    let rcgen_csr = |alg| crafted_csr::csr_der(&KeyPair::generate_for(alg).unwrap(), NAME);
    let rsa = crafted_csr::rsa_key(dir);
    let [ec_sha1, rsa_sha1] = crafted_csr::sha1_signed(dir, NAME);
    vec![
        ("p256", rcgen_csr(&rcgen::PKCS_ECDSA_P256_SHA256)),
        ("p384", rcgen_csr(&rcgen::PKCS_ECDSA_P384_SHA384)),
        ("ed25519", rcgen_csr(&rcgen::PKCS_ED25519)),
        ("rsa2048", crafted_csr::csr_der(&rsa, NAME)),
        ("rsa-no-null", crafted_csr::rsa_without_null(dir, NAME)),
        ("ed25519-params", crafted_csr::ed25519_with_parameters(NAME)),
        ("rsa-e3", crafted_csr::rsa_exponent_3(dir, NAME)),
        ("ec-sha1", ec_sha1),
        ("rsa-sha1", rsa_sha1),
    ]
}

/// One edit of a CSR's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

impl Mutation {
    fn apply(&self, der: &mut Vec<u8>) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *self {
            Mutation::Flip(i, bits) if !der.is_empty() => {
                let i = at(i, der.len());
                der[i] ^= bits;
            }
            Mutation::Truncate(i) => der.truncate(at(i, der.len())),
            Mutation::Insert(i, b) => der.insert(at(i, der.len() + 1), b),
            Mutation::Remove(i) if !der.is_empty() => {
                der.remove(at(i, der.len()));
            }
            _ => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<usize>().prop_map(Mutation::Remove),
    ]
}

/// The codes that blame the CA, not the request: none may answer a CSR.
const SERVER_FAULTS: [&str; 3] = ["internal", "ledger_unavailable", "issuer_expiring"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn no_mutated_csr_is_an_internal_error(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(mutation(), 0..4),
        pem in any::<bool>(),
    ) {
        let f = fixture();
        let (kind, csr) = &f.seeds[seed.index(f.seeds.len())];
        let mut der = csr.clone();
        for edit in &edits {
            edit.apply(&mut der);
        }
        // The PEM path too: the CA takes both.
        let body = if pem {
            pki_common::files::pem_encode("CERTIFICATE REQUEST", &der).into_bytes()
        } else {
            der
        };
        if let Err(e) = f.sign(&body) {
            prop_assert!(!SERVER_FAULTS.contains(&e.code()), "{kind} {edits:?}: {}: {e}", e.code());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Edits of the public key alone, with the request signed again by
    /// its key: these get past the CSR's signature check (the verifier
    /// takes the algorithm from the signature, not from the key's
    /// AlgorithmIdentifier), so they reach the key checks and the signer.
    #[test]
    fn no_re_signed_key_edit_is_an_internal_error(
        key in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(mutation(), 1..3),
    ) {
        let f = fixture();
        let (kind, key) = &f.keys[key.index(f.keys.len())];
        let csr = crafted_csr::csr_der(key, NAME);
        let edited = crafted_csr::with_spki(&csr, key, |spki| {
            let mut spki = spki.to_vec();
            for edit in &edits {
                edit.apply(&mut spki);
            }
            spki
        });
        if let Err(e) = f.sign(&edited) {
            prop_assert!(!SERVER_FAULTS.contains(&e.code()), "{kind} {edits:?}: {}: {e}", e.code());
        }
    }
}

#[test]
fn the_seeds_are_issued_or_refused_with_their_own_code() {
    let f = fixture();
    let expected = [
        ("p256", None),
        ("p384", None),
        ("ed25519", None),
        ("rsa2048", None),
        ("rsa-no-null", Some("unsupported_key")),
        ("ed25519-params", Some("unsupported_key")),
        ("rsa-e3", Some("unsupported_key")),
        ("ec-sha1", Some("unsupported_signature")),
        ("rsa-sha1", Some("unsupported_signature")),
    ];
    for ((kind, csr), (want_kind, want)) in f.seeds.iter().zip(expected) {
        assert_eq!(*kind, want_kind);
        let got = f.sign(csr).err();
        assert_eq!(got.as_ref().map(|e| e.code()), want, "{kind}: {got:?}");
    }
}
