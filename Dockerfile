# syntax=docker/dockerfile:1
# concur-sync container image: build with cargo, run as a non-root user on a minimal runtime
# (glibc, CA certificates, no shell, no package manager). No secrets are baked in: mount
# them and point concur.*_file at them. See docs/deploy.md.
#
#   docker build -t concur-sync:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin concur-sync \
    && install -D -m 0755 target/release/concur-sync /out/usr/local/bin/concur-sync \
    && install -d -m 0700 /out/state/concur-sync

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/usr/local/bin/concur-sync /usr/local/bin/concur-sync
# /var/lib/concur-sync owned by the runtime user, so that a fresh named volume mounted there
# is writable (state.db, its key file, the inbox/ drop folder).
COPY --from=build --chown=10001:10001 /out/state/ /var/lib/
USER 10001:10001
WORKDIR /var/lib/concur-sync
# Admin HTTP (/healthz, /readyz, /metrics, /status); set admin.listen = "0.0.0.0:9464" to publish it.
# It has no authentication (`run` warns when it is not loopback): publish it on the host's
# loopback only. `concur-sync probe` checks it from inside the container.
EXPOSE 9464
ENTRYPOINT ["concur-sync"]
CMD ["run"]
