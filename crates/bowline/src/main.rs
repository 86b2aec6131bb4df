//! The `bowline` binary: a thin command line over `bowline-app`.
// A command-line tool talks to its user on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod validate;

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use bowline_app::{config::Config, onboarding};
use bowline_kube::install::InstallOptions;
use bowline_kube::member::{self, MemberKubeconfigOptions};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

/// Bowline ties Kubernetes clusters, networks and VMs into one ClusterSet: it merges every
/// member's services and endpoints, acts as the Multi-Cluster Services controller and serves
/// the result over xDS and DNS.
///
/// Logs go to stderr; set RUST_LOG (for example RUST_LOG=debug or RUST_LOG=bowline_source=debug)
/// to change what is logged.
#[derive(Parser)]
#[command(name = "bowline", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane from a configuration file.
    Run {
        /// The configuration file (see docs/configuration.md).
        #[arg(long, short, default_value = "bowline.yaml")]
        config: PathBuf,
    },
    /// Check a configuration file and every manifest it points at; print every problem and
    /// exit non-zero if there is any.
    Validate {
        /// The configuration file.
        #[arg(long, short, default_value = "bowline.yaml")]
        config: PathBuf,
    },
    /// Print the manifests that install Bowline in the current cluster, as one YAML stream
    /// for `kubectl apply -f -`: Namespace, CRDs, RBAC, ConfigMap, Deployment and Service.
    Install {
        /// Namespace of Bowline's objects.
        #[arg(long, short, default_value = "bowline-system")]
        namespace: String,
        /// Deployment replicas (one leads and writes; every replica serves xDS and DNS).
        #[arg(long, default_value_t = 2)]
        replicas: i32,
        /// Print only the CustomResourceDefinitions.
        #[arg(long)]
        crds_only: bool,
        /// Container image (default: ghcr.io/bowline-mesh/bowline:<this version>).
        #[arg(long)]
        image: Option<String>,
        /// `clusterSet` of the generated configuration.
        #[arg(long, default_value = "clusterset")]
        cluster_set: String,
    },
    /// The node agent beside an Envoy or a proxyless gRPC application (on a VM or as a
    /// sidecar): makes the workload's key here, gets its certificate from Bowline's CA with
    /// the credential of agent.yaml (a VM token or a Kubernetes service-account token),
    /// serves it to Envoy over SDS (secrets `default` and `ROOTCA` on a Unix socket), writes
    /// cert-chain.pem, key.pem and root-cert.pem for gRPC's file_watcher provider and the
    /// gRPC xDS bootstrap, and renews at half of the lifetime. `bowline vm bundle` writes
    /// agent.yaml.
    ///
    /// Example: bowline agent --config /etc/bowline/agent.yaml
    Agent {
        /// The agent's configuration (see docs/operations.md, "The node agent").
        #[arg(long, short, default_value = "agent.yaml")]
        config: PathBuf,
    },
    /// The proxies connected to a running Bowline and whether each is in sync, per xDS type:
    /// SYNCED (it ACKed what was last sent), NOT SENT, STALE (sent, not yet ACKed) or NACKED
    /// (its error is printed). With a node id: what that proxy was sent against what it
    /// would be sent now, resource by resource.
    ///
    /// Asks the admin server's /debug/connections and /debug/config_dump (listen.adminDebug
    /// decides who may; by default callers on loopback). It lists the proxies of the replica
    /// asked.
    ///
    /// Example: bowline proxy-status; bowline proxy-status sidecar~10.1.0.5~web.shop
    ProxyStatus {
        /// A connected proxy's node id: diff what it was sent against what it would get now.
        node: Option<String>,
        /// The admin server (listen.admin).
        #[arg(long, default_value = "127.0.0.1:15014")]
        admin: String,
    },
    /// Why a proxy does or does not reach each endpoint of a ClusterSet service: for every
    /// endpoint of every member, sent directly (weight), through which east-west gateway
    /// (weight), or excluded with the rule (member state, export decision, export scope,
    /// port conflict, readiness, IP family, network and mTLS). Beside it, what the assignment
    /// holds now and what a connected proxy was last sent.
    ///
    /// Asks the admin server's /debug/explain. Name a connected proxy with --node, or describe
    /// one that is not connected with --member, --network and --ip.
    ///
    /// Example: bowline explain --node sidecar~10.1.1.7~probe.demo~demo --service demo/echo;
    /// bowline explain --member central --network net-east --ip fd00:10::9 --service demo/echo
    Explain(ExplainFlags),
    /// Prepare clusters to be members of a Bowline running elsewhere.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Virtual machines.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Run the embedded demo ClusterSet (three members, two networks, IPv4, IPv6 and dual
    /// stack, a headless service, a VM group) from a copy you can edit while it runs.
    Demo {
        /// Where to write the demo's files (default: a new temporary directory, removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Admin listen address (default: the demo's `listen.admin`, 127.0.0.1:15014).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// xDS listen address (default: the demo's `listen.xds`, [::]:15010).
        #[arg(long)]
        xds: Option<SocketAddr>,
        /// DNS listen address, UDP and TCP (default: the demo's `listen.dns`, [::]:15053).
        #[arg(long)]
        dns: Option<SocketAddr>,
        /// xDS-over-TLS listen address (default: the demo's `listen.xdsTls`, [::]:15012).
        #[arg(long)]
        xds_tls: Option<SocketAddr>,
        /// With --dir: write the demo's files afresh, replacing edits made there (without it,
        /// a directory holding a bowline.yaml is used as it is).
        #[arg(long, requires = "dir")]
        reset: bool,
    },
}

