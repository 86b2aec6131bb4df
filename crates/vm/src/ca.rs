//! Bowline's own root CA: created on first start, kept in the data directory (or, with
//! replicas on Kubernetes, in a Secret the composition root reads and writes: see
//! [`RootCa::generate`] and [`RootCa::from_pem`]), and the issuer of the serving certificate
//! of the xDS TLS listener.
//!
//! Files, under the data directory: [`ROOT_CERT`] (the root certificate, PEM; what a VM
//! trusts) and [`ROOT_KEY`] (its PKCS#8 key, PEM, mode 0600). Both are written atomically
//! (a temporary file renamed into place) and never replaced once they exist: a file that
//! cannot be read is an error naming it.

use std::{
    fs,
    io::{self, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;

/// The host name proxies use for Bowline's discovery (xDS over TLS) address. It is in the
/// serving certificate, in a VM bundle's `hosts` file (mapped to Bowline's address) and in
/// its `mesh.yaml` `discoveryAddress`. Shaped like the Service `bowline install` creates
/// (`bowline` in `bowline-system`), as Istio uses `istiod.istio-system.svc`.
pub const DISCOVERY_HOST: &str = "bowline.bowline-system.svc";
/// The root certificate, relative to the data directory.
pub const ROOT_CERT: &str = "ca/root-cert.pem";
/// The root key, relative to the data directory.
pub const ROOT_KEY: &str = "ca/root-key.pem";
/// Lifetime of a new root certificate.
pub const ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a serving certificate (issued anew at every start).
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why the CA cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file (or a Secret's key) exists but does not hold what it should; it is never
    /// replaced silently.
    #[error("{what}: {reason}; {remedy}")]
    Corrupt {
        /// The file, or the Secret and key.
        what: String,
        /// What is wrong.
        reason: String,
        /// What to do about it.
        remedy: String,
    },
    /// One of the two files exists without the other.
    #[error(
        "{} exists but {} does not; restore the missing file from a backup, or remove both to create a new root (VMs then need new bundles)",
        present.display(),
        missing.display()
    )]
    Incomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Certificate generation failed.
    #[error("cannot issue the {what} certificate: {source}")]
    Issue {
        /// Which certificate.
        what: &'static str,
        /// The error.
        source: rcgen::Error,
    },
}

/// A certificate and its key, both PEM.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// What [`RootCa::keep_stored`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Both files hold this CA.
    Kept,
    /// These files were missing and were written again.
    Restored(Vec<PathBuf>),
    /// This file holds another certificate or key than the running CA's.
    Replaced(PathBuf),
}

/// The CA that signs Bowline's certificates: its own root (the default), or a plug-in CA,
/// an intermediate whose chain ends at a root someone else keeps ([`crate::plugin`]).
pub struct RootCa {
    /// The signing certificate, PEM: the root itself, or the plug-in's `ca-cert.pem`.
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) issuer: Issuer<'static, KeyPair>,
    /// The certificates between the signing certificate and the root, nearest first (none
    /// for Bowline's own root).
    pub(crate) intermediates: Vec<String>,
    /// The root certificate, PEM: what clients trust. The signing certificate when it is the
    /// root.
    pub(crate) root_pem: String,
}

/// Where the two PEM texts of a CA came from, for errors: [`RootCa::from_pem`].
#[derive(Clone, Debug)]
pub struct PemOrigin {
    /// The certificate's place (a file, or `Secret <ns>/<name> key tls.crt`).
    pub cert: String,
    /// The key's place.
    pub key: String,
    /// What to do when one of them is corrupt.
    pub remedy: String,
}

/// What to do about a corrupt CA file.
const FILE_REMEDY: &str = "restore it from a backup, or remove both CA files to create a new root (VMs then need new bundles)";

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa").finish_non_exhaustive()
    }
}

/// Whether [`RootCa::load_or_create`] found the CA or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Read from the data directory.
    Loaded,
    /// Created now and written to the data directory.
    Created,
}

