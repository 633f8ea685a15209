//! `vauban pki`: a certificate authority for mutual TLS between clients, schedulers and hosts.
//!
//! `init` makes the CA (ECDSA P-256: what rustls, ring and every gRPC implementation handle),
//! `issue` a certificate whose one URI SAN is the holder's SPIFFE-style identity
//! (`spiffe://<trust-domain>/host/<node-id>`, `.../client/<role>/<name>`,
//! `.../scheduler/<name>`), `revoke` adds a serial to the CA's revocation list, and `show`
//! prints what a certificate says. `vauban dev` uses the same functions for its generated PKI.
//! Certificates are written by rcgen and read by x509-parser: no DER by hand.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData as _, RevokedCertParams, SanType, SerialNumber,
};
use serde_json::json;
use time::OffsetDateTime;
use vauban_scheduler::identity::{self, Role, SpiffeId};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::client::Format;
use super::{with_extension, write_file, write_replacing};

/// The trust domain when none is given.
pub(crate) const DEFAULT_TRUST_DOMAIN: &str = "vauban.local";
/// Issued certificates start this long before now, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(300);
/// How long a CRL is declared current (`nextUpdate`); a later `revoke` replaces it.
const CRL_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Create a certificate authority: DIR/ca.pem, DIR/ca.key (owner-only) and an empty
    /// revocation list DIR/crl.pem.
    Init(InitArgs),
    /// Issue a certificate for a scheduler, a host or a client: PREFIX.pem (the chain, leaf
    /// first) and PREFIX.key (owner-only).
    Issue(IssueArgs),
    /// Revoke a certificate: add its serial to DIR/crl.pem (schedulers started with --crl read
    /// it again on SIGHUP, and close the revoked certificate's connections).
    Revoke(RevokeArgs),
    /// Show a certificate's identity, role, validity and serial.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Directory to create the CA in.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The trust domain every identity this CA issues is in.
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// How long the CA is valid.
    #[arg(long, default_value = "10y", value_parser = humantime::parse_duration)]
    valid_for: Duration,
    /// Overwrite an existing CA (every certificate it issued stops being trusted).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct IssueArgs {
    /// The CA directory (`vauban pki init --out DIR`).
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// What the holder is.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Who the holder is: a host's node id, a client's or scheduler's name.
    #[arg(long)]
    name: String,
    /// A DNS name clients reach the holder by (repeatable). A scheduler gets `localhost` and
    /// 127.0.0.1 when no --dns or --ip is given.
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
    /// An IP address clients reach the holder by (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// How long the certificate is valid.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    valid_for: Duration,
    /// Path prefix of the files to write: PREFIX.pem and PREFIX.key.
    #[arg(long, short = 'o', value_name = "PREFIX")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// The CA directory that issued the certificate.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// The certificate to revoke (PEM).
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The certificate (PEM; the first of a chain is shown).
    cert: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    output: Format,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: identity::IdentityError| e.to_string())
}

