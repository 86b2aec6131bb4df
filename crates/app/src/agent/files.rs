//! The agent's files: `cert-chain.pem`, `key.pem` and `root-cert.pem` in `certDir` for gRPC's
//! `file_watcher` certificate provider (and anything else reading files), and the gRPC xDS
//! bootstrap.
//!
//! The three PEM files change together: each version is written into a new hidden directory
//! `..<serial>`, the symlink `..data` is swapped to it in one rename, and the three names are
//! symlinks through `..data` (the layout of Kubernetes' atomic volume writer), so a reader
//! never sees a key of one certificate beside another certificate. Older versions are removed.

use std::{
    fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use serde_json::json;

use super::{AgentConfig, Issued, config::GrpcBootstrap};

/// The certificate chain (leaf first, without the root).
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// The private key.
pub const KEY: &str = "key.pem";
/// The root.
pub const ROOT_CERT: &str = "root-cert.pem";
/// The symlink to the current version's directory.
const DATA: &str = "..data";

/// Writes `issued` into `dir` as the module says.
pub fn write(dir: &Path, issued: &Issued) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let version = format!("..{}-{}", std::process::id(), issued.serial);
    let version_dir = dir.join(&version);
    if version_dir.exists() {
        fs::remove_dir_all(&version_dir)?;
    }
    fs::create_dir(&version_dir)?;
    for (name, text, mode) in [
        (KEY, &issued.key_pem, 0o600),
        (CERT_CHAIN, &issued.chain_pem, 0o644),
        (ROOT_CERT, &issued.root_pem, 0o644),
    ] {
        bowline_vm::ca::write_atomic(&version_dir.join(name), text.as_bytes(), mode)
            .map_err(io::Error::other)?;
    }
    let next = dir.join("..data_tmp");
    let _ = fs::remove_file(&next);
    symlink(&version, &next)?;
    fs::rename(&next, dir.join(DATA))?;
    for name in [KEY, CERT_CHAIN, ROOT_CERT] {
        let link = dir.join(name);
        let target = PathBuf::from(DATA).join(name);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = fs::remove_file(&link);
            symlink(&target, &link)?;
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("..") && name != DATA && name != version && entry.file_type()?.is_dir()
        {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// The gRPC xDS bootstrap (gRFCs A27, A29, A65): Bowline's TLS port as the xDS server with
/// TLS channel credentials from the files of `cert_dir` (the certificate is the proxy's
/// credential), the node, and the certificate provider `default` (`file_watcher`) that
/// xDS security configuration names.
pub fn bootstrap(
    config: &AgentConfig,
    bootstrap: &GrpcBootstrap,
    cert_dir: &Path,
) -> serde_json::Value {
    let file = |name: &str| cert_dir.join(name).display().to_string();
    let files = json!({
        "certificate_file": file(CERT_CHAIN),
        "private_key_file": file(KEY),
        "ca_certificate_file": file(ROOT_CERT),
        "refresh_interval": "10s",
    });
    let server = config.address.as_deref().unwrap_or(&config.discovery);
    let mut metadata = bootstrap.metadata.clone();
    metadata.insert("BOWLINE_SDS".into(), json!("true"));
    json!({
        "xds_servers": [{
            "server_uri": server,
            "channel_creds": [{"type": "tls", "config": files}],
            "server_features": ["xds_v3"],
        }],
        "node": {
            "id": bootstrap.node_id,
            "metadata": metadata,
        },
        "certificate_providers": {
            "default": {"plugin_name": "file_watcher", "config": files},
        },
        "server_listener_resource_name_template":
            format!("{}%s", bowline_xds::resources::SERVER_LISTENER_PREFIX),
    })
}

/// Writes [`bootstrap`] to its path, atomically.
pub fn write_bootstrap(
    config: &AgentConfig,
    grpc: &GrpcBootstrap,
    cert_dir: &Path,
) -> io::Result<()> {
    if let Some(parent) = grpc.path.parent() {
        fs::create_dir_all(parent)?;
    }
    let text =
        serde_json::to_string_pretty(&bootstrap(config, grpc, cert_dir)).expect("JSON renders");
    bowline_vm::ca::write_atomic(&grpc.path, text.as_bytes(), 0o644).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(serial: u64) -> Issued {
        Issued {
            chain_pem: format!("chain {serial}"),
            root_pem: "root".into(),
            key_pem: format!("key {serial}"),
            identity: String::new(),
            not_after: jiff::Timestamp::now(),
            received: jiff::Timestamp::now(),
            serial,
        }
    }

    #[test]
    fn each_version_replaces_the_three_files_together_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        for serial in 1..=3 {
            write(dir.path(), &issued(serial)).unwrap();
            assert_eq!(
                fs::read_to_string(dir.path().join(CERT_CHAIN)).unwrap(),
                format!("chain {serial}")
            );
            assert_eq!(
                fs::read_to_string(dir.path().join(KEY)).unwrap(),
                format!("key {serial}")
            );
        }
        let hidden: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        assert_eq!(hidden.len(), 1, "{hidden:?}");
        use std::os::unix::fs::PermissionsExt;
        let key = fs::metadata(dir.path().join(KEY)).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
}