impl RootCa {
    /// Loads the CA from `data_dir`, or creates and writes it there when neither file
    /// exists.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, Origin), CaError> {
        let cert = data_dir.join(ROOT_CERT);
        let key = data_dir.join(ROOT_KEY);
        match (exists(&cert)?, exists(&key)?) {
            (true, true) => Ok((Self::load(&cert, &key)?, Origin::Loaded)),
            (false, false) => Ok((Self::create(data_dir, now())?, Origin::Created)),
            (true, false) => Err(CaError::Incomplete {
                present: cert,
                missing: key,
            }),
            (false, true) => Err(CaError::Incomplete {
                present: key,
                missing: cert,
            }),
        }
    }

    /// Reads a CA from its certificate and key files, checking that the certificate is a
    /// CA certificate and that the key is its key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CaError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| CaError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let origin = PemOrigin {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            remedy: FILE_REMEDY.into(),
        };
        Self::from_pem(read(cert)?, read(key)?, &origin)
    }

    /// A CA from its certificate and key, PEM, read from `origin` (named in errors):
    /// checked as [`RootCa::load`] checks files.
    pub fn from_pem(
        cert_pem: String,
        key_pem: String,
        origin: &PemOrigin,
    ) -> Result<Self, CaError> {
        let corrupt = |what: &str, reason: String| CaError::Corrupt {
            what: what.to_string(),
            reason,
            remedy: origin.remedy.clone(),
        };
        let (cert, key) = (origin.cert.as_str(), origin.key.as_str());
        let key_pair = KeyPair::from_pem(&key_pem)
            .map_err(|e| corrupt(key, format!("not a PEM private key: {e}")))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| corrupt(cert, format!("not a PEM certificate: {e}")))?;
        let x509 = pem
            .parse_x509()
            .map_err(|e| corrupt(cert, format!("not an X.509 certificate: {e}")))?;
        if !x509.is_ca() {
            return Err(corrupt(cert, "not a CA certificate".into()));
        }
        if x509.public_key().raw != key_pair.subject_public_key_info().as_slice() {
            return Err(corrupt(
                key,
                format!("is not the key of the certificate {cert}"),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair)
            .map_err(|e| corrupt(cert, format!("cannot sign with it: {e}")))?;
        Ok(Self {
            root_pem: cert_pem.clone(),
            cert_pem,
            key_pem,
            issuer,
            intermediates: Vec::new(),
        })
    }

    /// Creates a new root (ECDSA P-256, valid for [`ROOT_VALIDITY`] from `now`) and writes
    /// it under `data_dir`.
    pub fn create(data_dir: &Path, now: OffsetDateTime) -> Result<Self, CaError> {
        let ca = Self::generate(now)?;
        let dir = data_dir.join("ca");
        fs::create_dir_all(&dir).map_err(|source| CaError::Io {
            path: dir.clone(),
            source,
        })?;
        write_atomic(&data_dir.join(ROOT_KEY), ca.key_pem.as_bytes(), 0o600)?;
        write_atomic(&data_dir.join(ROOT_CERT), ca.cert_pem.as_bytes(), 0o644)?;
        Ok(ca)
    }

    /// A new root (ECDSA P-256, valid for [`ROOT_VALIDITY`] from `now`), in memory only: the
    /// caller stores [`cert_pem`](Self::cert_pem) and [`key_pem`](Self::key_pem).
    pub fn generate(now: OffsetDateTime) -> Result<Self, CaError> {
        let issue = |source| CaError::Issue {
            what: "root",
            source,
        };
        let key = KeyPair::generate().map_err(issue)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Bowline");
        // The creation time tells roots apart (in a trust store, in logs).
        let created = now.to_offset(time::UtcOffset::UTC);
        name.push(
            DnType::CommonName,
            format!(
                "Bowline root CA {:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                created.year(),
                u8::from(created.month()),
                created.day(),
                created.hour(),
                created.minute(),
                created.second()
            ),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + ROOT_VALIDITY;
        let cert = params.self_signed(&key).map_err(issue)?;
        Ok(Self {
            cert_pem: cert.pem(),
            root_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
            intermediates: Vec::new(),
        })
    }

    /// The signer of the certificates this CA issues.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The signing certificate, PEM: the root for Bowline's own CA, the plug-in's
    /// `ca-cert.pem` otherwise.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The signing key (PKCS#8), PEM: to be stored, never shown.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The root certificate, PEM: what clients trust (a VM bundle's `root-cert.pem`, SDS
    /// `ROOTCA`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// Whether the signing certificate is an intermediate (a plug-in CA below its root).
    pub fn is_intermediate(&self) -> bool {
        self.cert_pem != self.root_pem
    }

    /// What a certificate this CA signed is sent with, after the leaf: the signing
    /// certificate and the intermediates up to the root, excluding the root itself (peers
    /// have it).
    pub fn chain_above_leaf(&self) -> impl Iterator<Item = &str> {
        let signing = self.is_intermediate().then_some(self.cert_pem.as_str());
        signing
            .into_iter()
            .chain(self.intermediates.iter().map(String::as_str))
    }

    /// Makes `data_dir` keep holding this CA, as a running server checks now and then:
    /// files that went missing are written again from this copy (so `bowline vm bundle`
    /// keeps handing out the root the server serves with, instead of creating another);
    /// files that now hold something else are left alone and reported.
    pub fn keep_stored(&self, data_dir: &Path) -> Result<Stored, CaError> {
        let files = [
            (data_dir.join(ROOT_KEY), &self.key_pem, 0o600),
            (data_dir.join(ROOT_CERT), &self.cert_pem, 0o644),
        ];
        let mut missing = Vec::new();
        for (path, pem, mode) in &files {
            match fs::read_to_string(path) {
                Ok(text) if text == **pem => {}
                Ok(_) => return Ok(Stored::Replaced(path.clone())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push((path, pem, *mode)),
                Err(source) => {
                    return Err(CaError::Io {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        if missing.is_empty() {
            return Ok(Stored::Kept);
        }
        let dir = data_dir.join("ca");
        fs::create_dir_all(&dir).map_err(|source| CaError::Io { path: dir, source })?;
        let mut restored = Vec::new();
        for (path, pem, mode) in missing {
            write_atomic(path, pem.as_bytes(), mode)?;
            restored.push(path.clone());
        }
        Ok(Stored::Restored(restored))
    }

    /// Issues a serving certificate (a new ECDSA P-256 key, valid for [`SERVING_VALIDITY`]
    /// from `now`) for these DNS names and IP addresses.
    pub fn issue_serving(
        &self,
        names: &[String],
        ips: &[IpAddr],
        now: OffsetDateTime,
    ) -> Result<CertifiedKey, CaError> {
        let issue = |source| CaError::Issue {
            what: "serving",
            source,
        };
        let sans: Vec<String> = names
            .iter()
            .cloned()
            .chain(ips.iter().map(IpAddr::to_string))
            .collect();
        let mut params = CertificateParams::new(sans).map_err(issue)?;
        params
            .distinguished_name
            .push(DnType::CommonName, DISCOVERY_HOST);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + SERVING_VALIDITY;
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        // The chain a client needs to reach the root it trusts.
        let mut cert_pem = cert.pem();
        for above in self.chain_above_leaf() {
            cert_pem.push_str(above);
        }
        Ok(CertifiedKey {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// The current time, for certificate validity.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, created with
/// `mode`, synced and renamed into place: readers see the old file or the new one, never
/// a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    write_file_atomic(path, bytes, mode).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// [`write_atomic`] with a plain `io::Error`.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn removed_files_are_written_again_and_replaced_ones_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = RootCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.keep_stored(dir.path()).unwrap(), Stored::Kept);
        fs::remove_dir_all(dir.path().join("ca")).unwrap();
        let Stored::Restored(files) = ca.keep_stored(dir.path()).unwrap() else {
            panic!("not restored");
        };
        assert_eq!(files.len(), 2);
        let (again, origin) = RootCa::load_or_create(dir.path()).unwrap();
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let mode = fs::metadata(dir.path().join(ROOT_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another root put in place is not overwritten: it is reported.
        let other = tempfile::tempdir().unwrap();
        let (_, _) = RootCa::load_or_create(other.path()).unwrap();
        fs::copy(other.path().join(ROOT_CERT), dir.path().join(ROOT_CERT)).unwrap();
        assert_eq!(
            ca.keep_stored(dir.path()).unwrap(),
            Stored::Replaced(dir.path().join(ROOT_CERT))
        );
        assert_ne!(
            fs::read_to_string(dir.path().join(ROOT_CERT)).unwrap(),
            ca.cert_pem()
        );
    }

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, origin) = RootCa::load_or_create(dir.path()).unwrap();
        assert_eq!(origin, Origin::Created);
        let mode = fs::metadata(dir.path().join(ROOT_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, origin) = RootCa::load_or_create(dir.path()).unwrap();
        assert_eq!(origin, Origin::Loaded);
        assert_eq!(again.cert_pem(), ca.cert_pem());
        // The loaded CA signs serving certificates that chain to the same root.
        let serving = again
            .issue_serving(
                &[DISCOVERY_HOST.into(), "localhost".into()],
                &["127.0.0.1".parse().unwrap()],
                now(),
            )
            .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(serving.cert_pem.as_bytes()).unwrap();
        let leaf = pem.parse_x509().unwrap();
        let (_, root_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        let root = root_pem.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        leaf.verify_signature(Some(root.public_key())).unwrap();
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "DNSName(bowline.bowline-system.svc)",
                "DNSName(localhost)",
                "IPAddress(7f:00:00:01)"
            ]
        );
    }

    #[test]
    fn generated_roots_load_from_pem_and_corrupt_pem_names_its_origin() {
        let ca = RootCa::generate(now()).unwrap();
        let origin = PemOrigin {
            cert: "Secret ns/bowline-ca key tls.crt".into(),
            key: "Secret ns/bowline-ca key tls.key".into(),
            remedy: "restore the Secret".into(),
        };
        let loaded = RootCa::from_pem(ca.cert_pem().into(), ca.key_pem().into(), &origin).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        let err = RootCa::from_pem(ca.cert_pem().into(), "garbage".into(), &origin)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Secret ns/bowline-ca key tls.key: not a PEM private key")
                && err.ends_with("; restore the Secret"),
            "{err}"
        );
        let other = RootCa::generate(now()).unwrap();
        let err = RootCa::from_pem(ca.cert_pem().into(), other.key_pem().into(), &origin)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "Secret ns/bowline-ca key tls.key: is not the key of the certificate Secret ns/bowline-ca key tls.crt"
            ),
            "{err}"
        );
    }

    #[test]
    fn corrupt_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        RootCa::load_or_create(dir.path()).unwrap();
        let cert = dir.path().join(ROOT_CERT);
        let good = fs::read_to_string(&cert).unwrap();
        fs::write(&cert, "garbage").unwrap();
        let err = RootCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a PEM certificate", cert.display())),
            "{err}"
        );
        // Never replaced.
        assert_eq!(fs::read_to_string(&cert).unwrap(), "garbage");

        fs::write(&cert, &good).unwrap();
        let key = dir.path().join(ROOT_KEY);
        let other = KeyPair::generate().unwrap();
        fs::write(&key, other.serialize_pem()).unwrap();
        let err = RootCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: is not the key of the certificate {}",
                key.display(),
                cert.display()
            )),
            "{err}"
        );

        fs::remove_file(&key).unwrap();
        let err = RootCa::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} exists but {} does not",
                cert.display(),
                key.display()
            )),
            "{err}"
        );
    }
}
