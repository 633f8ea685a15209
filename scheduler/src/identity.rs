//! Who is calling: identities from verified client certificates, and the role each RPC needs.
//!
//! Every peer of a scheduler (hosts, clients, and schedulers themselves) holds a certificate
//! from the operator's CA whose one SPIFFE-style URI SAN names it:
//!
//! | URI SAN                                        | role                            |
//! |------------------------------------------------|---------------------------------|
//! | `spiffe://<trust-domain>/host/<node-id>`       | host, the node `<node-id>`      |
//! | `spiffe://<trust-domain>/client/<role>/<name>` | submitter, operator or auditor  |
//! | `spiffe://<trust-domain>/scheduler/<name>`     | scheduler                       |
//!
//! The TLS handshake proves that the certificate chains to the client CA, is within its
//! validity window and is not on the certificate revocation list ([`ClientAuth::verifier`]);
//! [`ClientAuth::identify`] then reads the identity from the verified leaf, once per
//! connection, and the server hands it to every request on that connection as a
//! [`ConnectionInfo`] extension. Each handler starts with one `require` line naming the role
//! it needs. Names are never taken from what a peer says about itself: a host's node id is the
//! one in its certificate.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, RootCertStore};
use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;

/// The scheme of every identity.
const SPIFFE: &str = "spiffe://";

/// What a peer may do, as its certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A scheduler (its serving certificate).
    Scheduler,
    /// A host agent: holds the `HostLink` stream and fetches modules.
    Host,
    /// A client that uploads modules and submits, reads and cancels jobs.
    Submitter,
    /// A client that may also drain nodes, set their eligibility and set quotas.
    Operator,
    /// A client that only reads.
    Auditor,
}

impl Role {
    /// Every role, in the order shown to people.
    pub const ALL: [Role; 5] = [
        Role::Scheduler,
        Role::Host,
        Role::Submitter,
        Role::Operator,
        Role::Auditor,
    ];

    /// The role's name, as in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Host => "host",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
        }
    }

    /// True for the roles of people and their tools (submitter, operator, auditor).
    pub fn is_client(self) -> bool {
        matches!(self, Role::Submitter | Role::Operator | Role::Auditor)
    }

    /// "a submitter", "an operator": for messages.
    fn with_article(self) -> String {
        let article = if matches!(self, Role::Operator | Role::Auditor) {
            "an"
        } else {
            "a"
        };
        format!("{article} {}", self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole { role: s.to_owned() })
    }
}

/// An authenticated peer: its role and its name (a node id for hosts).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// What it may do.
    pub role: Role,
    /// Who it is within its role: a host's node id, a client's or scheduler's name.
    pub name: String,
}

/// A SPIFFE-style identity: a trust domain and a peer in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// The trust domain, `vauban.local` by default: the CA's.
    pub trust_domain: String,
    /// The peer it names.
    pub peer: Peer,
}

impl SpiffeId {
    /// The identity of `name` holding `role` in `trust_domain`, checked as [`SpiffeId::parse`]
    /// would check its URI.
    ///
    /// # Errors
    /// When the trust domain or the name is not made of the characters SPIFFE allows.
    pub fn new(trust_domain: &str, role: Role, name: &str) -> Result<Self, IdentityError> {
        let id = Self {
            trust_domain: trust_domain.to_owned(),
            peer: Peer {
                role,
                name: name.to_owned(),
            },
        };
        // One grammar: what is built is what parses.
        Self::parse(&id.to_string())
    }

