//! The CA's CSR intake (PEM or DER, signature check, key policy).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pki_ca::policy::verify_csr(data);
});
