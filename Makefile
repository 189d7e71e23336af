# Depot developer targets. `make run` and `make test` are the README's two commands.
.PHONY: run test lint fmt migrate bench cluster cluster-test build release clean

run:            ## Start Depot with no external services (SQLite file, in-process queue)
	cargo run --release --locked -p depot-api --bin depot -- serve

test:           ## Every test, on SQLite and on PostgreSQL + RabbitMQ
	bash scripts/test.sh

lint:           ## Formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

migrate:        ## Apply migrations to the configured database (DATABASE_URL or config)
	cargo run --locked -p depot-api --bin depot -- migrate up

bench:          ## Release build driven by wrk: requests/s and p50/p99 per endpoint vs /health/live,
                ## then lifecycle throughput embedded and on PostgreSQL + RabbitMQ
	bash scripts/bench.sh
	bash scripts/bench-scaled.sh

cluster:        ## The scaled topology without Docker: nginx, 2 API processes, 2 workers (PostgreSQL + RabbitMQ)
	CLUSTER_PROFILE=release CLUSTER_PORT=8080 bash scripts/cluster.sh run

cluster-test:   ## Lifecycle across that cluster; stops everything and checks nothing is left
	bash scripts/cluster.sh test

build:
	cargo build --workspace --locked

release:
	cargo build --release --locked -p depot-api --bin depot

clean:
	cargo clean
