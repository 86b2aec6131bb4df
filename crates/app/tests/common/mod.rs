//! Helpers shared by the app's integration tests.

#![allow(dead_code)] // each test binary uses its own part

use std::{fs, path::Path};

use bowline_app::config::Config;

/// A CA certificate named `name`, signed by `issuer` (self-signed when `None`): its PEM and
/// its issuer, to build a plug-in CA's hierarchy.
pub fn ca_certificate(
    name: &str,
    issuer: Option<&rcgen::Issuer<'static, rcgen::KeyPair>>,
) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.pem(), rcgen::Issuer::new(params, key))
}

/// The configuration of one Kubernetes member `east` reached through `server`, written into
/// `dir` with `extra` appended (more top-level YAML).
pub fn kubernetes_member(
    server: &bowline_fake_kube::FakeApiServer,
    dir: &Path,
    extra: &str,
) -> Config {
    fs::write(dir.join("east.kubeconfig"), server.kubeconfig_yaml("t")).unwrap();
    fs::write(
        dir.join("bowline.yaml"),
        format!("clusterSet: set\nmembers: [{{kubeconfig: east.kubeconfig, name: east}}]\n{extra}"),
    )
    .unwrap();
    Config::load(&dir.join("bowline.yaml")).unwrap()
}

/// A VM registration token for `group` in `namespace`, valid for an hour, recorded in the
/// configuration's token store (its data directory).
pub fn vm_token(config: &Config, group: &str, namespace: &str) -> String {
    let store = bowline_vm::tokens::TokenStore::open(&config.data_dir);
    let hour = std::time::Duration::from_secs(3600);
    let (token, _) = store
        .issue(group, namespace, hour, jiff::Timestamp::now())
        .unwrap();
    token
}
