//! Issue 12, item 8: `pki-client` keeps the last verified CRLs in
//! `ca.crls.pem` next to its root (issue 13: the set of a two-level CA,
//! the root's CRL and one per intermediate, with the intermediates that
//! signed them), so a request still works while the CA is down (until
//! those CRLs' nextUpdate), and an older CRL never takes the place of a
//! newer one of the same issuer.
//!
//! The client is the real binary; the CA and the server run in this
//! process, so the test can stop the CA and sign CRLs with chosen dates.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_common::revocation::{CrlSet, ROOT_ID};
use pki_tests::observed::{text, StoppableCa};
use pki_tests::{binary, bounded, RunningServer};

/// A directory of the client's own holding a copy of the root, so its
/// cache is not the CA's `ca.crl.pem`.
fn client_dir(ca: &StoppableCa) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(ca.dir.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
    dir
}

/// `pki-client request memo` from `dir` (root `dir/ca.pem`), off the async
/// workers.
async fn request(dir: &Path, ca_url: String, server: &RunningServer) -> Output {
    let root = dir.join("ca.pem");
    let addr = server.addr.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new(binary("pki-client"))
            .args(["--server", &addr, "--ca", root.to_str().unwrap()])
            .args(["--ca-url", &ca_url, "--no-client-cert", "request", "memo"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The CRL set in the client's cache, each CRL checked against its issuer
/// (the root, or an intermediate the root signed) whatever the clock says,
/// to read an expired one too.
fn cached(dir: &Path) -> CrlSet {
    let root = pki_common::files::read_cert(&dir.join("ca.pem")).unwrap();
    let bytes = std::fs::read(dir.join("ca.crls.pem")).expect("the client cached the CRLs");
    CrlSet::from_pem(&bytes, &root, 0).unwrap()
}

/// The number of the CRL of `issuer` (an intermediate id, or the root) in
/// the client's cache.
fn cached_number(dir: &Path, issuer: &str) -> u64 {
    let set = cached(dir);
    set.get(issuer)
        .unwrap_or_else(|| panic!("no CRL of {issuer} cached: {}", set.numbers()))
        .number
}

/// The id of the CA's current intermediate, which signs the leaves' CRL.
fn issuer_id(ca: &StoppableCa) -> String {
    ca.ca.current_issuer().unwrap().id.clone()
}

/// The number of the root's CRL the CA publishes.
fn root_crl_number(ca: &StoppableCa) -> u64 {
    ca.ca.root_crl().expect("init signs a root CRL").number
}

/// Has the CA's current intermediate sign its CRL with a thisUpdate `age`
/// ago, valid for `validity` from then, and plants it as the client's
/// cache, as the client caches a set: the intermediate, then the root's
/// CRL (the one the CA publishes) and that CRL. Answers its number.
fn plant(ca: &StoppableCa, dir: &Path, age: u64, validity: u64) -> u64 {
    let now = pki_common::unix_now() as i64;
    let crl = ca
        .ca
        .sign_crl_at(now - age as i64, Duration::from_secs(validity))
        .unwrap();
    let issuer = ca.ca.current_issuer().unwrap();
    assert_eq!(crl.issuer_id, issuer.id);
    let root_crl = ca.ca.root_crl().expect("init signs a root CRL");
    let set = CrlSet::verify(
        vec![root_crl.der, crl.der.clone()],
        std::slice::from_ref(&issuer.cert),
        &ca.ca.root().cert,
        0,
    )
    .unwrap();
    std::fs::write(dir.join("ca.crls.pem"), set.to_pem()).unwrap();
    assert_eq!(cached_number(dir, &issuer.id), crl.number);
    crl.number
}

fn assert_served(out: &Output) {
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "take cis3319 class this morning\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_caches_the_crl_and_uses_it_while_the_ca_is_down() {
    bounded(async {
        let mut ca = StoppableCa::start().await;
        let server = ca.start_server().await;
        let dir = client_dir(&ca);
        let served = ca.ca.current_crl().unwrap().number;
        let (id, root_number) = (issuer_id(&ca), root_crl_number(&ca));

        // CA up: the CRLs are fetched (the intermediate's and the root's),
        // and kept next to the root.
        let out = request(dir.path(), ca.url(), &server).await;
        assert_served(&out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "phase 2 · revocation: CRL #{served} from {}/v1/crls is signed by intermediate {id} (",
                ca.url()
            )) && stderr.contains(&format!(
                "phase 2 · revocation: CRL #{root_number} from {}/v1/crls is signed by the root ",
                ca.url()
            )),
            "{stderr}"
        );
        assert_eq!(cached_number(dir.path(), &id), served);
        assert_eq!(cached_number(dir.path(), ROOT_ID), root_number);

        // CA down: the cached CRL, in the first half of its life, serves
        // without asking the CA at all.
        ca.stop().await;
        let out = request(dir.path(), ca.url(), &server).await;
        assert_served(&out);
        let cache = dir.path().join("ca.crls.pem");
        assert!(
            text(&out.stderr).contains(&format!(
                "CRL #{served} from the cache {} is signed by intermediate {id} (",
                cache.display()
            )),
            "{}",
            text(&out.stderr)
        );

        // Past half its life the client tries the CA first; with the CA
        // down it says so, and goes on with the cached CRL while current.
        let planted = plant(&ca, dir.path(), 100, 150);
        let out = request(dir.path(), ca.url(), &server).await;
        assert_served(&out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("the CA is unreachable (cannot fetch the CRL: ")
                && stderr.contains(&format!(
                    "using the cached CRL #{root_number}, #{planted} from {}",
                    cache.display()
                )),
            "{stderr}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_cache_with_the_ca_down_fails_closed() {
    bounded(async {
        let mut ca = StoppableCa::start().await;
        let server = ca.start_server().await;
        let dir = client_dir(&ca);
        let planted = plant(&ca, dir.path(), 200, 100);
        let planted_bytes = std::fs::read(dir.path().join("ca.crls.pem")).unwrap();
        ca.stop().await;

        let out = request(dir.path(), ca.url(), &server).await;
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing was requested");
        let stderr = text(&out.stderr);
        let last = stderr
            .lines()
            .find(|l| l.starts_with("pki-client: "))
            .unwrap_or_default();
        assert!(
            last.starts_with("pki-client: revocation status unknown: cannot fetch the CRL: ")
                && last.contains(&format!(
                    "the cached CRL {} cannot stand in: the CRL is stale: its nextUpdate",
                    dir.path().join("ca.crls.pem").display()
                )),
            "{stderr}"
        );
        assert!(!last.contains("{ ") && !last.contains("Context"), "{last}");
        let sentences: Vec<&str> = last.split("; ").flat_map(|s| s.split(". ")).collect();
        for s in sentences.iter().filter(|s| !s.is_empty()) {
            assert_eq!(
                sentences.iter().filter(|t| *t == s).count(),
                1,
                "repeated: {s:?} in {last}"
            );
        }
        // The expired CRL is left as it was: no party wrote over it.
        let set = cached(dir.path());
        let expired = set.get(&issuer_id(&ca)).unwrap();
        assert_eq!(expired.number, planted);
        assert!(expired.next_update < pki_common::unix_now() as i64);
        assert_eq!(
            std::fs::read(dir.path().join("ca.crls.pem")).unwrap(),
            planted_bytes
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_crl_in_the_cache_never_wins_over_a_newer_one() {
    bounded(async {
        let ca = StoppableCa::start().await;
        let server = ca.start_server().await;
        let served = ca.ca.current_crl().unwrap().number;
        let id = issuer_id(&ca);

        // An older CRL planted in the cache (past half its life, so the
        // client asks the CA): the CA's newer one is used and replaces it.
        // The ledger numbers every CRL it signs, so the planted CRL is
        // signed first and the CA then publishes a newer one.
        let dir = client_dir(&ca);
        let planted = plant(&ca, dir.path(), 100, 150);
        assert!(planted > served);
        let newer = ca.ca.publish_crl().unwrap().number;
        assert!(newer > planted);
        let out = request(dir.path(), ca.url(), &server).await;
        assert_served(&out);
        assert!(
            text(&out.stderr).contains(&format!(
                "CRL #{newer} from {}/v1/crls is signed by intermediate {id} (",
                ca.url()
            )),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(
            cached_number(dir.path(), &id),
            newer,
            "the newer CRL is cached"
        );

        // The other way round: the cache holds a newer CRL than the one
        // the CA serves (a CA restored from an old backup, or an attacker
        // replaying an old CRL in its place). The cached one is kept and
        // used, and the file is not rolled back.
        let dir = client_dir(&ca);
        let cached_newer = plant(&ca, dir.path(), 100, 150);
        assert!(cached_newer > newer, "the CA still serves #{newer}");
        let out = request(dir.path(), ca.url(), &server).await;
        assert_served(&out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("CRL #{newer} is older than CRL #{cached_newer}"))
                && stderr.contains(&format!(
                    "phase 2 · revocation: CRL #{cached_newer} from the cache {} (newer than the CA's) is signed by intermediate {id} (",
                    dir.path().join("ca.crls.pem").display()
                )),
            "{stderr}"
        );
        assert_eq!(cached_number(dir.path(), &id), cached_newer);
    })
    .await
}
