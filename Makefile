# The two commands a newcomer needs:
#   make run-all   the whole flow: CA, server enrollment, client memo request
#   make test      every test (unit, integration, end-to-end, openssl interop)

CARGO ?= cargo
CERTS ?= certs
CA_LISTEN ?= 127.0.0.1:8443
SERVER_LISTEN ?= 127.0.0.1:9443
SERVER_NAME ?= app.pki.test
CLIENT_NAME ?= client1.pki.test
REQUEST ?= memo

FUZZ_SECONDS ?= 20
FUZZ_TARGETS = frame csr token
# cargo-fuzz passes nightly-only compiler flags; RUSTC_BOOTSTRAP lets the
# stable compiler accept them, so no second toolchain is needed.
FUZZ_ENV = RUSTC_BOOTSTRAP=1

BENCH_ARGS ?=

.PHONY: all build run-all demo-revoke inspect test test-deps lint fmt clean-certs clean fuzz fuzz-build bench

all: build

build:
	$(CARGO) build --workspace --bins

run-all: build
	CERTS=$(CERTS) CA_LISTEN=$(CA_LISTEN) SERVER_LISTEN=$(SERVER_LISTEN) \
	SERVER_NAME=$(SERVER_NAME) CLIENT_NAME=$(CLIENT_NAME) REQUEST=$(REQUEST) \
	bash scripts/run-all.sh

# The whole flow, then the server's certificate is revoked and the client
# must refuse the server with the reason.
demo-revoke: build
	CERTS=$(CERTS) CA_LISTEN=$(CA_LISTEN) SERVER_LISTEN=$(SERVER_LISTEN) \
	SERVER_NAME=$(SERVER_NAME) CLIENT_NAME=$(CLIENT_NAME) REQUEST=$(REQUEST) \
	REVOKE=keyCompromise bash scripts/run-all.sh

# Who signed what, and why it is trusted: every certificate, key and CRL
# in $(CERTS), one line each (details of one file: pki-ca inspect FILE).
inspect:
	$(CARGO) run -q --bin pki-ca -- --dir $(CERTS) inspect

# The end-to-end tests run the binaries, so they are built first. The
# ACME interoperability tests drive certbot (Debian's package), installed
# here when it is missing.
test: build test-deps
	$(CARGO) test --workspace

# The programs the tests run besides ours, from Debian's packages:
# openssl, certbot, and PostgreSQL's initdb and postgres (Debian keeps
# them in /usr/lib/postgresql/<version>/bin; the tests start their own
# server, so none needs to be running).
TEST_PACKAGES = openssl certbot
test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (the tests run them)"; \
		if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
		else echo "make test needs:$$missing (sudo apt-get install$$missing)"; exit 1; fi; \
	fi

# The criterion micro-benchmarks (the session ceiling is computed from
# them), then every end-to-end figure beside a baseline from the same run,
# in alternating rounds. Writes bench/results/latest.{md,json} and
# scaling.svg. The memory figure holds 10,000 connections, hence the
# raised file limit.
bench:
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p pki-bench --bench hot_paths -- --quick
	ulimit -n $$(ulimit -Hn) && ./target/release/pki-bench $(BENCH_ARGS)

# Each libFuzzer target for FUZZ_SECONDS (installs cargo-fuzz if missing).
fuzz: fuzz-build
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		$(FUZZ_ENV) $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

fuzz-build:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && $(FUZZ_ENV) $(CARGO) fuzz build

# Formatting, clippy, no declared-but-unused dependency (cargo-machete,
# installed on first use), and docs whose links and file paths resolve.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	@command -v cargo-machete >/dev/null 2>&1 || $(CARGO) install cargo-machete --locked
	cargo machete
	python3 scripts/check-docs.py

fmt:
	$(CARGO) fmt --all

clean-certs:
	find $(CERTS) -mindepth 1 ! -name README.md -delete
	rm -rf $(CERTS)-root

clean: clean-certs
	$(CARGO) clean
