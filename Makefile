# `make demo`: run the server with the demo city on embedded SQLite (http://127.0.0.1:8080/fhir)
# `make test`: lint, layering check and the whole test suite (SQLite and PostgreSQL)
.PHONY: demo test lint bootstrap bench

HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	.venv/bin/ehr demo
	.venv/bin/ehr serve --host $(HOST) --port $(PORT)

lint: bootstrap
	.venv/bin/ruff check ehr fhir_api appointments card_reader tests bench
	.venv/bin/lint-imports

test: lint
	.venv/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)
