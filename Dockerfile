# reeld and reel in a small image. Used by docker-compose.yml.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin reeld --bin reel

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/reeld /src/target/release/reel /usr/local/bin/
EXPOSE 7700 7701
VOLUME /var/lib/reel
ENTRYPOINT ["reeld"]
