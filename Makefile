# Two commands on a fresh machine: `make run` (demo server) and `make test` (the whole suite).
# Both create .venv themselves and reinstall only when a requirements file has changed.
# Extra pytest arguments: make test ARGS="-m browser -x"

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -q
ARGS   ?=
DEV_ENV := DEBUG=true OTP_EXPOSE_IN_RESPONSE=true
ENV_FILE ?= .env

.PHONY: run test install install-dev lint fmt migrate demo-data schema fuzz browser bench mutate mutate-pg worker beat

run: install $(ENV_FILE) migrate demo-data
	$(DEV_ENV) $(PY) manage.py runserver 127.0.0.1:8000

test: install-dev
	$(VENV)/bin/pytest $(ARGS)

# The task queue (README, "Task queue"): workers and the scheduler, against CELERY_BROKER_URL
# (Redis or RabbitMQ). Without a broker there is nothing to start: tasks run inside `make run`.
# A thread pool: each of WORKER_CONCURRENCY threads mostly waits on an operator (README says why).
WORKER_CONCURRENCY ?= 64
NEED_BROKER = @test -n "$$CELERY_BROKER_URL" || { echo "Set CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/1): without a broker, tasks run inside the web process and there is no worker to start."; exit 2; }

worker: install
	$(NEED_BROKER)
	$(DEV_ENV) $(PY) -m celery -A config worker --pool threads --concurrency $(WORKER_CONCURRENCY) --loglevel INFO

# One scheduler per deployment is enough; a second one only repeats work that is safe to repeat.
beat: install
	$(NEED_BROKER)
	$(DEV_ENV) $(PY) -m celery -A config beat --loglevel INFO --schedule $(VENV)/celerybeat-schedule

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt requirements-bench.txt | $(PY)
	$(PIP) -r requirements-dev.txt
	touch $@ $(VENV)/.installed $(VENV)/.installed-bench

# The checkout's development settings, read by config/settings.py: after `make run`, every
# `manage.py <command>` (README, Operations) works here without DEBUG in the environment.
$(ENV_FILE):
	printf '# Written by make run: this checkout runs with development settings (git-ignored).\nDEBUG=true\nOTP_EXPOSE_IN_RESPONSE=true\n' > $@

migrate: install
	$(DEV_ENV) $(PY) manage.py migrate --noinput

# Idempotent: a second `make run` creates nothing and moves no money.
demo-data: install
	$(DEV_ENV) $(PY) manage.py setup_demo_data
	$(DEV_ENV) $(PY) manage.py populate_plans

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

schema: install
	$(DEV_ENV) $(PY) manage.py generate_swagger -f json -o swagger-ci.json --overwrite

# One suite at a time. fuzz needs PostgreSQL: DATABASE_URL=postgres://... make fuzz FUZZ_MAX_EXAMPLES=200
fuzz: install-dev
	$(if $(FUZZ_MAX_EXAMPLES),FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES)) $(VENV)/bin/pytest -m fuzz $(ARGS)

browser: install-dev
	$(VENV)/bin/pytest -m browser $(ARGS)

# The benchmark (bench/README.md): a fresh PostgreSQL database (BENCH_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/recharge_bench), gunicorn, a load generator and pgbench.
# About 15 minutes. A quick look: make bench BENCH_ARGS="--users 1000 --journal 50000 --duration 3"
BENCH_ARGS ?=
bench: $(VENV)/.installed-bench
	$(PY) bench/run.py $(BENCH_ARGS)

$(VENV)/.installed-bench: requirements.txt requirements-bench.txt | $(PY)
	$(PIP) -r requirements-bench.txt
	touch $@

# Mutation testing of the money code (docs/mutation.md), not part of CI: one module's mutants per
# run, from a fresh mutants/ directory, on SQLite (each mutant's tests get their own in-memory
# database). MUTATE = wallet.services (default), core.idempotency, accounts.otp, purchases.services.
# Then: .venv/bin/mutmut results (survivors), .venv/bin/mutmut show <name> (a survivor's diff).
MUTATE ?= wallet.services
MUTATE_CHILDREN ?= 2
mutate: install-dev
	rm -rf mutants
	@start=$$(date +%s); \
	env -u DATABASE_URL -u REDIS_URL -u CI $(VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN) "$(MUTATE).*"; \
	status=$$?; echo "mutate $(MUTATE): $$(( $$(date +%s) - start )) s"; exit $$status

# Then the mutants no test reaches on SQLite (the ledger's PostgreSQL-only statements), judged on
# PostgreSQL in the same mutants/ (MUTATE_DATABASE_URL, default the local server).
mutate-pg: install-dev
	$(VENV)/bin/python scripts/mutate_on_postgres.py
