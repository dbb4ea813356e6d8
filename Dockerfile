# Container image of both binaries: `authkeyring` (operator and admin CLI) and `user-service`.
# Build: docker build -t authkeyring:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY crds ./crds
RUN cargo build --release --locked --bins \
    && cp target/release/authkeyring target/release/user-service /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/authkeyring /usr/local/bin/user-service /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/authkeyring"]
CMD ["operator"]
