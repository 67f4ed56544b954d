//! Certificates for the testbed, made at start with OpenSSL: a throwaway CA and a
//! `localhost` server certificate (SAN localhost, 127.0.0.1, ::1) signed by it.
//!
//! The CA is written as a PEM file and as an OpenSSL hashed directory (`<hash>.0`), so a
//! proxy trusts it with `-c DIR`. Nothing here is meant for production use.

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509};
use std::path::{Path, PathBuf};

/// The files a proxy needs to trust the testbed, and the server's certificate and key.
pub struct Certs {
    pub ca_pem: PathBuf,
    pub ca_dir: PathBuf,
    pub leaf: X509,
    pub leaf_key: PKey<Private>,
}

fn key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut n = X509Name::builder()?;
    n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(n.build())
}

/// Makes a CA and a server certificate and writes the CA into `dir`.
pub fn make(dir: &Path) -> Result<Certs, String> {
    make_for(dir, &[])
}

/// Like [`make`], with more IP addresses in the server certificate (a testbed listening
/// on a network namespace's address).
pub fn make_for(dir: &Path, extra_ips: &[std::net::IpAddr]) -> Result<Certs, String> {
    make_inner(dir, extra_ips).map_err(|e| format!("cannot make the testbed certificates: {e}"))
}

fn make_inner(
    dir: &Path,
    extra_ips: &[std::net::IpAddr],
) -> Result<Certs, Box<dyn std::error::Error>> {
    let ca_key = key()?;
    // A subject of its own per CA: two testbed CAs in one trust store (a proxy's and the
    // service's) must not be mistaken for each other.
    let tag = &random_token()[..12];
    let ca_name = name(&format!("localproxy-rs testbed CA {tag}"))?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&ca_name)?;
    b.set_issuer_name(&ca_name)?;
    b.set_pubkey(&ca_key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let ca = b.build();

    let leaf_key = key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = BigNum::from_u32(2)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    let subject = name("localhost")?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&leaf_key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_agreement()
            .build()?,
    )?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    san.dns("localhost").ip("127.0.0.1").ip("::1");
    for ip in extra_ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(san)?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let leaf = b.build();

    std::fs::create_dir_all(dir)?;
    let ca_pem_bytes = ca.to_pem()?;
    let ca_pem = dir.join("testbed-ca.pem");
    std::fs::write(&ca_pem, &ca_pem_bytes)?;
    let ca_dir = dir.join("testbed-ca");
    std::fs::create_dir_all(&ca_dir)?;
    std::fs::write(
        ca_dir.join(format!("{:08x}.0", ca.subject_name_hash())),
        &ca_pem_bytes,
    )?;
    Ok(Certs {
        ca_pem,
        ca_dir,
        leaf,
        leaf_key,
    })
}

/// A random URL-safe token of 64 characters from the OS random source.
pub fn random_token() -> String {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut b = [0u8; 64];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // Tests only: uniqueness matters, not secrecy.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> (i % 16 * 8)) as u8 ^ i as u8;
        }
    }
    b.iter()
        .map(|x| ALPHABET[(*x & 63) as usize] as char)
        .collect()
}