pub(crate) fn run(cmd: PkiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PkiCommand::Init(args) => {
            let ca = Ca::create(&args.out, &args.trust_domain, args.valid_for, args.force)?;
            println!("trust domain: {}", ca.trust_domain);
            println!("CA:           {}", args.out.join(CA_CERT).display());
            println!("CA key:       {}", args.out.join(CA_KEY).display());
            println!("CRL:          {}", args.out.join(CRL).display());
        }
        PkiCommand::Issue(args) => {
            let ca = Ca::open(&args.ca)?;
            let issued = ca.issue(&Subject {
                role: args.role,
                name: &args.name,
                dns: &args.dns,
                ips: &args.ips,
                valid_for: args.valid_for,
            })?;
            let (cert, key) = issued.write(&args.out, args.force)?;
            println!("identity:    {}", issued.id);
            println!("certificate: {}", cert.display());
            println!("key:         {}", key.display());
        }
        PkiCommand::Revoke(args) => {
            let ca = Ca::open(&args.ca)?;
            let pem = std::fs::read(&args.cert)
                .with_context(|| format!("reading {}", args.cert.display()))?;
            let revoked = ca.revoke(&args.ca, &pem)?;
            let crl = args.ca.join(CRL);
            if revoked.newly {
                println!(
                    "revoked serial {} ({}); {} now lists {} certificate(s)",
                    revoked.serial,
                    revoked.identity,
                    crl.display(),
                    revoked.listed
                );
                println!(
                    "schedulers started with --crl {} read it again on SIGHUP (kill -HUP), and \
                     close the revoked certificate's connections",
                    crl.display()
                );
            } else {
                println!(
                    "serial {} ({}) is already revoked in {}",
                    revoked.serial,
                    revoked.identity,
                    crl.display()
                );
            }
        }
        PkiCommand::Show(args) => show(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// File names in a CA directory.
pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca.key";
pub(crate) const CRL: &str = "crl.pem";

/// A certificate authority opened from its directory.
pub(crate) struct Ca {
    cert_pem: String,
    key: KeyPair,
    trust_domain: String,
    not_after: OffsetDateTime,
}

/// What to put in a certificate.
pub(crate) struct Subject<'a> {
    pub(crate) role: Role,
    pub(crate) name: &'a str,
    pub(crate) dns: &'a [String],
    pub(crate) ips: &'a [IpAddr],
    pub(crate) valid_for: Duration,
}

/// A certificate and its key, not yet written.
pub(crate) struct Issued {
    id: SpiffeId,
    chain_pem: String,
    key_pem: String,
}

/// What `revoke` did.
struct Revoked {
    serial: String,
    identity: String,
    newly: bool,
    listed: usize,
}

impl Ca {
    /// Creates a CA in `dir`: its certificate carries the trust domain as its URI SAN
    /// (`spiffe://<trust-domain>`), and an empty revocation list is written beside it.
    pub(crate) fn create(
        dir: &Path,
        trust_domain: &str,
        valid_for: Duration,
        force: bool,
    ) -> anyhow::Result<Self> {
        // Checks the trust domain with the one grammar identities are parsed with.
        SpiffeId::new(trust_domain, Role::Scheduler, "check")
            .with_context(|| format!("invalid trust domain {trust_domain:?}"))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + valid_for;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Vauban");
        // Named by its key too: two CAs of one trust domain must not share a name, or a
        // verifier looking for the issuer by name finds the wrong one.
        let short: String = params
            .key_identifier(&key)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Vauban CA {trust_domain} {short}"),
        );
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}")
                .try_into()
                .context("trust domain as a URI")?,
        )];
        let cert = params
            .self_signed(&key)
            .context("signing the CA certificate")?;
        let ca = Self {
            cert_pem: cert.pem(),
            key,
            trust_domain: trust_domain.to_owned(),
            not_after: params.not_after,
        };
        write_file(
            &dir.join(CA_KEY),
            ca.key.serialize_pem().as_bytes(),
            0o600,
            force,
        )?;
        write_file(&dir.join(CA_CERT), ca.cert_pem.as_bytes(), 0o644, force)?;
        let crl = ca.sign_crl(Vec::new(), 1)?;
        write_replacing(&dir.join(CRL), crl.as_bytes())?;
        Ok(ca)
    }

    /// Opens the CA in `dir`.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert_pem = std::fs::read_to_string(&cert_path).with_context(|| {
            format!(
                "reading the CA certificate {} (create a CA with `vauban pki init --out {}`)",
                cert_path.display(),
                dir.display()
            )
        })?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading the CA key {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a usable private key", key_path.display()))?;
        let der = first_certificate(cert_pem.as_bytes(), &cert_path)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("{}: malformed certificate: {e}", cert_path.display()))?;
        ensure!(
            cert.is_ca(),
            "{} is not a CA certificate",
            cert_path.display()
        );
        ensure!(
            cert.public_key().raw == key.subject_public_key_info().as_slice(),
            "the CA key {} does not match the CA certificate {}",
            key_path.display(),
            cert_path.display()
        );
        let trust_domain = uris(&cert)
            .into_iter()
            .find_map(|uri| uri.strip_prefix("spiffe://").map(|td| td.trim_end_matches('/')))
            .with_context(|| {
                format!(
                    "{} names no trust domain (a spiffe://<trust-domain> URI SAN): was it made by `vauban pki init`?",
                    cert_path.display()
                )
            })?
            .to_owned();
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .context("the CA's notAfter")?;
        Ok(Self {
            cert_pem,
            key,
            trust_domain,
            not_after,
        })
    }

    fn issuer(&self) -> anyhow::Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).context("reading the CA certificate")
    }

    /// A certificate for `subject`, valid from now for `subject.valid_for`.
    pub(crate) fn issue(&self, subject: &Subject<'_>) -> anyhow::Result<Issued> {
        let Subject {
            role,
            name,
            dns,
            ips,
            valid_for,
        } = *subject;
        let id = SpiffeId::new(&self.trust_domain, role, name)
            .with_context(|| format!("invalid name {name:?} for a {role} certificate"))?;
        let now = OffsetDateTime::now_utc();
        let not_after = now + valid_for;
        ensure!(
            not_after <= self.not_after,
            "the certificate would outlive its CA (valid until {}): pass a shorter --valid-for",
            rfc3339(self.not_after.unix_timestamp())
        );
        let mut params = CertificateParams::default();
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Vauban");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            // A scheduler serves; it may also dial other schedulers one day.
            Role::Scheduler => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let mut sans = vec![SanType::URI(
            id.to_string().try_into().context("identity as a URI")?,
        )];
        let (dns, ips): (Vec<String>, Vec<IpAddr>) =
            if role == Role::Scheduler && dns.is_empty() && ips.is_empty() {
                (
                    vec!["localhost".to_owned()],
                    vec![IpAddr::from([127, 0, 0, 1])],
                )
            } else {
                (dns.to_vec(), ips.to_vec())
            };
        for name in dns {
            sans.push(SanType::DnsName(
                name.as_str()
                    .try_into()
                    .with_context(|| format!("invalid DNS name {name:?}"))?,
            ));
        }
        sans.extend(ips.into_iter().map(SanType::IpAddress));
        params.subject_alt_names = sans;
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating the key")?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .context("signing the certificate")?;
        Ok(Issued {
            id,
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// Adds the first certificate of `cert_pem` to the revocation list in `dir`, after checking
    /// that this CA issued it.
    fn revoke(&self, dir: &Path, cert_pem: &[u8]) -> anyhow::Result<Revoked> {
        let der = first_certificate(cert_pem, Path::new("the certificate"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow::anyhow!("malformed certificate: {e}"))?;
        let ca_der = first_certificate(self.cert_pem.as_bytes(), Path::new(CA_CERT))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| anyhow::anyhow!("malformed CA certificate: {e}"))?;
        cert.verify_signature(Some(ca.public_key())).map_err(|_| {
            anyhow::anyhow!(
                "this certificate was not issued by the CA in {}",
                dir.display()
            )
        })?;
        let serial = cert.raw_serial().to_vec();
        let identity = identity::spiffe_id(&der.clone().into())
            .map_or_else(|e| format!("no identity: {e}"), |id| id.to_string());
        let crl_path = dir.join(CRL);
        let (mut revoked, number) = read_crl(&crl_path, &ca)?;
        let serial_text = cert.raw_serial_as_string();
        if revoked
            .iter()
            .any(|r| r.serial_number.as_ref() == serial.as_slice())
        {
            return Ok(Revoked {
                serial: serial_text,
                identity,
                newly: false,
                listed: revoked.len(),
            });
        }
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: OffsetDateTime::now_utc(),
            reason_code: None,
            invalidity_date: None,
        });
        let listed = revoked.len();
        let crl = self.sign_crl(revoked, number + 1)?;
        write_replacing(&crl_path, crl.as_bytes())?;
        Ok(Revoked {
            serial: serial_text,
            identity,
            newly: true,
            listed,
        })
    }

    fn sign_crl(&self, revoked: Vec<RevokedCertParams>, number: u64) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now,
            next_update: now + CRL_LIFETIME,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer()?)
        .context("signing the revocation list")?
        .pem()
        .context("encoding the revocation list")
    }
}

