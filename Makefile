# The two commands of the README:
#   make run    runs reeld on the embedded default (./reel-data, local stores)
#   make test   runs every test
# Both install what a fresh machine lacks first (scripts/setup).

CARGO ?= cargo

.PHONY: run test bench lint setup garage asciinema

setup:
	@scripts/setup

# The S3 server the failover tests run as plain processes.
garage:
	@scripts/install-garage

# The asciinema CLI the tests stream and upload with.
asciinema:
	@scripts/install-asciinema

run: setup
	$(CARGO) run --release --bin reeld -- $(ARGS)

test: garage asciinema
	@scripts/setup test
	$(CARGO) test --workspace --locked

bench: setup garage
	$(CARGO) bench --bench ingest --bench failover --bench recombine --bench read --bench verify --bench access --bench record --bench player --bench mirror --locked
	scripts/bench-load

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
