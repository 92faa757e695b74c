# Two targets a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
# `make peers` builds .peer-venv, the PyTorch / torchvision environment the benchmarks compare with.
PYTHON ?= python3
VENV ?= .venv
PEER_VENV ?= .peer-venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench peers clean

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) bin/train_supcon.py --preset=supcon_digits_resnet20 --model_dir=runs/demo

# One test process per core (pytest-xdist; tests/conftest.py puts the long ones first).
test: $(STAMP)
	$(PY) -m pytest -n auto --dist worksteal tests

bench: $(STAMP)
	$(PY) benchmarks/loss.py

peers:
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 scipy tensorboard

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache runs/demo
