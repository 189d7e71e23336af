# Depot developer targets. `make run` and `make test` are the README's two commands.
.PHONY: run test lint fmt fuzz coverage migrate bench cluster cluster-test build release clean docker-build docker-up docker-test docker-down docker-check docker-smoke docker-standins locust

run:            ## Start Depot with no external services (SQLite file, in-process queue)
	cargo run --release --locked -p depot-api --bin depot -- serve

test:           ## Every test, on SQLite and on PostgreSQL + RabbitMQ
	bash scripts/test.sh

lint:           ## Formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

fuzz:           ## Schemathesis (--checks all) against a temp Depot; FUZZ_SEED, FUZZ_MAX_EXAMPLES, FUZZ_SKIP_BUILD=1
	bash scripts/fuzz.sh

coverage:       ## Line coverage of the workspace's tests: target/coverage/html, summary printed
	bash scripts/coverage.sh

migrate:        ## Apply migrations to the configured database (DATABASE_URL or config)
	cargo run --locked -p depot-api --bin depot -- migrate up

bench:          ## Release build driven by wrk: requests/s and p50/p99 per endpoint vs /health/live,
                ## then lifecycle throughput embedded and on PostgreSQL + RabbitMQ, then artifacts vs nginx
	bash scripts/bench.sh
	bash scripts/bench-scaled.sh
	bash scripts/bench-artifacts.sh

cluster:        ## The scaled topology without Docker: nginx, 2 API processes, 2 workers (PostgreSQL + RabbitMQ)
	CLUSTER_PROFILE=release CLUSTER_PORT=8080 bash scripts/cluster.sh run

cluster-test:   ## Lifecycle across that cluster; stops everything and checks nothing is left
	bash scripts/cluster.sh test

docker-build:   ## The image (docker/Dockerfile), tagged depot:local
	bash scripts/docker.sh build

docker-up:      ## Compose: PostgreSQL, RabbitMQ, migrate, 2 API, 2 workers, nginx on :8080
	bash scripts/docker.sh up

docker-test:    ## The test suite inside compose, against its PostgreSQL and RabbitMQ
	bash scripts/docker.sh test

docker-down:
	bash scripts/docker.sh down

docker-smoke:   ## Image + compose stack on a real engine: lifecycle, keys, uid/no shell/read-only, health, teardown
	bash scripts/docker-smoke.sh

docker-standins: ## The local stand-in bases (Debian's packages) for an engine that reaches no registry
	bash scripts/docker-standins.sh

docker-check:   ## Without a Docker engine: hadolint, compose file parsed and cross-checked, digests pinned
	bash scripts/docker-check.sh

locust:         ## Locust headless against a running Depot (LOCUST_HOST, DEPOT_ADMIN_SECRET); reports in bench/reports/
	bash scripts/locust.sh

build:
	cargo build --workspace --locked

release:
	cargo build --release --locked -p depot-api --bin depot

clean:
	cargo clean