impl Issued {
    /// Writes PREFIX.pem and PREFIX.key (owner-only); returns their paths.
    pub(crate) fn write(&self, prefix: &Path, force: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = with_extension(prefix, "pem");
        let key = with_extension(prefix, "key");
        write_file(&key, self.key_pem.as_bytes(), 0o600, force)?;
        write_file(&cert, self.chain_pem.as_bytes(), 0o644, force)?;
        Ok((cert, key))
    }
}

/// The revocation list in `path` (checked to be `ca`'s) as rcgen entries, with its number; an
/// empty list numbered 0 if there is no file yet.
fn read_crl(
    path: &Path,
    ca: &X509Certificate<'_>,
) -> anyhow::Result<(Vec<RevokedCertParams>, u64)> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: malformed PEM: {e}", path.display()))?;
    ensure!(
        block.label == "X509 CRL",
        "{} holds a {} block, not an X509 CRL",
        path.display(),
        block.label
    );
    let (_, crl) = x509_parser::parse_x509_crl(&block.contents)
        .map_err(|e| anyhow::anyhow!("{}: malformed revocation list: {e}", path.display()))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| anyhow::anyhow!("{} is not signed by this CA", path.display()))?;
    let number = match crl.crl_number() {
        None => 0,
        Some(n) => {
            let bytes = n.to_bytes_be();
            ensure!(bytes.len() <= 8, "{}: CRL number too large", path.display());
            let mut be = [0u8; 8];
            be[8 - bytes.len()..].copy_from_slice(&bytes);
            u64::from_be_bytes(be)
        }
    };
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| {
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                    .context("a revocation date")?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((revoked, number))
}

fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let pem =
        std::fs::read(&args.cert).with_context(|| format!("reading {}", args.cert.display()))?;
    let der = first_certificate(&pem, &args.cert)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("{}: malformed certificate: {e}", args.cert.display()))?;
    let spiffe = identity::spiffe_id(&der.clone().into());
    let (identity, role, name, trust_domain) = match (&spiffe, cert.is_ca()) {
        (Ok(id), _) => (
            id.to_string(),
            id.peer.role.to_string(),
            id.peer.name.clone(),
            id.trust_domain.clone(),
        ),
        (Err(_), true) => {
            let td = uris(&cert)
                .into_iter()
                .find_map(|u| {
                    u.strip_prefix("spiffe://")
                        .map(|t| t.trim_end_matches('/').to_owned())
                })
                .unwrap_or_default();
            (format!("spiffe://{td}"), "ca".to_owned(), String::new(), td)
        }
        (Err(e), false) => (
            format!("none: {e}"),
            "-".to_owned(),
            String::new(),
            String::new(),
        ),
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => ips.push(ip_text(bytes)),
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let status = if now < not_before {
        "not yet valid"
    } else if now > not_after {
        "expired"
    } else {
        "valid"
    };
    let serial = cert.raw_serial_as_string();
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "identity": identity,
                "role": role,
                "name": name,
                "trust_domain": trust_domain,
                "subject": cert.subject().to_string(),
                "issuer": cert.issuer().to_string(),
                "dns": dns,
                "ips": ips,
                "not_before": rfc3339(not_before),
                "not_after": rfc3339(not_after),
                "status": status,
                "serial": serial,
                "ca": cert.is_ca(),
            }))?
        ),
        Format::Table => {
            println!("identity:     {identity}");
            println!("role:         {role}");
            if !name.is_empty() {
                println!("name:         {name}");
            }
            println!("trust domain: {trust_domain}");
            println!("subject:      {}", cert.subject());
            println!("issuer:       {}", cert.issuer());
            if !dns.is_empty() {
                println!("dns names:    {}", dns.join(", "));
            }
            if !ips.is_empty() {
                println!("ip addresses: {}", ips.join(", "));
            }
            println!("not before:   {}", rfc3339(not_before));
            println!("not after:    {} ({status})", rfc3339(not_after));
            println!("serial:       {serial}");
        }
    }
    Ok(())
}

