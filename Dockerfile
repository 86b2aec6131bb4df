# The image `bowline install` names (ghcr.io/bowline-mesh/bowline:<version>) is built from this
# file: docker build -t ghcr.io/bowline-mesh/bowline:$(cargo pkgid -p bowline | cut -d'#' -f2) .
#
# Build stage: the release profile, without debuginfo (Cargo.toml's [profile.release]).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p bowline \
    && cp target/release/bowline /bowline

# Runtime: distroless with glibc and libgcc (all the binary links against: it uses rustls, not
# OpenSSL), as the non-root user 65532 the Deployment runs as.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /bowline /usr/local/bin/bowline
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/bowline"]
CMD ["run", "--config", "/etc/bowline/bowline.yaml"]