    /// Parses `spiffe://<trust-domain>/host/<id>`, `.../client/<role>/<name>` or
    /// `.../scheduler/<name>`.
    ///
    /// # Errors
    /// When the URI is not of one of these forms, names an unknown role, or uses characters
    /// outside SPIFFE's (trust domain: `a-z 0-9 . - _`; segments: `a-z A-Z 0-9 . - _`).
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let malformed = |why: &str| IdentityError::MalformedId {
            id: uri.to_owned(),
            why: why.to_owned(),
        };
        let rest = uri
            .strip_prefix(SPIFFE)
            .ok_or_else(|| malformed("it does not start with spiffe://"))?;
        let (trust_domain, path) = rest
            .split_once('/')
            .ok_or_else(|| malformed("it has no path after the trust domain"))?;
        if trust_domain.is_empty()
            || !trust_domain.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            })
        {
            return Err(malformed(
                "the trust domain must be lowercase letters, digits, '.', '-' or '_'",
            ));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if let Some(bad) = segments.iter().find(|s| !segment_is_valid(s)) {
            return Err(malformed(&format!(
                "path segment {bad:?} is empty, '.' or '..', or has characters other than letters, digits, '.', '-' and '_'"
            )));
        }
        let peer = match segments.as_slice() {
            ["host", node] => Peer {
                role: Role::Host,
                name: (*node).to_owned(),
            },
            ["scheduler", name] => Peer {
                role: Role::Scheduler,
                name: (*name).to_owned(),
            },
            ["client", role, name] => {
                let role = Role::from_str(role)?;
                if !role.is_client() {
                    return Err(IdentityError::UnknownRole {
                        role: format!("client/{role}"),
                    });
                }
                Peer {
                    role,
                    name: (*name).to_owned(),
                }
            }
            [kind, ..] if !["host", "scheduler", "client"].contains(kind) => {
                return Err(IdentityError::UnknownRole {
                    role: (*kind).to_owned(),
                });
            }
            _ => {
                return Err(malformed(
                    "expected host/<node-id>, scheduler/<name> or client/<role>/<name>",
                ));
            }
        };
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            peer,
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { trust_domain, peer } = self;
        match peer.role {
            Role::Host | Role::Scheduler => {
                write!(f, "{SPIFFE}{trust_domain}/{}/{}", peer.role, peer.name)
            }
            role => write!(f, "{SPIFFE}{trust_domain}/client/{role}/{}", peer.name),
        }
    }
}

fn segment_is_valid(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Why a certificate does not identify a peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The input is not PEM, or a PEM block is damaged.
    #[error("malformed certificate PEM: {0}")]
    Pem(String),
    /// PEM with no `CERTIFICATE` block.
    #[error("no certificate in the PEM input")]
    NoCertificate,
    /// A certificate that is not valid DER X.509.
    #[error("malformed certificate: {0}")]
    Der(String),
    /// No `spiffe://` URI SAN.
    #[error(
        "the certificate has no spiffe:// URI SAN naming its holder (issue it with `vauban pki issue`)"
    )]
    NoSpiffeId,
    /// More than one `spiffe://` URI SAN.
    #[error("the certificate has {0} spiffe:// URI SANs; an identity needs exactly one")]
    SeveralSpiffeIds(usize),
    /// A `spiffe://` URI that is not one of Vauban's forms.
    #[error("malformed identity {id}: {why}")]
    MalformedId {
        /// The URI.
        id: String,
        /// What is wrong with it.
        why: String,
    },
    /// A role Vauban does not know.
    #[error(
        "unknown role {role:?}: expected host, scheduler, or client/submitter, client/operator, client/auditor"
    )]
    UnknownRole {
        /// The role as written.
        role: String,
    },
    /// An identity from another trust domain.
    #[error("the certificate's identity {id} is in trust domain {found:?}, not {expected:?}")]
    WrongTrustDomain {
        /// The identity.
        id: String,
        /// Its trust domain.
        found: String,
        /// The trust domain expected.
        expected: String,
    },
    /// Past its `notAfter`.
    #[error("the certificate has expired{0}")]
    Expired(String),
    /// Before its `notBefore`.
    #[error("the certificate is not valid yet{0}")]
    NotYetValid(String),
    /// Not signed by the trusted CA.
    #[error("the certificate is not issued by the trusted CA")]
    UnknownIssuer,
    /// On the certificate revocation list.
    #[error("the certificate is revoked")]
    Revoked,
    /// The peer presented no certificate at all.
    #[error("the client presented no certificate")]
    NoClientCertificate,
    /// Any other refusal by the verifier.
    #[error("the certificate is refused: {0}")]
    Refused(String),
}

