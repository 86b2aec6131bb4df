//! Where the generated members live: manifest directories, or fake API servers hosted by the
//! driver; `bowline.yaml` pointing at them; and how a change is made in each.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    time::Instant,
};

use bowline_fake_kube::FakeApiServer;
use serde_json::Value;

use crate::scenario::{Size, Variant};

/// How members are served to Bowline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Directories of YAML manifests (`manifests:`).
    Manifest,
    /// One in-process fake API server per member (`kubeconfig:`).
    Kube,
}

/// The generated members of one run.
pub enum Members {
    /// One directory per member under the run's directory.
    Manifest(Vec<PathBuf>),
    /// One fake API server per member (they stop when dropped).
    Kube(Vec<FakeApiServer>),
}

/// The listen addresses given to Bowline.
#[derive(Clone, Debug)]
pub struct Ports {
    /// `listen.xds`.
    pub xds: String,
    /// `listen.admin`.
    pub admin: String,
    xds_tls: String,
    dns: String,
}

impl Ports {
    /// Four ports that were free a moment ago on 127.0.0.1.
    pub fn free() -> std::io::Result<Self> {
        let listeners = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let addr =
            |i: usize| -> std::io::Result<String> { Ok(listeners[i].local_addr()?.to_string()) };
        Ok(Self {
            xds: addr(0)?,
            xds_tls: addr(1)?,
            dns: addr(2)?,
            admin: addr(3)?,
        })
    }
}

fn yaml(documents: &[Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(document)?);
    }
    Ok(out)
}

/// A slice's file, relative to its member directory.
fn slice_file(s: usize, chunk: usize) -> PathBuf {
    Path::new("slices").join(format!("svc{s}-{chunk}.yaml"))
}

impl Members {
    /// Generates the members of `size` under `dir` (manifests) or in new fake API servers
    /// (kube, with their kubeconfig files in `dir`).
    pub async fn create(mode: Mode, size: Size, dir: &Path) -> anyhow::Result<Self> {
        match mode {
            Mode::Manifest => {
                let mut dirs = Vec::new();
                for m in 0..size.members {
                    let member = dir.join(format!("m{m}"));
                    fs::create_dir_all(member.join("services"))?;
                    fs::create_dir_all(member.join("slices"))?;
                    fs::write(member.join("cluster.yaml"), yaml(&size.cluster_objects(m))?)?;
                    for s in 0..size.services {
                        let path = member.join("services").join(format!("svc{s}.yaml"));
                        fs::write(path, yaml(&[size.service(s)])?)?;
                        for c in 0..size.chunks() {
                            let slice = size.slice(m, s, c, Variant::default());
                            fs::write(member.join(slice_file(s, c)), yaml(&[slice])?)?;
                        }
                    }
                    dirs.push(member);
                }
                Ok(Self::Manifest(dirs))
            }
            Mode::Kube => {
                let mut servers = Vec::new();
                for m in 0..size.members {
                    let server = FakeApiServer::start().await;
                    server.install_bowline_crds();
                    for object in size.member_objects(m) {
                        server.apply_json(object);
                    }
                    fs::write(
                        dir.join(format!("m{m}.kubeconfig")),
                        server.kubeconfig_yaml("bench"),
                    )?;
                    servers.push(server);
                }
                Ok(Self::Kube(servers))
            }
        }
    }

    /// Stops the fake API servers and frees their stores before returning, so that the
    /// next run does not compete with their teardown.
    pub async fn stop(self) {
        if let Self::Kube(servers) = self {
            for server in servers {
                server.stop().await;
            }
        }
    }

    /// Writes `bowline.yaml` for these members into `dir` and returns its path.
    pub fn write_config(&self, dir: &Path, ports: &Ports) -> anyhow::Result<PathBuf> {
        let mut text = String::from("clusterSet: bench\nmembers:\n");
        let count = match self {
            Self::Manifest(dirs) => dirs.len(),
            Self::Kube(servers) => servers.len(),
        };
        for m in 0..count {
            match self {
                Self::Manifest(dirs) => {
                    text.push_str(&format!("  - manifests: {}\n", dirs[m].display()));
                }
                Self::Kube(_) => text.push_str(&format!("  - kubeconfig: m{m}.kubeconfig\n")),
            }
            text.push_str(&format!("    name: m{m}\n    network: net\n"));
        }
        text.push_str(&format!(
            "export:\n  default: all\nlisten:\n  xds: {}\n  xdsTls: {}\n  dns: {}\n  admin: {}\n\
             dataDir: {}\n",
            ports.xds,
            ports.xds_tls,
            ports.dns,
            ports.admin,
            dir.join("data").display()
        ));
        let path = dir.join("bowline.yaml");
        fs::write(&path, text)?;
        Ok(path)
    }

    /// Puts the target slice of `size` in `variant` and returns when the change was made:
    /// the moment of the rename into place (manifests; the new content is written to a
    /// hidden temporary file first) or of the write into the API server (kube).
    pub fn change(&self, size: Size, variant: Variant) -> anyhow::Result<Instant> {
        let (m, s) = (size.target_member(), size.target_service());
        let slice = size.slice(m, s, 0, variant);
        match self {
            Self::Manifest(dirs) => {
                let path = dirs[m].join(slice_file(s, 0));
                let temporary = dirs[m].join("slices").join(format!(".svc{s}-0.yaml.tmp"));
                fs::write(&temporary, yaml(&[slice])?)?;
                let at = Instant::now();
                fs::rename(&temporary, &path)?;
                Ok(at)
            }
            Self::Kube(servers) => {
                let at = Instant::now();
                servers[m].apply_json(slice);
                Ok(at)
            }
        }
    }
}
