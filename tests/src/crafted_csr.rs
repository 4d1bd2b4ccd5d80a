//! CSRs crafted byte by byte: valid CSRs made by rcgen or openssl, then
//! edited in their DER and signed again, so that the CA sees a CSR whose
//! signature verifies but whose key is encoded as no tool would encode it.
//!
//! Shared by the end-to-end attack tests and `pki-ca`'s property test
//! (which includes this file by path), so it uses only what both crates
//! depend on: rcgen, x509-parser, openssl on the PATH.

use std::path::Path;
use std::process::Command;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, SigningKey};

/// DER: `tag`, the definite length of `content`, then `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Splits the first TLV off `der`: (the whole TLV, its content, the rest).
/// Only for the well-formed DER this module edits; panics otherwise.
pub fn split_tlv(der: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let first = der[1] as usize;
    let (header, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (2 + n, len)
    };
    let end = header + len;
    (&der[..end], &der[header..end], &der[end..])
}

/// The TLVs inside a SEQUENCE's content, in order.
fn elements(mut content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (whole, _, rest) = split_tlv(content);
        out.push(whole);
        content = rest;
    }
    out
}

/// A DER CSR for `name` (SAN only, empty subject) signed by `key`.
pub fn csr_der(key: &KeyPair, name: &str) -> Vec<u8> {
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.serialize_request(key).unwrap().der().to_vec()
}

/// `csr` (DER, signed by `key`) with its SubjectPublicKeyInfo replaced by
/// `edit(spki)`, and signed again by `key` with the same algorithm, so the
/// signature verifies over the edited request.
pub fn with_spki(csr: &[u8], key: &KeyPair, edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let (_, outer, _) = split_tlv(csr);
    let [info, sig_alg, _sig] = elements(outer)[..] else {
        panic!("a CSR has three parts")
    };
    let (_, info_content, _) = split_tlv(info);
    let mut parts: Vec<Vec<u8>> = elements(info_content)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    parts[2] = edit(&parts[2]);
    let info = tlv(0x30, &parts.concat());
    let mut bits = vec![0u8];
    bits.extend(key.sign(&info).unwrap());
    tlv(0x30, &[info, sig_alg.to_vec(), tlv(0x03, &bits)].concat())
}

/// `spki` with its AlgorithmIdentifier's content replaced by `alg`
/// (the OID and any parameters, as DER).
pub fn spki_with_algorithm(spki: &[u8], alg: &[u8]) -> Vec<u8> {
    let (_, content, _) = split_tlv(spki);
    let (_, _, key_bits) = split_tlv(content);
    tlv(0x30, &[tlv(0x30, alg), key_bits.to_vec()].concat())
}

/// The OID rsaEncryption, DER.
pub const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// The OID id-Ed25519, DER.
pub const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// ASN.1 NULL.
pub const NULL: &[u8] = &[0x05, 0x00];

/// A fresh RSA-2048 key made by openssl (ring, behind rcgen, cannot make
/// RSA keys), loaded for signing with SHA-256, in `dir`.
pub fn rsa_key(dir: &Path) -> KeyPair {
    let path = dir.join("crafted-rsa.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path.to_str().unwrap(),
    ]);
    let pem = std::fs::read_to_string(&path).unwrap();
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

/// An RSA CSR whose AlgorithmIdentifier lacks the NULL parameters RFC 3279
/// requires; its signature verifies.
pub fn rsa_without_null(dir: &Path, name: &str) -> Vec<u8> {
    let key = rsa_key(dir);
    with_spki(&csr_der(&key, name), &key, |spki| {
        spki_with_algorithm(spki, OID_RSA)
    })
}

/// An Ed25519 CSR whose AlgorithmIdentifier carries parameters (NULL),
/// which RFC 8410 forbids; its signature verifies.
pub fn ed25519_with_parameters(name: &str) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    with_spki(&csr_der(&key, name), &key, |spki| {
        spki_with_algorithm(spki, &[OID_ED25519, NULL].concat())
    })
}

/// A CSR made by `openssl req` with `args` (the key and digest choice),
/// for `name` as CN, in DER; the key and CSR stay in `dir` as `<tag>.*`.
pub fn openssl_req(dir: &Path, tag: &str, args: &[&str], name: &str) -> Vec<u8> {
    let key = dir.join(format!("{tag}.key"));
    let csr = dir.join(format!("{tag}.der"));
    let subj = format!("/CN={name}");
    let mut all = vec!["req", "-new", "-nodes"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        &subj,
        "-outform",
        "DER",
        "-out",
        csr.to_str().unwrap(),
    ]);
    openssl(&all);
    std::fs::read(csr).unwrap()
}

/// An RSA-2048 CSR whose public exponent is 3.
pub fn rsa_exponent_3(dir: &Path, name: &str) -> Vec<u8> {
    openssl_req(
        dir,
        "rsa-e3",
        &["-newkey", "rsa:2048", "-pkeyopt", "rsa_keygen_pubexp:3"],
        name,
    )
}

/// A P-256 CSR signed with ecdsa-with-SHA1, and an RSA one signed with
/// sha1WithRSAEncryption.
pub fn sha1_signed(dir: &Path, name: &str) -> [Vec<u8>; 2] {
    [
        openssl_req(
            dir,
            "ec-sha1",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-sha1",
            ],
            name,
        ),
        openssl_req(dir, "rsa-sha1", &["-newkey", "rsa:2048", "-sha1"], name),
    ]
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed to run these tests");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