impl IdentityError {
    /// A verifier's refusal, in Vauban's words where it knows them.
    pub fn from_tls(error: &rustls::Error) -> Self {
        let at = |time: &UnixTime, label: &str| {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.as_secs());
            format!(" ({label} {})", humantime::format_rfc3339_seconds(when))
        };
        match error {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::Expired => Self::Expired(String::new()),
                CertificateError::ExpiredContext { not_after, .. } => {
                    Self::Expired(at(not_after, "not after"))
                }
                CertificateError::NotValidYet => Self::NotYetValid(String::new()),
                CertificateError::NotValidYetContext { not_before, .. } => {
                    Self::NotYetValid(at(not_before, "not before"))
                }
                // A CA of the same name but another key gives a bad signature, not an
                // unknown issuer; so does a certificate altered after signing.
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Self::UnknownIssuer
                }
                CertificateError::Revoked => Self::Revoked,
                CertificateError::BadEncoding => Self::Der("bad encoding".to_owned()),
                other => Self::Refused(format!("{other:?}")),
            },
            rustls::Error::NoCertificatesPresented => Self::NoClientCertificate,
            other => Self::Refused(other.to_string()),
        }
    }
}

/// The certificates of a PEM file, in order (leaf first for a chain).
///
/// # Errors
/// When the PEM is damaged ([`IdentityError::Pem`]) or holds no certificate.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(IdentityError::NoCertificate);
    }
    Ok(certs)
}

/// What is wrong with damaged PEM, in words (the library's own message lists bytes).
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a block has no \"-----END {}-----\" line (truncated?)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "a malformed BEGIN line: {:?}",
            String::from_utf8_lossy(line)
        ),
        Error::Base64Decode(why) => format!("a block is not valid base64: {why}"),
        other => other.to_string(),
    }
}

/// The SPIFFE identity a certificate's URI SAN names (the trust domain is not checked here).
///
/// # Errors
/// When the certificate is not DER X.509, or has no, several, or a malformed `spiffe://` URI
/// SAN.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::Der(e.to_string()))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| IdentityError::Der(format!("subject alternative names: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(SPIFFE) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(IdentityError::NoSpiffeId),
        [uri] => SpiffeId::parse(uri),
        several => Err(IdentityError::SeveralSpiffeIds(several.len())),
    }
}

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A PEM input that does not parse or holds nothing usable.
    #[error("{what}: {source}")]
    Certificate {
        /// Which input: "the client CA", "the scheduler certificate".
        what: &'static str,
        /// Why.
        source: IdentityError,
    },
    /// Any other unusable input.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// How a scheduler authenticates its peers: the client CA, the revocation list, and the trust