#[derive(clap::Args)]
struct ExplainFlags {
    /// The service, `<namespace>/<name>` (every port of it).
    #[arg(long, required_unless_present = "cluster")]
    service: Option<String>,
    /// Or one cluster: `outbound|<port>||<name>.<ns>.svc.clusterset.local`.
    #[arg(long, conflicts_with = "service")]
    cluster: Option<String>,
    /// A connected proxy's node id.
    #[arg(long, conflicts_with_all = ["member", "network", "ip", "family"])]
    node: Option<String>,
    /// For a proxy that is not connected: its member's cluster id.
    #[arg(long)]
    member: Option<String>,
    /// Its network.
    #[arg(long)]
    network: Option<String>,
    /// Its instance IPs (their families are the ones it uses), comma-separated.
    #[arg(long, conflicts_with = "family")]
    ip: Option<String>,
    /// Or only the families it uses: ipv4, ipv6 or dual (default: every family).
    #[arg(long, value_parser = ["ipv4", "ipv6", "dual"])]
    family: Option<String>,
    /// It has no node agent certificates (does not originate mTLS).
    #[arg(long)]
    no_mtls: bool,
    /// The admin server (listen.admin).
    #[arg(long, default_value = "127.0.0.1:15014")]
    admin: String,
}

#[derive(Subcommand)]
enum VmCommand {
    /// WorkloadGroups: the template VMs join a namespace with.
    Group {
        #[command(subcommand)]
        command: VmGroupCommand,
    },
    /// Issue a registration token for one WorkloadGroup in one namespace; prints it (only
    /// its hash is kept, in the configuration's dataDir).
    ///
    /// Example: bowline vm token --group legacy -n demo --ttl 24h > token
    Token(onboarding::TokenFlags),
    /// Write what a VM needs to join into a directory: agent.yaml (for `bowline agent`),
    /// cluster.env, mesh.yaml, root-cert.pem, token, hosts and a README saying where each
    /// goes.
    ///
    /// Example: bowline vm bundle --group legacy -n demo -o vm-files --address 192.0.2.10
    Bundle(onboarding::BundleFlags),
}

