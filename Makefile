# plan-lite: two commands do all set-up.  `make book` (main job) and `make test`.
# TORCH_SPEC: which torch to install.  Default: a machine whose pip is capped at torch<=2.14.1 and carries a local
# CPU wheel (/etc/xdg/pip constraint, e.g. our dev/CI machines) gets torch==2.13.0 (CPU); elsewhere the broad
# range from pyproject.  Override: make test TORCH_SPEC='torch==2.5.1'
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= $(shell if [ -f /etc/xdg/pip/constraints.txt ] && ls /opt/wheels/torch-2.13.0* >/dev/null 2>&1; then echo 'torch==2.13.0'; else echo 'torch>=2.3'; fi)
DATA ?= data/synthetic
BOOK_CASES ?= 24

.PHONY: venv lock test lint book data demo lab browser-deps mathjax widgets

# Exact versions from the lock file (make lock); torch from TORCH_SPEC; plan-lite itself without dependencies.
LOCK := requirements-lock.txt
PIP_VERSION ?= 26.3
UV_SPEC ?= uv==0.13.9
MATHJAX_VERSION ?= 3.2.2
# Widget JavaScript for the static book (make widgets); ANYWIDGET_JS_VERSION matches the anywidget in the lock.
REQUIREJS_VERSION ?= 2.3.8
HTML_MANAGER_VERSION ?= 1.0.15
ANYWIDGET_JS_VERSION ?= 0.11.0

$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "pip==$(PIP_VERSION)"
	$(PIP) install -q -r $(LOCK) "$(TORCH_SPEC)"
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (plan-lite)" >/dev/null
	touch $@

# Regenerate the lock after changing the dependencies in pyproject.toml (or to take newer releases on purpose:
# make lock LOCK_ARGS=--upgrade); then make test and commit pyproject.toml and requirements-lock.txt together.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(UV_SPEC)"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) scripts/lock.py $(LOCK_ARGS)

venv: $(VENV)/.installed

# Headless Chromium for the browser test of the built book (Debian package; skipped with a warning elsewhere).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: could not install chromium (the browser test of the book will be skipped)"

# MathJax 3 served locally so that the book renders math offline: only the TeX->CHTML bundle and its fonts (1.8 MB).
mathjax: book/_static/mathjax/es5/tex-chtml-full.js

book/_static/mathjax/es5/tex-chtml-full.js:
	@mkdir -p build/npm
	cd build/npm && (test -f package.json || npm init -y >/dev/null) && npm install --silent --no-audit --no-fund mathjax@$(MATHJAX_VERSION)
	rm -rf book/_static/mathjax && mkdir -p book/_static/mathjax/es5/output/chtml
	cp build/npm/node_modules/mathjax/LICENSE book/_static/mathjax/
	cp -r build/npm/node_modules/mathjax/es5/output/chtml/fonts book/_static/mathjax/es5/output/chtml/
	cp build/npm/node_modules/mathjax/es5/tex-chtml-full.js $@

# Jupyter widgets rendered offline in the static book (book/_config.yml nb_ipywidgets_js): require.js, the
# @jupyter-widgets/html-manager bundle and anywidget's AMD module (ipyniivue's lesion browser), served from
# _static/widgets instead of a CDN. `npm pack` fetches each package alone (no dependency tree); about 4 MB.
WIDGETS_STAMP := book/_static/widgets/.vendored-$(REQUIREJS_VERSION)-$(HTML_MANAGER_VERSION)-$(ANYWIDGET_JS_VERSION)
widgets: $(WIDGETS_STAMP)

$(WIDGETS_STAMP):
	@rm -rf build/npm/widgets && mkdir -p build/npm/widgets/requirejs build/npm/widgets/html-manager build/npm/widgets/anywidget
	cd build/npm/widgets && npm pack --silent requirejs@$(REQUIREJS_VERSION) \
	  @jupyter-widgets/html-manager@$(HTML_MANAGER_VERSION) anywidget@$(ANYWIDGET_JS_VERSION) >/dev/null
	tar xzf build/npm/widgets/requirejs-$(REQUIREJS_VERSION).tgz -C build/npm/widgets/requirejs --strip-components=1
	tar xzf build/npm/widgets/jupyter-widgets-html-manager-$(HTML_MANAGER_VERSION).tgz -C build/npm/widgets/html-manager \
	  --strip-components=1
	tar xzf build/npm/widgets/anywidget-$(ANYWIDGET_JS_VERSION).tgz -C build/npm/widgets/anywidget --strip-components=1
	rm -rf book/_static/widgets && mkdir -p book/_static/widgets/anywidget
	cp build/npm/widgets/requirejs/require.js book/_static/widgets/
	cp build/npm/widgets/html-manager/dist/embed-amd.js book/_static/widgets/
	cp build/npm/widgets/html-manager/dist/embed.js.LICENSE.txt book/_static/widgets/html-manager.LICENSE.txt
	cp build/npm/widgets/anywidget/dist/index.js build/npm/widgets/anywidget/LICENSE book/_static/widgets/anywidget/
	touch $@

lint: venv
	$(VENV)/bin/ruff check plan_lite tests benchmarks scripts book/_ext

# The tests check the book a newcomer builds: `make book` first, then the whole suite (tests/test_book.py).
test: venv lint browser-deps mathjax widgets book
	$(VENV)/bin/pytest -q --durations=15 tests

CPU_DATA ?= data/synthetic_cpu

data: $(DATA)/dataset.json $(CPU_DATA)/dataset.json

$(DATA)/dataset.json: | $(VENV)/.installed
	$(VENV)/bin/plan-lite synth $(DATA) --cases $(BOOK_CASES) --seed 0 --overwrite

# The cohort of lessons 5-7 (plan_lite.config.CPU_SYNTH: the realistic generator at the CPU recipe's grid).
$(CPU_DATA)/dataset.json: | $(VENV)/.installed
	$(VENV)/bin/plan-lite synth $(CPU_DATA) --cases 60 --seed 0 --overwrite --spacing 5 4 4 --shape 24 96 96

demo: data
	$(VENV)/bin/plan-lite demo $(DATA) --out build/demo

# Executes notebooks/0*.ipynb with papermill into book/notebooks/, writes book/generated/, then a strict
# jupyter-book build into book/_build/html (scripts/build_book.py; times in book/_build/*.json).
book: venv data demo mathjax widgets
	$(PY) scripts/build_book.py --data $(DATA) --cases $(BOOK_CASES) --cpu-data $(CPU_DATA)

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks
