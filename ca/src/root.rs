//! Everything done with the ROOT KEY, where the root key is: creating the
//! hierarchy (`pki-ca init`), issuing an intermediate (`pki-ca
//! intermediate`), and signing the root's CRL (`pki-ca revoke
//! --intermediate`, `pki-ca root-crl`).
//!
//! The online CA never comes here: it holds the root certificate and the
//! intermediates, and the root key can live elsewhere (`--root-dir`),
//! encrypted ([`keyfile`](crate::keyfile)). These commands do need the
//! online CA's directory too: they put the new intermediate and the root
//! CRL there, and record the intermediates in its ledger.

use std::net::IpAddr;
use std::time::Duration;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree,
    IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
};
use tracing::{info, warn};

use pki_common::cert::CertInfo;
use pki_common::files;

use crate::authority::{
    id_of, key_id_of, random_serial, to_time, AuthorityError, RootAuthority, Signer, ROOT_ID,
};
use crate::keyfile::{self, Passphrase};
use crate::ledger::{IntermediateRecord, Revocation, SqliteLedger};
use crate::CaPaths;

/// The default lifetime of the root.
pub const DEFAULT_ROOT_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The default lifetime of an intermediate (never past the root's).
pub const DEFAULT_INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(1825 * 24 * 3600);
/// The default validity of the root's CRL: it is re-signed where the root
/// key is (`pki-ca root-crl`), so rarely.
pub const DEFAULT_ROOT_CRL_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What `pki-ca init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    Created(CertInfo),
    KeptExisting(CertInfo),
}

/// What an intermediate is issued with.
#[derive(Debug, Clone)]
pub struct IntermediateOptions {
    pub validity: Duration,
    /// NameConstraints permitted subtrees: DNS names (a name permits
    /// itself and every name below it).
    pub permit_dns: Vec<String>,
    /// NameConstraints permitted subtrees: IP ranges, as CIDR.
    pub permit_ip: Vec<String>,
    /// Where the root's CRL and certificate are published
    /// (`--public-url`), put into the intermediate.
    pub public_url: Option<String>,
    /// The validity of the root CRL signed alongside.
    pub root_crl_interval: Duration,
}

impl Default for IntermediateOptions {
    fn default() -> Self {
        IntermediateOptions {
            validity: DEFAULT_INTERMEDIATE_VALIDITY,
            permit_dns: Vec::new(),
            permit_ip: Vec::new(),
            public_url: None,
            root_crl_interval: DEFAULT_ROOT_CRL_INTERVAL,
        }
    }
}

/// What `pki-ca init` creates.
pub struct InitOptions {
    pub validity: Duration,
    /// Replace an existing root (and drop its intermediates).
    pub force: bool,
    /// Encrypts the root key; `None` writes it unencrypted (with a warning).
    pub passphrase: Option<Passphrase>,
    pub intermediate: IntermediateOptions,
}

impl InitOptions {
    /// A root valid for `validity` and an intermediate with the defaults
    /// (cut to the root's lifetime), the root key unencrypted.
    pub fn new(validity: Duration) -> Self {
        InitOptions {
            validity,
            force: false,
            passphrase: None,
            intermediate: IntermediateOptions::default(),
        }
    }
}

/// Creates the root and an intermediate in `paths`, the root key
/// unencrypted in the same directory: the simple form of [`init`] (tests,
/// a first look).
pub fn init_root(
    paths: &CaPaths,
    validity: Duration,
    force: bool,
) -> Result<InitOutcome, AuthorityError> {
    init(
        paths,
        InitOptions {
            force,
            ..InitOptions::new(validity)
        },
    )
}

/// Creates the root (key and self-signed certificate), its first
/// intermediate and an empty root CRL, unless a root exists and `force`
/// is false: a root is never replaced silently. An existing root without
/// a usable intermediate (a CA from before the hierarchy) gets one.
pub fn init(paths: &CaPaths, opts: InitOptions) -> Result<InitOutcome, AuthorityError> {
    let has_key = paths.root_key().exists() || paths.legacy_root_key().exists();
    if !opts.force && paths.root_cert().exists() && has_key {
        let root = RootAuthority::load(paths)?;
        if !has_usable_intermediate(paths, &root) {
            let signer = RootSigner::load(paths, opts.passphrase.as_ref())?;
            signer.issue_intermediate(paths, &opts.intermediate)?;
            signer.sign_root_crl(paths, opts.intermediate.root_crl_interval)?;
        }
        return Ok(InitOutcome::KeptExisting(root.info));
    }
    let (key, cert) = self_signed_root(opts.validity, opts.intermediate.public_url.as_deref())?;
    if opts.force {
        forget_old_hierarchy(paths)?;
    }
    // The key first: a certificate without its key is useless, a key
    // without its certificate is harmlessly replaced on the next init.
    let pem = keyfile::encode_key(&key, opts.passphrase.as_ref())?;
    files::write_private_key(&paths.root_key(), &pem)?;
    if opts.passphrase.is_none() {
        warn!(
            "the root key {} is NOT encrypted: anyone who can read it can issue certificates every party trusts; give a passphrase ({} or --root-passphrase-file) to encrypt it, and keep it offline (--root-dir)",
            paths.root_key().display(),
            keyfile::PASSPHRASE_ENV
        );
    }
    files::write_public(&paths.root_cert(), &cert.pem())?;
    let info = CertInfo::parse(cert.der()).map_err(|e| AuthorityError::Root(e.to_string()))?;
    info!(
        "created CA root {} (serial {}, valid until {}); its key is in {}",
        paths.root_cert().display(),
        info.short_serial(),
        info.not_after_rfc3339(),
        paths.root_key().display()
    );
    let signer = RootSigner::load(paths, opts.passphrase.as_ref())?;
    signer.issue_intermediate(paths, &opts.intermediate)?;
    signer.sign_root_crl(paths, opts.intermediate.root_crl_interval)?;
    Ok(InitOutcome::Created(info))
}

/// A fresh root key and its self-signed certificate: pathLen 1 (it signs
/// intermediates, which sign leaves), keyCertSign and cRLSign. With a
/// public URL, the root points at its own CRL: `openssl verify
/// -crl_download -crl_check_all` wants a CRL for every certificate of the
/// path, the root included, and finds it only through that pointer.
fn self_signed_root(
    validity: Duration,
    public_url: Option<&str>,
) -> Result<(KeyPair, rcgen::Certificate), AuthorityError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name("Root CA");
    params.serial_number = Some(random_serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = pki_common::unix_now() as i64;
    params.not_before = to_time(now - 300)?;
    params.not_after = to_time(now.saturating_add(validity.as_secs() as i64))?;
    if let Some(url) = public_url {
        crate::extensions::crl_pointer(&mut params, url, ROOT_ID);
    }
    let cert = params.self_signed(&key)?;
    Ok((key, cert))
}

/// `pki-auth <role> <random>`. The random suffix keeps CAs of different
/// installations apart: with one shared name, a peer holding another
/// installation's root would report "bad signature" instead of "unknown
/// issuer".
fn ca_name(role: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pki-auth");
    let mut suffix = [0u8; 4];
    rand::rng().fill_bytes(&mut suffix);
    dn.push(
        DnType::CommonName,
        format!("pki-auth {role} {}", hex::encode(suffix)),
    );
    dn
}

/// Removes what belonged to a root being replaced (`init --force`): its
/// intermediates chain to it alone, and its CRL and pre-hierarchy key are
/// its own.
fn forget_old_hierarchy(paths: &CaPaths) -> Result<(), AuthorityError> {
    let remove = |path: std::path::PathBuf| match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(files::FileError::Io { path, source: e })
        }
        _ => Ok(()),
    };
    for id in intermediate_ids(paths) {
        remove(paths.intermediate_cert(&id))?;
        remove(paths.intermediate_key(&id))?;
    }
    remove(paths.root_crl())?;
    remove(paths.legacy_root_key())?;
    Ok(())
}