/// domain every identity must be in.
#[derive(Clone)]
pub struct ClientAuth {
    verifier: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Peers must present a certificate chaining to one of the certificates in
    /// `client_ca_pem`, not revoked by `crl_pem` (PEM `X509 CRL` blocks) if given, and naming
    /// an identity in `trust_domain`.
    ///
    /// # Errors
    /// When the CA or CRL PEM is malformed or empty, or rustls refuses them.
    pub fn new(
        client_ca_pem: &[u8],
        crl_pem: Option<&[u8]>,
        trust_domain: &str,
    ) -> Result<Self, TlsConfigError> {
        let what = "the client CA";
        let mut roots = RootCertStore::empty();
        for cert in certificates_from_pem(client_ca_pem)
            .map_err(|source| TlsConfigError::Certificate { what, source })?
        {
            roots.add(cert).map_err(|e| TlsConfigError::Invalid {
                what,
                reason: e.to_string(),
            })?;
        }
        let crls = match crl_pem {
            Some(pem) => {
                let what = "the certificate revocation list";
                let crls = CertificateRevocationListDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsConfigError::Invalid {
                        what,
                        reason: format!("malformed PEM: {e}"),
                    })?;
                if crls.is_empty() {
                    return Err(TlsConfigError::Invalid {
                        what,
                        reason: "no X509 CRL block in it".to_owned(),
                    });
                }
                crls
            }
            None => Vec::new(),
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls(crls)
        // Only the CA issues, and it is the trust anchor: there is no intermediate to check.
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| TlsConfigError::Invalid {
            what: "the client certificate verifier",
            reason: e.to_string(),
        })?;
        Ok(Self {
            verifier,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The trust domain identities must be in.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The verifier the TLS handshake uses: a client certificate is required, must chain to
    /// the client CA, be valid now, and not be revoked.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }

    /// Verifies a chain (leaf first) as the handshake would at `now`, then identifies it.
    ///
    /// # Errors
    /// As the handshake would refuse it, or as [`ClientAuth::identify`].
    pub fn authenticate(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Peer, IdentityError> {
        let (leaf, intermediates) = chain.split_first().ok_or(IdentityError::NoCertificate)?;
        self.verifier
            .verify_client_cert(leaf, intermediates, now)
            .map_err(|e| IdentityError::from_tls(&e))?;
        self.identify(leaf)
    }

    /// The peer a verified leaf certificate names.
    ///
    /// # Errors
    /// When it names no identity, or one outside this trust domain.
    pub fn identify(&self, leaf: &CertificateDer<'_>) -> Result<Peer, IdentityError> {
        let id = spiffe_id(leaf)?;
        if id.trust_domain != self.trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                id: id.to_string(),
                found: id.trust_domain,
                expected: self.trust_domain.clone(),
            });
        }
        Ok(id.peer)
    }
}

/// How a connection was authenticated: attached by the server to every request on it.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Who the peer is.
    pub auth: Authentication,
}

/// The outcome of authenticating one connection.
#[derive(Clone, Debug)]
pub enum Authentication {
    /// Plaintext (`--insecure`): no identity, every role allowed.
    Insecure,
    /// A verified certificate naming this peer.
    Peer(Peer),
    /// A certificate that chains to the CA but names no usable identity: every request is
    /// refused with this reason.
    Refused(String),
}

/// Who a request comes from, once [`require`] let it through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A plaintext connection: no identity to hold the request to.
    Insecure,
    /// An authenticated peer.
    Peer(Peer),
}

