# The two commands of the README:
#   make run    runs reeld on the embedded default (./reel-data, local stores)
#   make test   runs every test
# Both install what a fresh machine lacks first (scripts/setup).

CARGO ?= cargo

.PHONY: run test bench lint setup

setup:
	@scripts/setup

run: setup
	$(CARGO) run --release --bin reeld -- $(ARGS)

test: setup
	$(CARGO) test --workspace --locked

bench: setup
	$(CARGO) bench --bench ingest --locked

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
