//! Manifest source benchmarks: one file changing in a directory of 10k files (10 endpoints
//! each, 100k in all), read again by path as the watcher names it, and full rescans.

use std::{collections::BTreeSet, fmt::Write, fs, hint::black_box, path::PathBuf};

use bowline_model::MemberName;
use bowline_source::scan::Scanner;
use criterion::{Criterion, criterion_group, criterion_main};

const FILES: usize = 10_000;
const ENDPOINTS: usize = 10;

/// An EndpointSlice of `ENDPOINTS` endpoints; `port` tells versions apart.
fn slice(i: usize, port: u16) -> String {
    let mut text = format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc{}-{i}\n  namespace: demo\n  labels:\n    kubernetes.io/service-name: svc{}\naddressType: IPv4\nendpoints:\n",
        i / 100,
        i / 100
    );
    for e in 0..ENDPOINTS {
        let _ = write!(
            text,
            "- addresses: [10.{}.{}.{e}]\n  conditions: {{ready: true}}\n  zone: z1\n",
            i / 256,
            i % 256
        );
    }
    let _ = write!(
        text,
        "ports:\n- {{name: http, port: {port}, protocol: TCP}}\n"
    );
    text
}

fn directory() -> (tempfile::TempDir, Scanner) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for i in 0..FILES {
        let sub = dir.path().join(format!("svc{}", i / 100));
        fs::create_dir_all(&sub).expect("a directory");
        fs::write(sub.join(format!("slice-{i}.yaml")), slice(i, 8080)).expect("a file");
    }
    let mut scanner = Scanner::new(MemberName::new("bench"), dir.path().to_path_buf());
    scanner.scan().expect("the directory is read");
    (dir, scanner)
}

fn one_file_change(c: &mut Criterion) {
    let (dir, mut scanner) = directory();
    let file = PathBuf::from("svc42/slice-4242.yaml");
    let paths = BTreeSet::from([file.clone()]);
    let mut group = c.benchmark_group("manifests_10k_files");
    group.sample_size(20);
    let mut port = 8080;
    group.bench_function("one_file_changed_read_by_path", |b| {
        b.iter(|| {
            port = if port == 8080 { 8081 } else { 8080 };
            fs::write(dir.path().join(&file), slice(4242, port)).expect("written");
            let changes = scanner.rescan(&paths).expect("rescanned");
            assert_eq!(changes.len(), 1);
            black_box(changes)
        })
    });
    group.bench_function("one_file_changed_full_rescan", |b| {
        b.iter(|| {
            port = if port == 8080 { 8081 } else { 8080 };
            fs::write(dir.path().join(&file), slice(4242, port)).expect("written");
            let changes = scanner.scan().expect("rescanned");
            assert_eq!(changes.len(), 1);
            black_box(changes)
        })
    });
    group.sample_size(10);
    group.bench_function("first_read", |b| {
        b.iter(|| {
            let mut fresh = Scanner::new(MemberName::new("bench"), dir.path().to_path_buf());
            black_box(fresh.scan().expect("read"))
        })
    });
    group.finish();
}

criterion_group!(benches, one_file_change);
criterion_main!(benches);
