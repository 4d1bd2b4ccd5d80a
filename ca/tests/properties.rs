//! Property tests of the CA's intake: arbitrary bodies fed to the CSR
//! parser and arbitrary strings to the token parser are refused with an
//! error, never a panic; tokens round-trip.

use pki_ca::policy::{verify_csr, PolicyError};
use pki_ca::token::{EnrollmentToken, TokenError};
use proptest::prelude::*;

/// A valid DER CSR to mutate.
fn valid_csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["app.pki.test".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_csr_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = verify_csr(&bytes);
    }

    #[test]
    fn a_mutated_csr_is_refused_or_still_self_consistent(flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..8)) {
        let mut der = valid_csr();
        for (at, bits) in flips {
            let i = at % der.len();
            der[i] ^= bits;
        }
        // Any outcome but a panic is acceptable; an accepted CSR still had
        // to verify its own signature.
        match verify_csr(&der) {
            Ok(v) => prop_assert!(!v.spki_der.is_empty()),
            Err(PolicyError::Unparseable(_) | PolicyError::BadSignature | PolicyError::UnsupportedKey(_) | PolicyError::UnsupportedSignature(_) | PolicyError::InvalidName(_) | PolicyError::NameNotAuthorized { .. }) => {}
            Err(e @ (PolicyError::IssuerExpiring { .. } | PolicyError::NameNotPermitted { .. })) => prop_assert!(false, "not a CSR error: {e}"),
        }
    }

    #[test]
    fn the_token_parser_never_panics(s in ".{0,200}") {
        let _ = EnrollmentToken::parse(&s);
    }

    #[test]
    fn near_miss_tokens_are_malformed(cut in 1usize..100) {
        let good = EnrollmentToken::generate().to_string();
        let cut = cut.min(good.len() - 1);
        prop_assert_eq!(EnrollmentToken::parse(&good[..good.len() - cut]).unwrap_err(), TokenError::Malformed);
    }
}

#[test]
fn generated_tokens_round_trip() {
    for _ in 0..100 {
        let t = EnrollmentToken::generate();
        let parsed = EnrollmentToken::parse(&t.to_string()).unwrap();
        assert_eq!(parsed.id(), t.id());
        assert_eq!(parsed.secret_hash(), t.secret_hash());
    }
}