#[derive(Subcommand)]
enum VmGroupCommand {
    /// Print a WorkloadGroup (networking.istio.io/v1) built from flags, to apply to the member
    /// the VMs join (`| kubectl apply -f -`, or into a manifest directory).
    ///
    /// Example: bowline vm group create --name legacy -n demo -l app=legacy -p http=8080
    /// --probe-http 8080/healthz
    Create(onboarding::GroupFlags),
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Give a cluster a ServiceAccount with only the permissions Bowline needs and print a
    /// kubeconfig for it (stdout), for a Bowline in another cluster to read and write this one
    /// as a `kubeconfig:` member.
    ///
    /// With the given context (your admin credentials), server-side applies (field manager
    /// `bowline`) the Namespace, the ServiceAccount, a ClusterRole with the cluster-scoped
    /// permissions of `bowline install` and its ClusterRoleBinding, then requests a token for
    /// the ServiceAccount (TokenRequest API). The Lease Role of `bowline install` is not
    /// created: leader election takes its Lease in the cluster Bowline runs in (its inCluster
    /// member), never in a remote member. Running it again changes no object and prints a new
    /// token; the token's expiry is printed on stderr.
    ///
    /// Example: bowline member kubeconfig --context east > east.kubeconfig
    Kubeconfig {
        /// The context (of the kubeconfig) naming the cluster to prepare; also the name of the
        /// printed kubeconfig's context.
        #[arg(long)]
        context: String,
        /// Your kubeconfig (default: the first file of $KUBECONFIG defining the context, else
        /// ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Namespace of the ServiceAccount (created).
        #[arg(long, short, default_value = "bowline-system")]
        namespace: String,
        /// Name of the ServiceAccount, the ClusterRole and the ClusterRoleBinding.
        #[arg(long, default_value = "bowline-member")]
        name: String,
        /// Requested token validity, at least 10m (e.g. 8760h, 30d); the cluster may grant
        /// less.
        #[arg(long, default_value = "8760h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// The API server URL the other Bowline reaches this cluster at (default: the
        /// context's cluster's server).
        #[arg(long)]
        server: Option<String>,
    },
    /// Join a cluster to a Bowline that runs on Kubernetes (installed by `bowline install`),
    /// as `istioctl create-remote-secret` or `subctl join` do: what `member kubeconfig`
    /// does in the cluster of --context, then, in Bowline's cluster (--bowline-context), the
    /// kubeconfig goes into the Secret bowline-members (key <name>.kubeconfig, mounted at
    /// /etc/bowline-members), the member into bowline.yaml of the ConfigMap bowline, and the
    /// Deployment is restarted to read it. Running it again rotates the token and changes
    /// nothing else.
    ///
    /// Example: bowline member join --context east --bowline-context hub --network net-east
    Join {
        /// The context naming the cluster to join.
        #[arg(long)]
        context: String,
        /// The member's name in bowline.yaml (default: the context).
        #[arg(long)]
        name: Option<String>,
        /// The member's network.
        #[arg(long)]
        network: Option<String>,
        /// Your kubeconfig (default: the first file of $KUBECONFIG defining the context, else
        /// ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// The context of the cluster Bowline runs in (default: the kubeconfig's current
        /// context).
        #[arg(long)]
        bowline_context: Option<String>,
        /// The kubeconfig reaching Bowline's cluster (default: --kubeconfig's).
        #[arg(long)]
        bowline_kubeconfig: Option<PathBuf>,
        /// The namespace `bowline install` installed into.
        #[arg(long, default_value = "bowline-system")]
        bowline_namespace: String,
        /// Namespace of the member's ServiceAccount (created).
        #[arg(long, short, default_value = "bowline-system")]
        namespace: String,
        /// Requested token validity, at least 10m.
        #[arg(long, default_value = "8760h", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// The API server URL Bowline reaches the member at (default: the context's).
        #[arg(long)]
        server: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` or else by the command's default.
fn init_logging(command: &Command) {
    // `validate` prints its findings itself; its logs would only repeat them.
    // hickory's DNS server logs two lines per query at `info`: a query log, not ours.
    let default_filter = if matches!(
        command,
        Command::Validate { .. }
            | Command::Install { .. }
            | Command::Member { .. }
            | Command::Vm { .. }
            | Command::ProxyStatus { .. }
            | Command::Explain(_)
    ) {
        "warn"
    } else {
        "info,hickory_server=warn,hickory_net=warn,hickory_proto=warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => run(config).await,
        Command::Validate { config } => validate::validate(&config),
        Command::Install {
            namespace,
            replicas,
            crds_only,
            image,
            cluster_set,
        } => install(InstallOptions {
            namespace,
            replicas,
            image: image.unwrap_or_else(bowline_kube::install::default_image),
            crds_only,
            cluster_set,
        }),
        Command::Demo {
            dir,
            admin,
            xds,
            dns,
            xds_tls,
            reset,
        } => demo(dir, (admin, xds, dns, xds_tls), reset).await,
        Command::Vm { command } => vm(command).await,
        Command::Agent { config } => agent(config).await,
        Command::Member { command } => member_command(command).await,
        Command::ProxyStatus { node, admin } => proxy_status(node, admin).await,
        Command::Explain(flags) => explain(flags).await,
    }
}

/// `bowline vm ...`: what is written goes to stdout, what is said to stderr.
async fn vm(command: VmCommand) -> anyhow::Result<ExitCode> {
    match command {
        VmCommand::Group {
            command: VmGroupCommand::Create(flags),
        } => print_out(&onboarding::group_yaml(&flags)?, "the WorkloadGroup")?,
        VmCommand::Token(flags) => {
            let (token, warnings) = onboarding::token(&flags).await?;
            for w in warnings {
                eprintln!("{w}");
            }
            print_out(&format!("{token}\n"), "the token")?;
        }
        VmCommand::Bundle(flags) => {
            let (files, warnings) = onboarding::bundle(&flags).await?;
            for w in warnings {
                eprintln!("{w}");
            }
            eprintln!("wrote {} to {}", files.join(", "), flags.output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bowline proxy-status [NODE]`.
async fn proxy_status(node: Option<String>, admin: String) -> anyhow::Result<ExitCode> {
    use bowline_app::inspect;
    let text = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        match node {
            None => Ok(inspect::proxy_status_table(&inspect::admin_json(
                &admin,
                "/debug/connections",
            )?)),
            Some(node) => {
                let path = format!("/debug/config_dump?node={}", query_escape(&node));
                let sent = inspect::admin_json(&admin, &path)?;
                let now = inspect::admin_json(&admin, &format!("{path}&now=true"))?;
                let (diff, same) = inspect::proxy_diff(&sent, &now);
                let verdict = match same {
                    true => format!("{node}: in sync: what it was sent is what it would get now\n"),
                    false => format!(
                        "{node}: behind: what it was sent differs from what it would get now\n"
                    ),
                };
                Ok(format!("{verdict}{diff}"))
            }
        }
    })
    .await??;
    print_out(&text, "the proxy status")?;
    Ok(ExitCode::SUCCESS)
}

