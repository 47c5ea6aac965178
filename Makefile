# The two commands a new user needs: `make run` and `make test`. Everything else is for development.
# CPython 3.11.2 up to 3.13: the first supported one on PATH, or PYTHON=/path/to/python3.x.
PYTHON ?= $(shell bash scripts/make_venv.sh --find-python)
VENV ?= .venv
BIN := $(VENV)/bin
# Changes with the requirements, the install scripts and the Python chosen: any of them reinstalls.
STAMP := $(VENV)/.installed-$(shell { cat requirements/*.txt scripts/install_python_deps.sh scripts/make_venv.sh; $(PYTHON) -c 'import sys; print(sys.base_prefix, sys.version)' 2>&1; } | cksum | cut -d' ' -f1)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install run test test-fast lint format typecheck check deploy-check worker constraints clean-data

help:
	@echo "make run        install, migrate, create an admin, load the demo, serve http://127.0.0.1:8000 with a worker"
	@echo "make test       run the whole test suite"
	@echo "make lint       ruff check and format check;  make typecheck  mypy"
	@echo "make check      lint, typecheck, migrations check and deploy check"
	@echo "make worker     run a Celery worker on its own"
	@echo "make clean-data stop the embedded database and delete the data folder (var/)"

$(STAMP):
	@bash scripts/make_venv.sh $(VENV) $(PYTHON) $(STAMP) --dev

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy config knowledge chat mlmodels core

check: lint typecheck deploy-check
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

deploy-check: $(STAMP)
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))') \
	  DJANGO_ALLOWED_HOSTS=kb.example.org DJANGO_SECURE_SSL_REDIRECT=1 DJANGO_SECURE_HSTS_SECONDS=31536000 \
	  DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS=1 DJANGO_SECURE_HSTS_PRELOAD=1 \
	  DJANGO_SESSION_COOKIE_SECURE=1 DJANGO_CSRF_COOKIE_SECURE=1 \
	  $(BIN)/python manage.py check --deploy --fail-level WARNING

worker: $(STAMP)
	$(BIN)/python -m celery -A config worker --beat --loglevel INFO

constraints:
	bash scripts/update_constraints.sh $(PYTHON)

clean-data:
	-@test -x $(BIN)/python && DJANGO_DEBUG=1 $(BIN)/python manage.py stop_embedded_database
	rm -rf var