/// The ids of the intermediates in `intermediates/`, sorted.
pub fn intermediate_ids(paths: &CaPaths) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(paths.intermediates())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let id = name.strip_suffix(".pem")?;
            (id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
        })
        .collect();
    ids.sort();
    ids
}

/// The latest notBefore of the intermediates in `paths`, if any.
fn latest_not_before(paths: &CaPaths) -> Option<i64> {
    intermediate_ids(paths)
        .iter()
        .filter_map(|id| files::read_cert(&paths.intermediate_cert(id)).ok())
        .filter_map(|der| CertInfo::parse(&der).ok())
        .map(|info| info.not_before)
        .max()
}

/// Whether `paths` holds an intermediate valid now.
fn has_usable_intermediate(paths: &CaPaths, root: &RootAuthority) -> bool {
    let now = pki_common::unix_now() as i64;
    intermediate_ids(paths).iter().any(|id| {
        crate::authority::Intermediate::load(paths, id, root)
            .is_ok_and(|i| i.info.not_before <= now && now < i.info.not_after)
    })
}

/// The root with its key: only where the root key is.
pub struct RootSigner {
    pub root: RootAuthority,
    signer: Signer,
}

impl RootSigner {
    /// Loads the root certificate from `--dir` and the root key from
    /// `--root-dir` (decrypting it with `passphrase` if it is encrypted).
    pub fn load(paths: &CaPaths, passphrase: Option<&Passphrase>) -> Result<Self, AuthorityError> {
        let root = RootAuthority::load(paths)?;
        let key_path = [paths.root_key(), paths.legacy_root_key()]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| AuthorityError::NoRootKey {
                path: paths.root_key().display().to_string(),
            })?;
        let pem = zeroize::Zeroizing::new(files::read_private_key_pem(&key_path)?);
        let key = keyfile::decode_key(&key_path, &pem, passphrase)?;
        let signer = Signer::new(&root.cert, key, &key_path, &paths.root_cert())?;
        Ok(RootSigner { root, signer })
    }

    /// Issues a new intermediate (a new key) into `intermediates/` and
    /// records it in the ledger; answers its id and details. The older
    /// intermediates stay, so their leaves keep verifying and their CRLs
    /// keep being signed.
    pub fn issue_intermediate(
        &self,
        paths: &CaPaths,
        opts: &IntermediateOptions,
    ) -> Result<(String, CertInfo), AuthorityError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params = self.intermediate_params(opts, latest_not_before(paths))?;
        let (der, info) = self.signer.sign(&params, &key)?;
        let id = id_of(&key_id_of(&der).map_err(AuthorityError::Root)?);
        files::write_private_key(&paths.intermediate_key(&id), &key.serialize_pem())?;
        files::write_public(&paths.intermediate_cert(&id), &files::cert_to_pem(&der))?;
        // Recorded now if the CA has a ledger; otherwise when one is needed
        // (`synced_ledger`): `init` creates no ledger.
        if paths.ledger().exists() {
            self.synced_ledger(paths)?;
        }
        info!(
            target: "audit",
            "audit: the root issued intermediate {id} (serial {}, valid until {}) into {}",
            info.serial_hex,
            info.not_after_rfc3339(),
            paths.intermediate_cert(&id).display()
        );
        Ok((id, info))
    }

    /// Every field of an intermediate: pathLen 0 (it signs leaves only),
    /// keyCertSign and cRLSign, SKI and AKI, the permitted subtrees asked
    /// for, and never a lifetime past the root's. Its notBefore is later
    /// than `after` (the latest of the intermediates already there), so
    /// "the one with the latest notBefore", the CA's current issuer, is
    /// always the newest, even when two are issued within a second.
    fn intermediate_params(
        &self,
        opts: &IntermediateOptions,
        after: Option<i64>,
    ) -> Result<CertificateParams, AuthorityError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = ca_name("Intermediate CA");
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let now = pki_common::unix_now() as i64;
        let not_before = match after {
            Some(latest) => (now - 300).max(latest + 1),
            None => now - 300,
        };
        params.not_before = to_time(not_before)?;
        let until = now.saturating_add(opts.validity.as_secs() as i64);
        params.not_after = to_time(until.min(self.root.info.not_after))?;
        params.name_constraints = name_constraints(&opts.permit_dns, &opts.permit_ip)?;
        if let Some(url) = &opts.public_url {
            crate::extensions::revocation_pointers(&mut params, url, ROOT_ID);
        }
        Ok(params)
    }

    /// Revokes the intermediate named by `id_or_serial` and re-signs the
    /// root CRL, which then lists it; answers its id and the CRL number.
    pub fn revoke_intermediate(
        &self,
        paths: &CaPaths,
        id_or_serial: &str,
        revocation: Revocation,
        interval: Duration,
    ) -> Result<(String, u64), AuthorityError> {
        let ledger = self.synced_ledger(paths)?;
        let wanted = id_or_serial.trim().to_ascii_lowercase().replace(':', "");
        let id = ledger
            .intermediates()
            .map_err(ledger_err)?
            .into_iter()
            .find(|r| r.id == wanted || r.serial_hex == wanted)
            .map(|r| r.id)
            .ok_or_else(|| AuthorityError::UnknownIntermediate {
                id: id_or_serial.to_string(),
                dir: paths.intermediates().display().to_string(),
            })?;
        ledger
            .revoke_intermediate(&id, revocation)
            .map_err(ledger_err)?;
        warn!(target: "audit", "audit: revoked intermediate {id} ({}): every certificate it issued fails from now on", revocation.reason);
        let number = self.sign_root_crl(paths, interval)?;
        Ok((id, number))
    }

    /// Signs the root's CRL, valid for `interval`, listing every revoked
    /// intermediate (and every revoked leaf the root signed itself, before
    /// the hierarchy), and writes it to `root.crl.pem` for the online CA
    /// to publish. Answers its number, which is above every number used
    /// before (the counter in `--root-dir`, the CRL in place, and the
    /// pre-hierarchy CRLs the root signed).
    pub fn sign_root_crl(
        &self,
        paths: &CaPaths,
        interval: Duration,
    ) -> Result<u64, AuthorityError> {
        // No ledger yet (a fresh `init`): nothing was revoked.
        let (revoked, legacy) = if paths.ledger().exists() {
            root_revocations(&self.synced_ledger(paths)?)?
        } else {
            (Vec::new(), 0)
        };
        let number = [read_counter(paths), number_in_place(paths), legacy]
            .into_iter()
            .max()
            .unwrap_or(0)
            + 1;
        files::write_public(&paths.root_crl_number(), &format!("{number}\n"))?;
        let now = pki_common::unix_now() as i64;
        let next = now.saturating_add(interval.as_secs().max(1) as i64);
        let der = self.signer.sign_crl(number, now, next, &revoked)?;
        files::write_public(
            &paths.root_crl(),
            &files::pem_encode("X509 CRL", der.as_ref()),
        )?;
        info!(
            target: "audit",
            "audit: the root signed its CRL #{number} listing {} revoked certificate(s), next update {}, into {}",
            revoked.len(),
            pki_common::cert::rfc3339(next),
            paths.root_crl().display()
        );
        Ok(number)
    }

    /// The ledger, with every intermediate in `intermediates/` recorded
    /// (one copied in by hand, or issued before the ledger existed).
    fn synced_ledger(&self, paths: &CaPaths) -> Result<SqliteLedger, AuthorityError> {
        let ledger = SqliteLedger::open(&paths.ledger()).map_err(ledger_err)?;
        for id in intermediate_ids(paths) {
            let Ok(der) = files::read_cert(&paths.intermediate_cert(&id)) else {
                continue;
            };
            if let Ok(info) = CertInfo::parse(&der) {
                ledger
                    .record_intermediate(&IntermediateRecord::new(&id, &der, &info))
                    .map_err(ledger_err)?;
            }
        }
        Ok(ledger)
    }
}