/// The URI SANs of a certificate.
fn uris<'a>(cert: &'a X509Certificate<'_>) -> Vec<&'a str> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(bytes);
            IpAddr::from(a).to_string()
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            IpAddr::from(a).to_string()
        }
        _ => format!("{bytes:?}"),
    }
}

/// The first certificate of a PEM file, as DER.
fn first_certificate(pem: &[u8], path: &Path) -> anyhow::Result<Vec<u8>> {
    let chain = identity::certificates_from_pem(pem)
        .with_context(|| format!("reading {}", path.display()))?;
    match chain.into_iter().next() {
        Some(der) => Ok(der.as_ref().to_vec()),
        None => bail!("{} holds no certificate", path.display()),
    }
}

/// Unix seconds as RFC 3339, UTC.
fn rfc3339(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// When the first certificate in `path` stops being valid, if it can be read.
pub(crate) fn not_after(path: &Path) -> Option<SystemTime> {
    let pem = std::fs::read(path).ok()?;
    let der = first_certificate(&pem, path).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `vauban dev`'s PKI under `dir`: a CA, a scheduler certificate, one per host, and the
/// operator, submitter and auditor clients. Made once and reused; a certificate that is
/// missing or expires within a week is issued again.
pub(crate) struct DevPki {
    pub(crate) dir: PathBuf,
}

/// A dev certificate is issued again when it has less than this left.
const DEV_RENEW_BEFORE: Duration = Duration::from_secs(7 * 86_400);
/// How long dev certificates are valid.
const DEV_VALIDITY: Duration = Duration::from_secs(365 * 86_400);

impl DevPki {
    /// Makes or reuses the PKI under `dir` for the scheduler and `hosts`.
    pub(crate) fn ensure(dir: &Path, hosts: &[String]) -> anyhow::Result<Self> {
        let ca = if dir.join(CA_KEY).exists() {
            Ca::open(dir)?
        } else {
            Ca::create(dir, DEFAULT_TRUST_DOMAIN, 10 * DEV_VALIDITY, false)?
        };
        let mut wanted: Vec<(Role, String, String)> =
            vec![(Role::Scheduler, "dev".to_owned(), "scheduler".to_owned())];
        wanted.extend(hosts.iter().map(|h| (Role::Host, h.clone(), h.clone())));
        for role in [Role::Operator, Role::Submitter, Role::Auditor] {
            wanted.push((role, "dev".to_owned(), role.as_str().to_owned()));
        }
        let fresh_until = SystemTime::now() + DEV_RENEW_BEFORE;
        for (role, name, file) in wanted {
            let prefix = dir.join(&file);
            let fresh = not_after(&with_extension(&prefix, "pem")).is_some_and(|t| t > fresh_until)
                && with_extension(&prefix, "key").exists();
            if fresh {
                continue;
            }
            let ips = [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ];
            let dns = ["localhost".to_owned()];
            let scheduler = role == Role::Scheduler;
            ca.issue(&Subject {
                role,
                name: &name,
                dns: if scheduler { &dns } else { &[] },
                ips: if scheduler { &ips } else { &[] },
                valid_for: DEV_VALIDITY,
            })?
            .write(&prefix, true)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// PREFIX.pem and PREFIX.key of `file` (`scheduler`, `dev-1`, `operator`, ...).
    pub(crate) fn files(&self, file: &str) -> (PathBuf, PathBuf) {
        let prefix = self.dir.join(file);
        (
            with_extension(&prefix, "pem"),
            with_extension(&prefix, "key"),
        )
    }

    /// The CA certificate.
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The revocation list.
    pub(crate) fn crl(&self) -> PathBuf {
        self.dir.join(CRL)
    }
}