/// `bowline explain`.
async fn explain(flags: ExplainFlags) -> anyhow::Result<ExitCode> {
    let mut query: Vec<(&str, String)> = Vec::new();
    match (&flags.service, &flags.cluster) {
        (Some(service), _) => query.push(("service", service.clone())),
        (None, Some(cluster)) => query.push(("cluster", cluster.clone())),
        (None, None) => anyhow::bail!("give --service <ns>/<name> or --cluster <name>"),
    }
    match &flags.node {
        Some(node) => query.push(("node", node.clone())),
        None => {
            for (key, value) in [
                ("member", &flags.member),
                ("network", &flags.network),
                ("ip", &flags.ip),
                ("family", &flags.family),
            ] {
                if let Some(value) = value {
                    query.push((key, value.clone()));
                }
            }
            if flags.no_mtls {
                query.push(("mtls", "false".into()));
            }
        }
    }
    let path = format!(
        "/debug/explain?{}",
        query
            .iter()
            .map(|(k, v)| format!("{k}={}", query_escape(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let admin = flags.admin.clone();
    let explained =
        tokio::task::spawn_blocking(move || bowline_app::inspect::admin_json(&admin, &path))
            .await??;
    print_out(
        &bowline_app::inspect::explain_text(&explained),
        "the explanation",
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `text` as a URL query value.
fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The kubeconfig holding `context`: the one given, else the first of `$KUBECONFIG`
/// defining it, else `~/.kube/config`.
fn kubeconfig_for(given: Option<PathBuf>, context: &str) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) => Ok(path),
        None => member::default_kubeconfig(
            std::env::var_os("KUBECONFIG").as_deref(),
            std::env::home_dir().as_deref(),
            context,
        )
        .context("no kubeconfig: pass --kubeconfig, or set KUBECONFIG or HOME"),
    }
}

/// `bowline member kubeconfig` and `bowline member join`.
async fn member_command(command: MemberCommand) -> anyhow::Result<ExitCode> {
    let (context, kubeconfig, namespace, name, duration, server) = match command {
        MemberCommand::Kubeconfig {
            context,
            kubeconfig,
            namespace,
            name,
            duration,
            server,
        } => (context, kubeconfig, namespace, name, duration, server),
        MemberCommand::Join {
            context,
            name,
            network,
            kubeconfig,
            bowline_context,
            bowline_kubeconfig,
            bowline_namespace,
            namespace,
            duration,
            server,
        } => {
            let kubeconfig = kubeconfig_for(kubeconfig, &context)?;
            let opts = bowline_kube::join::JoinOptions {
                name: name.unwrap_or_else(|| context.clone()),
                network,
                bowline_kubeconfig: bowline_kubeconfig.unwrap_or_else(|| kubeconfig.clone()),
                bowline_context,
                bowline_namespace,
                member: MemberKubeconfigOptions {
                    kubeconfig,
                    context,
                    namespace,
                    name: "bowline-member".into(),
                    duration,
                    server,
                },
            };
            let joined = bowline_kube::join::member_join(&opts).await?;
            for warning in &joined.warnings {
                eprintln!("warning: {warning}");
            }
            let config = match (joined.added, joined.restarted) {
                (true, true) => {
                    "added to bowline.yaml; Bowline's replicas are restarting to read it"
                }
                (true, false) => "added to bowline.yaml; restart Bowline to read it",
                (false, _) => {
                    "already in bowline.yaml; its token was rotated (read without a restart)"
                }
            };
            say(&format!(
                "member {} joined: kubeconfig in Secret {}/{} key {}, {config}; the token expires at {}\n",
                opts.name,
                opts.bowline_namespace,
                bowline_kube::install::MEMBERS_SECRET,
                joined.key,
                joined.expires_at
            ));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let kubeconfig = kubeconfig_for(kubeconfig, &context)?;
    member_kubeconfig(MemberKubeconfigOptions {
        kubeconfig,
        context,
        namespace,
        name,
        duration,
        server,
    })
    .await
}

async fn agent(config: PathBuf) -> anyhow::Result<ExitCode> {
    let config = bowline_app::agent::AgentConfig::load(&config)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    bowline_app::agent::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config)?;
    let running = bowline_app::start(&config, bowline_app::Listeners::default()).await?;
    say(&format!(
        "bowline: ClusterSet {:?}, admin on http://{}/, xDS on {} (TLS on {}), DNS on {}\n",
        config.cluster_set,
        running.admin_addr,
        running.xds_addr,
        running.xds_tls_addr,
        running.dns_addr
    ));
    wait_for_signal(&running).await;
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

fn install(opts: InstallOptions) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(opts.replicas >= 1, "--replicas must be at least 1");
    let yaml = bowline_kube::install::render_yaml(&bowline_kube::install::manifests(&opts))?;
    print_out(&yaml, "the manifests")?;
    Ok(ExitCode::SUCCESS)
}

async fn member_kubeconfig(opts: MemberKubeconfigOptions) -> anyhow::Result<ExitCode> {
    let printed = member::member_kubeconfig(&opts).await?;
    print_out(&printed.yaml, "the kubeconfig")?;
    for warning in &printed.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "token expires at {}, rerun this command to rotate; Bowline picks up the new file \
         without a restart",
        printed.expires_at
    );
    Ok(ExitCode::SUCCESS)
}

type DemoAddresses = (
    Option<SocketAddr>,
    Option<SocketAddr>,
    Option<SocketAddr>,
    Option<SocketAddr>,
);

async fn demo(
    dir: Option<PathBuf>,
    (admin, xds, dns, xds_tls): DemoAddresses,
    reset: bool,
) -> anyhow::Result<ExitCode> {
    let temp;
    let root = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::Builder::new().prefix("bowline-demo-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let prepared = bowline_app::demo::prepare(&root, reset)
        .with_context(|| format!("cannot write the demo to {}", root.display()))?;
    if prepared == bowline_app::demo::Prepared::Kept {
        say(&format!(
            "using the demo files already in {} (with your edits); --reset writes them afresh\n",
            root.display()
        ));
    }
    let config = Config::load(&root.join("bowline.yaml"))?;
    let address = admin.unwrap_or(config.listen.admin);
    let admin = TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}; pick another port with --admin 127.0.0.1:PORT")
    })?;
    let address = xds.unwrap_or(config.listen.xds);
    let xds = TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}; pick another port with --xds 127.0.0.1:PORT")
    })?;
    let address = xds_tls.unwrap_or(config.listen.xds_tls);
    let xds_tls = TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address}; pick another port with --xds-tls 127.0.0.1:PORT")
    })?;
    let address = dns.unwrap_or(config.listen.dns);
    let dns = bowline_app::Listeners::bind_dns(address)
        .await
        .with_context(|| {
            format!("cannot listen on {address}; pick another port with --dns 127.0.0.1:PORT")
        })?;
    let listeners = bowline_app::Listeners {
        admin: Some(admin),
        xds: Some(xds),
        xds_tls: Some(xds_tls),
        dns: Some(dns),
    };
    let running = bowline_app::start(&config, listeners).await?;
    let admin = running.admin_addr;
    let xds = running.xds_addr;
    let xds_tls = running.xds_tls_addr;
    let dns = running.dns_addr;
    let root = root.display();
    say(&format!(
        "Bowline demo ClusterSet {:?} is running from {root}\n\
         \x20 edit the manifests under {root}/members/ and watch the views change\n\
         \x20 admin: http://{admin}/\n\
         \x20   curl http://{admin}/readyz\n\
         \x20   curl http://{admin}/debug/members\n\
         \x20   curl http://{admin}/debug/services/demo/echo\n\
         \x20   curl http://{admin}/debug/gateways\n\
         \x20   curl http://{admin}/debug/rejected\n\
         \x20   curl http://{admin}/metrics\n\
         \x20   curl http://{admin}/debug/connections\n\
         \x20 xds: {xds} (ADS, state of the world and delta; e.g. GRPC_XDS_BOOTSTRAP for xds:///echo.demo.svc.clusterset.local:80)\n\
         \x20 xds over TLS: {xds_tls} (certificate from the root CA in {root}/.bowline-data/ca/root-cert.pem)\n\
         \x20 dns: {dns} (UDP and TCP)\n\
         \x20   dig @{dns_ip} -p {dns_port} echo.demo.svc.clusterset.local A\n\
         Press Ctrl-C to stop.\n",
        config.cluster_set,
        // A wildcard address answers on loopback too; show the address a user can type.
        dns_ip = if dns.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            dns.ip()
        },
        dns_port = dns.port(),
    ));
    wait_for_signal(&running).await;
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Writes what a command prints to stdout. A reader that stopped early (`| head`) is not an
/// error: Unix tools end quietly then (Rust ignores SIGPIPE, so the write says EPIPE).
fn print_out(text: &str, what: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.with_context(|| format!("cannot write {what} to stdout")),
    }
}

/// Tells the user something on stdout. A closed stdout must not stop a running control plane,
/// so write errors are ignored (`println!` would panic on them).
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Ctrl-C or SIGTERM.
async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

async fn wait_for_signal(running: &bowline_app::Running) {
    let token = running.shutdown_token();
    tokio::select! {
        _ = signal() => {}
        _ = token.cancelled() => {}
    }
    tracing::info!("shutting down");
}