/// What the root CRL lists, from the ledger: the revoked intermediates and
/// the revoked leaves the root signed itself (before the hierarchy); and
/// the number of the last CRL the root signed then.
fn root_revocations(
    ledger: &SqliteLedger,
) -> Result<(Vec<(String, Revocation)>, u64), AuthorityError> {
    let mut revoked: Vec<(String, Revocation)> = ledger
        .intermediates()
        .map_err(ledger_err)?
        .into_iter()
        .filter_map(|r| Some((r.serial_hex, r.revoked?)))
        .collect();
    revoked.extend(
        ledger
            .certificates_of(ROOT_ID)
            .map_err(ledger_err)?
            .into_iter()
            .filter_map(|r| Some((r.serial_hex, r.revoked?))),
    );
    Ok((revoked, ledger.legacy_crl_number().map_err(ledger_err)?))
}

fn ledger_err(e: crate::ledger::LedgerError) -> AuthorityError {
    AuthorityError::Root(format!("the ledger: {e}"))
}

/// The root CRL counter in `--root-dir` (0 if none).
fn read_counter(paths: &CaPaths) -> u64 {
    std::fs::read_to_string(paths.root_crl_number())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The number of the root CRL in `--dir` (0 if none).
fn number_in_place(paths: &CaPaths) -> u64 {
    std::fs::read(paths.root_crl())
        .ok()
        .and_then(|b| pki_common::revocation::crl_from_pem_or_der(&b).ok())
        .and_then(|der| {
            use x509_parser::prelude::FromDer;
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(der.as_ref())
                    .ok()?;
            crl.crl_number().and_then(|n| u64::try_from(n).ok())
        })
        .unwrap_or(0)
}

/// The NameConstraints extension for the permitted subtrees, or none.
fn name_constraints(
    dns: &[String],
    ips: &[String],
) -> Result<Option<NameConstraints>, AuthorityError> {
    if dns.is_empty() && ips.is_empty() {
        return Ok(None);
    }
    let mut permitted = Vec::new();
    for name in dns {
        permitted.push(GeneralSubtree::DnsName(parse_permit_dns(name)?));
    }
    for cidr in ips {
        permitted.push(GeneralSubtree::IpAddress(parse_permit_ip(cidr)?));
    }
    Ok(Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    }))
}

/// A `--permit-dns` value: a DNS name (lower-cased), not an address.
pub fn parse_permit_dns(name: &str) -> Result<String, AuthorityError> {
    let bad = |why: &str| AuthorityError::Root(format!("--permit-dns {name:?}: {why}"));
    let normalized = crate::policy::normalize_name(name)
        .map_err(|_| bad("expected a DNS name such as pki.test"))?;
    if normalized.parse::<IpAddr>().is_ok() {
        return Err(bad("an address goes in --permit-ip, as CIDR (127.0.0.0/8)"));
    }
    Ok(normalized)
}

/// A `--permit-ip` value: CIDR, with a prefix no longer than the address.
pub fn parse_permit_ip(cidr: &str) -> Result<CidrSubnet, AuthorityError> {
    let bad = || {
        AuthorityError::Root(format!(
            "--permit-ip {cidr:?}: expected CIDR such as 127.0.0.0/8 or fd00::/8"
        ))
    };
    let (addr, prefix) = cidr.trim().split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(CidrSubnet::from_addr_prefix(addr, prefix))
}
