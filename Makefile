# Two commands do all setup: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export MPLBACKEND := Agg

.PHONY: demo test test-fast check-assignments lessons gpu-standin clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e '.[dev,lessons]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

demo: $(VENV)/.base
	$(PY) -m minift.cli demo --overwrite

# the course's own tree has its oracles and mutants (as is_course_tree reads it); a student tree has neither,
# so there `make test` is pytest alone and the coursework check is not run
COURSE := $(and $(wildcard tests/oracles.py),$(wildcard minift/assignments/mutants.py))

test: $(VENV)/.dev
	$(PY) -m pytest
ifneq ($(COURSE),)
	$(PY) -m minift.cli assignments check --no-mutants
endif

# the full coursework check: also every task's mutants on two hypothesis profiles, and each task stripped on
# its own to prove the declared dependencies (about 16 minutes on 2 cores)
ifneq ($(COURSE),)
check-assignments: $(VENV)/.dev
	$(PY) -m minift.cli assignments check --isolation
else
check-assignments:
	@echo "check-assignments is the course's check of its own solutions and mutants; this is a student tree:" \
	  "see HANDOUT.md (minift assignments list, minift assignments test TASK_ID)" >&2; exit 2
endif

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not lessons"

lessons: $(VENV)/.dev
	$(PY) -m pytest -m lessons

# without a GPU: every lesson and the CLI's runs with tests/strict_cupy.py standing in for CuPy (about 8 minutes)
gpu-standin: $(VENV)/.dev
	MINIFT_STANDIN_LESSONS=all $(PY) -m pytest tests/test_host_device.py

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