impl Caller {
    /// Refuses a host whose certificate names another node than the one it registers as.
    ///
    /// A certificate is the host's identity; a `Register.node_id` that differs is a
    /// misconfiguration or an impersonation attempt, and refusing it (rather than silently
    /// using the certificate's id) makes both visible to the operator at once.
    pub(crate) fn may_register_as(&self, node_id: &str) -> Result<(), Status> {
        match self {
            Caller::Peer(Peer {
                role: Role::Host,
                name,
            }) if name != node_id => Err(Status::permission_denied(format!(
                "this host's certificate is for node {name}; it cannot register as node {node_id}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The role an RPC needs, with what the RPC does, for the refusal message.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Need {
    /// Uploading modules, submitting and cancelling jobs: submitter or operator.
    Submit(&'static str),
    /// Reading jobs, modules, plans: submitter, operator or auditor.
    Read(&'static str),
    /// Changing nodes and quotas: operator.
    Operate(&'static str),
    /// Listing nodes and namespaces: any client role.
    Client(&'static str),
    /// The host link: host.
    Host(&'static str),
    /// Health and reflection: any authenticated peer.
    Peer(&'static str),
}

impl Need {
    fn allows(self, role: Role) -> bool {
        match self {
            Need::Submit(_) => matches!(role, Role::Submitter | Role::Operator),
            Need::Read(_) | Need::Client(_) => role.is_client(),
            Need::Operate(_) => role == Role::Operator,
            Need::Host(_) => role == Role::Host,
            Need::Peer(_) => true,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Need::Submit(a)
            | Need::Read(a)
            | Need::Operate(a)
            | Need::Client(a)
            | Need::Host(a)
            | Need::Peer(a) => a,
        }
    }

    fn roles(self) -> &'static str {
        match self {
            Need::Submit(_) => "the submitter or operator role",
            Need::Read(_) | Need::Client(_) => "the submitter, operator or auditor role",
            Need::Operate(_) => "the operator role",
            Need::Host(_) => "the host role",
            Need::Peer(_) => "an identity",
        }
    }
}

/// Lets a request through if its connection's identity holds a role `need` allows.
///
/// # Errors
/// `UNAUTHENTICATED` when the connection has no usable identity, `PERMISSION_DENIED` naming the
/// role needed and the role presented when the role does not allow it.
pub(crate) fn require<T>(request: &Request<T>, need: Need) -> Result<Caller, Status> {
    let Some(info) = request.extensions().get::<ConnectionInfo>() else {
        // Every connection the server accepts carries one: refuse rather than guess.
        return Err(Status::unauthenticated(
            "this connection carries no identity",
        ));
    };
    match &info.auth {
        Authentication::Insecure => Ok(Caller::Insecure),
        Authentication::Refused(why) => Err(Status::unauthenticated(why.clone())),
        Authentication::Peer(peer) if need.allows(peer.role) => Ok(Caller::Peer(peer.clone())),
        Authentication::Peer(peer) => Err(Status::permission_denied(format!(
            "{} needs {}; this client is {}",
            need.action(),
            need.roles(),
            peer.role.with_article()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    const DOMAIN: &str = "vauban.local";

    /// A CA as `vauban pki init` makes one.
    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        pem: String,
    }

    impl Ca {
        fn new(name: &str) -> Self {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::default();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.distinguished_name.push(DnType::CommonName, name);
            let pem = params.self_signed(&key).expect("ca").pem();
            Self { params, key, pem }
        }

        /// A leaf with these URI SANs, valid from `from` to `to` days from now; its PEM and
        /// serial.
        fn leaf(&self, uris: &[&str], from: i64, to: i64) -> (String, Vec<u8>) {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::default();
            params.subject_alt_names = uris
                .iter()
                .map(|u| SanType::URI((*u).try_into().expect("ia5")))
                .collect();
            let now = OffsetDateTime::now_utc();
            params.not_before = now + Duration::days(from);
            params.not_after = now + Duration::days(to);
            params.use_authority_key_identifier_extension = true;
            let cert = params
                .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
                .expect("leaf");
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).expect("parse");
            (cert.pem(), parsed.raw_serial().to_vec())
        }

        fn crl(&self, serials: &[&[u8]]) -> String {
            let now = OffsetDateTime::now_utc();
            CertificateRevocationListParams {
                this_update: now,
                next_update: now + Duration::days(30),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: serials
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(s),
                        revocation_time: now,
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&Issuer::from_params(&self.params, &self.key))
            .expect("crl")
            .pem()
            .expect("pem")
        }
    }

    fn peer(role: Role, name: &str) -> Peer {
        Peer {
            role,
            name: name.to_owned(),
        }
    }

    /// Authenticates `pem` as the handshake would, now: the peer, or an error containing
    /// `expected`.
    fn check(auth: &ClientAuth, pem: &[u8], expected: Result<Peer, &str>) {
        let got =
            certificates_from_pem(pem).and_then(|chain| auth.authenticate(&chain, UnixTime::now()));
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(
                got.to_string().contains(want),
                "expected an error containing {want:?}, got {got:?}: {got}"
            ),
            (got, want) => panic!("expected {want:?}, got {got:?}"),
        }
    }

    #[test]
    fn bad_certificates_are_refused_each_with_its_reason() {
        let ca = Ca::new("vauban test ca");
        let other_ca = Ca::new("another ca");
        let host = |name: &str| format!("spiffe://{DOMAIN}/host/{name}");
        let (revoked, revoked_serial) = ca.leaf(&[&host("revoked")], -1, 30);
        let auth = ClientAuth::new(
            ca.pem.as_bytes(),
            Some(ca.crl(&[&revoked_serial]).as_bytes()),
            DOMAIN,
        )
        .expect("client auth");

        let good = ca.leaf(&[&host("a")], -1, 30).0;
        let operator = ca
            .leaf(
                &[&format!("spiffe://{DOMAIN}/client/operator/alice")],
                -1,
                30,
            )
            .0;
        let garbage =
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let cases: Vec<(&str, String, Result<Peer, &str>)> = vec![
            ("a host", good, Ok(peer(Role::Host, "a"))),
            ("an operator", operator, Ok(peer(Role::Operator, "alice"))),
            (
                "malformed PEM",
                "-----BEGIN CERTIFICATE-----\nMIIB!!!\n".to_owned(),
                Err("malformed certificate PEM"),
            ),
            (
                "no PEM block",
                "hello\n".to_owned(),
                Err("no certificate in the PEM input"),
            ),
            (
                "not X.509",
                garbage.to_owned(),
                Err("malformed certificate"),
            ),
            (
                "no URI SAN",
                ca.leaf(&[], -1, 30).0,
                Err("the certificate has no spiffe:// URI SAN"),
            ),
            (
                "a URI SAN that is not SPIFFE",
                ca.leaf(&["https://example.com/a"], -1, 30).0,
                Err("the certificate has no spiffe:// URI SAN"),
            ),
            (
                "two identities",
                ca.leaf(&[&host("a"), &host("b")], -1, 30).0,
                Err("has 2 spiffe:// URI SANs; an identity needs exactly one"),
            ),
            (
                "wrong trust domain",
                ca.leaf(&["spiffe://other.example/host/a"], -1, 30).0,
                Err(
                    r#"spiffe://other.example/host/a is in trust domain "other.example", not "vauban.local""#,
                ),
            ),
            (
                "unknown client role",
                ca.leaf(&[&format!("spiffe://{DOMAIN}/client/admin/root")], -1, 30)
                    .0,
                Err(r#"unknown role "admin""#),
            ),
            (
                "unknown kind of peer",
                ca.leaf(&[&format!("spiffe://{DOMAIN}/robot/r2")], -1, 30).0,
                Err(r#"unknown role "robot""#),
            ),
            (
                "a host as a client role",
                ca.leaf(&[&format!("spiffe://{DOMAIN}/client/host/a")], -1, 30)
                    .0,
                Err(r#"unknown role "client/host""#),
            ),
            (
                "a path too deep",
                ca.leaf(&[&format!("spiffe://{DOMAIN}/host/a/b")], -1, 30).0,
                Err("malformed identity spiffe://vauban.local/host/a/b: expected host/<node-id>"),
            ),
            (
                "a dot-dot segment",
                ca.leaf(&[&format!("spiffe://{DOMAIN}/host/..")], -1, 30).0,
                Err(r#"path segment "..""#),
            ),
            (
                "expired",
                ca.leaf(&[&host("old")], -30, -1).0,
                Err("the certificate has expired (not after "),
            ),
            (
                "not yet valid",
                ca.leaf(&[&host("early")], 1, 30).0,
                Err("the certificate is not valid yet (not before "),
            ),
            (
                "another CA",
                other_ca.leaf(&[&host("a")], -1, 30).0,
                Err("the certificate is not issued by the trusted CA"),
            ),
            ("revoked", revoked, Err("the certificate is revoked")),
        ];
        for (what, pem, expected) in cases {
            eprintln!("case: {what}");
            check(&auth, pem.as_bytes(), expected);
        }
    }

    #[test]
    fn bad_tls_material_is_named() {
        let ca = Ca::new("ca");
        let err = ClientAuth::new(b"", None, DOMAIN).expect_err("empty CA");
        assert_eq!(
            err.to_string(),
            "the client CA: no certificate in the PEM input"
        );
        let err = ClientAuth::new(ca.pem.as_bytes(), Some(b"nothing"), DOMAIN).expect_err("crl");
        assert_eq!(
            err.to_string(),
            "the certificate revocation list: no X509 CRL block in it"
        );
    }

    #[test]
    fn identities_print_as_they_parse() {
        for uri in [
            "spiffe://vauban.local/host/fr-paris",
            "spiffe://vauban.local/scheduler/main",
            "spiffe://example.org/client/auditor/eve",
        ] {
            assert_eq!(SpiffeId::parse(uri).expect(uri).to_string(), uri);
        }
        let id = SpiffeId::new("vauban.local", Role::Submitter, "ci").expect("id");
        assert_eq!(id.to_string(), "spiffe://vauban.local/client/submitter/ci");
        let err = SpiffeId::new("Vauban.Local", Role::Host, "a").expect_err("uppercase domain");
        assert!(
            err.to_string().contains("trust domain must be lowercase"),
            "{err}"
        );
        let err = SpiffeId::new("vauban.local", Role::Host, "a b").expect_err("space");
        assert!(err.to_string().contains(r#"path segment "a b""#), "{err}");
    }

    fn request(auth: Option<Authentication>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(auth) = auth {
            request
                .extensions_mut()
                .insert(ConnectionInfo { remote: None, auth });
        }
        request
    }

    #[test]
    fn each_need_allows_its_roles_and_names_both_when_it_refuses() {
        let as_role = |role| request(Some(Authentication::Peer(peer(role, "x"))));
        let drain = Need::Operate("draining a node");
        let err = require(&as_role(Role::Submitter), drain).expect_err("submitter");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "draining a node needs the operator role; this client is a submitter"
        );
        assert_eq!(
            require(&as_role(Role::Operator), drain).expect("operator"),
            Caller::Peer(peer(Role::Operator, "x"))
        );
        let table = [
            (Need::Submit("s"), [false, false, true, true, false]),
            (Need::Read("r"), [false, false, true, true, true]),
            (Need::Operate("o"), [false, false, false, true, false]),
            (Need::Client("c"), [false, false, true, true, true]),
            (Need::Host("h"), [false, true, false, false, false]),
            (Need::Peer("p"), [true, true, true, true, true]),
        ];
        for (need, allowed) in table {
            for (role, allowed) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(
                    require(&as_role(role), need).is_ok(),
                    allowed,
                    "{need:?} for {role}"
                );
            }
        }
        let err = require(&as_role(Role::Auditor), Need::Host("connecting as a host"))
            .expect_err("auditor");
        assert_eq!(
            err.message(),
            "connecting as a host needs the host role; this client is an auditor"
        );

        assert_eq!(
            require(&request(Some(Authentication::Insecure)), drain).expect("insecure"),
            Caller::Insecure
        );
        let err = require(&request(None), Need::Peer("p")).expect_err("no identity");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let err = require(
            &request(Some(Authentication::Refused("no identity here".into()))),
            Need::Peer("p"),
        )
        .expect_err("refused");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "no identity here");
    }

    #[test]
    fn a_host_registers_only_as_the_node_its_certificate_names() {
        let host = Caller::Peer(peer(Role::Host, "a"));
        assert!(host.may_register_as("a").is_ok());
        let err = host.may_register_as("b").expect_err("b");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "this host's certificate is for node a; it cannot register as node b"
        );
        assert!(Caller::Insecure.may_register_as("b").is_ok());
    }
}
