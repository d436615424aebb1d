//! Who sent a request: a bearer token from a static token file (kube-apiserver's
//! `--token-auth-file` format: one `token,user,uid,"group1,group2"` line per user), or a TLS
//! client certificate signed by the cluster CA (kube-apiserver's `--client-ca-file` rule: the
//! subject's CN is the user, its O values the groups).

use std::collections::HashMap;
use std::path::Path;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (`admin`).
    pub name: String,
    /// Groups (`system:masters`).
    pub groups: Vec<String>,
}

impl User {
    /// The user a DER certificate names: subject CN, and O values as groups. `None` when the
    /// certificate cannot be read or has no CN. It does not verify anything: the TLS layer has.
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (name, groups) = x509_subject(der)?;
        (!name.is_empty()).then_some(User { name, groups })
    }
}

/// The identity of a verified TLS client certificate, put on each request of the connection by
/// the server (`server.rs`); the authenticate middleware prefers it to a bearer token.
#[derive(Debug, Clone)]
pub struct CertificateUser(pub User);

/// One DER element at the start of `input`: (tag, contents, what follows).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

/// The subject CN and O values of an X.509 certificate (RFC 5280 4.1: Certificate → TBS →
/// [version], serial, signature, issuer, validity, subject → RDN sets → type and value).
fn x509_subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (SEQUENCE, cert, _) = der_element(der)? else { return None };
    let (SEQUENCE, tbs, _) = der_element(cert)? else { return None };
    let mut rest = tbs;
    let (tag, _, after_version) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after_version;
    }
    for _ in 0..4 {
        rest = der_element(rest)?.2;
    }
    let (SEQUENCE, mut subject, _) = der_element(rest)? else { return None };
    let (mut cn, mut orgs) = (String::new(), Vec::new());
    while !subject.is_empty() {
        let (SET, mut rdn, next) = der_element(subject)? else { return None };
        subject = next;
        while !rdn.is_empty() {
            let (SEQUENCE, attr, next) = der_element(rdn)? else { return None };
            rdn = next;
            let (OID, oid, value) = der_element(attr)? else { return None };
            // UTF8String, PrintableString, IA5String, ...: the bytes are the text.
            let text = String::from_utf8_lossy(der_element(value)?.1).into_owned();
            match oid {
                OID_COMMON_NAME => cn = text,
                OID_ORGANIZATION => orgs.push(text),
                _ => {}
            }
        }
    }
    Some((cn, orgs))
}

/// The known tokens.
#[derive(Debug, Default)]
pub struct TokenAuth {
    tokens: HashMap<String, User>,
}

impl TokenAuth {
    /// Parses a token file's contents; malformed lines are reported with their number.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(4, ',');
            let token = fields.next().unwrap_or("").trim();
            let name = fields.next().unwrap_or("").trim();
            let _uid = fields.next();
            let groups = fields
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect();
            if token.is_empty() || name.is_empty() {
                anyhow::bail!("token file line {}: expected token,user,uid[,\"groups\"]", i + 1);
            }
            tokens.insert(token.to_string(), User { name: name.to_string(), groups });
        }
        Ok(Self { tokens })
    }

    /// Loads a token file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let a = TokenAuth::parse("# comment\nsecret,admin,admin,\"system:masters,x\"\nt2,bob,2\n").unwrap();
        assert_eq!(a.user("secret").unwrap().groups, ["system:masters", "x"]);
        assert_eq!(a.user("t2").unwrap().name, "bob");
        assert!(a.user("nope").is_none());
        assert!(TokenAuth::parse(",x").is_err());
    }

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn attr(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
        tlv(SET, &tlv(SEQUENCE, &[tlv(OID, oid), tlv(tag, value.as_bytes())].concat()))
    }

    #[test]
    fn certificate_subject_cn_and_o() {
        // A certificate made by the cluster's own code: CN=admin, O=system:masters.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "some-ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let (pem, _) = crate::pki::client_certificate("admin", "system:masters", &issuer).unwrap();
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let user = User::from_certificate(&der).unwrap();
        assert_eq!((user.name.as_str(), user.groups.as_slice()), ("admin", &["system:masters".to_string()][..]));

        // Several O values (in their own RDNs or one multi-valued RDN), other attributes,
        // PrintableString values, long lengths, and no version field.
        let subject = tlv(
            SEQUENCE,
            &[
                attr(&[0x55, 0x04, 0x06], 0x13, "DE"),
                attr(OID_ORGANIZATION, 0x0c, "dev"),
                attr(OID_COMMON_NAME, 0x0c, &"j".repeat(200)),
                tlv(SET, &[tlv(SEQUENCE, &[tlv(OID, OID_ORGANIZATION), tlv(0x13, b"ops")].concat()),
                           tlv(SEQUENCE, &[tlv(OID, OID_ORGANIZATION), tlv(0x0c, b"sre")].concat())].concat()),
            ]
            .concat(),
        );
        let tbs = [tlv(0x02, &[1]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), subject].concat();
        let cert = tlv(SEQUENCE, &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat());
        let user = User::from_certificate(&cert).unwrap();
        assert_eq!(user.name, "j".repeat(200));
        assert_eq!(user.groups, ["dev", "ops", "sre"]);

        // Truncated or not a certificate at all: no user, no panic.
        for bad in [&cert[..cert.len() - 5], &[][..], &[0x30, 0x85, 1, 2, 3, 4, 5][..], b"not der"] {
            assert!(User::from_certificate(bad).is_none());
        }
        // No CN: no user.
        let tbs = [tlv(0x02, &[1]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &attr(OID_ORGANIZATION, 0x0c, "x"))].concat();
        assert!(User::from_certificate(&tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))).is_none());
    }
}
