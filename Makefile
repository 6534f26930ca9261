# Developer shortcuts. CI runs `bash .ci/run` (= scripts/test.sh), not this file.
#
#   make test         every test: Rust core (incl. the hostile corpus) and the Python suite
#   make fuzz         build the cargo-fuzz targets, seed them from the hostile corpus, and run
#                     each for FUZZ_SECONDS (default 60); fails if any target found a crash
#   make fuzz-seeds   only (re)write the seed corpora: the hostile corpus (tests/common/hostile.rs),
#                     the differential generator's cases (tests/archive_gen.py) and, for read_python,
#                     the Python files of the rules' fixtures
#
# cargo-fuzz passes nightly-only flags to rustc (-Z sanitizer, coverage instrumentation). There is
# no nightly toolchain on the project's machines, so it runs on stable with RUSTC_BOOTSTRAP=1, the
# usual workaround (set FUZZ_CARGO="cargo +nightly fuzz" to use a nightly toolchain instead).
# Sanitizer: none by default (the walker is safe Rust, apart from libdeflate for small zip members;
# what is hunted is panics, aborts, hangs and memory blow-ups, which libFuzzer reports without one:
# -timeout, -rss_limit_mb).

export CARGO_TARGET_DIR ?= $(HOME)/.cache/dragonfly-hybrid/target
FUZZ_DIR := rust/core/fuzz
FUZZ_TARGET_DIR ?= $(HOME)/.cache/dragonfly-hybrid/fuzz-target
FUZZ_SECONDS ?= 60
FUZZ_SANITIZER ?= none
FUZZ_TARGETS ?= walk_tar walk_gzip walk_bzip2 walk_xz walk_lzma walk_lzip walk_zstd walk_zip scan_any scoring tar_headers read_python
FUZZ_CARGO ?= RUSTC_BOOTSTRAP=1 cargo fuzz
FUZZ_BUILD_FLAGS = -s $(FUZZ_SANITIZER) --codegen-units 16 --target-dir $(FUZZ_TARGET_DIR)
# Per input: 10 s is a hang, 2 GB a memory blow-up (the targets' limits allow far less).
FUZZ_ARGS ?= -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1
CORPUS := $(CURDIR)/$(FUZZ_DIR)/corpus
LOGS := $(FUZZ_TARGET_DIR)/logs

.PHONY: test fuzz fuzz-build fuzz-seeds

test:
	bash scripts/test.sh

fuzz-build:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd $(FUZZ_DIR) && $(FUZZ_CARGO) build $(FUZZ_BUILD_FLAGS)

fuzz-seeds:
	DRAGONFLY_FUZZ_SEEDS=$(CORPUS) cargo test --release -p dragonfly-core --test hostile -- \
		--ignored --exact write_fuzz_seeds
	python scripts/write-fuzz-seeds.py $(CORPUS)
	mkdir -p $(CORPUS)/tar_headers && cp $(CORPUS)/walk_tar/* $(CORPUS)/tar_headers/
	mkdir -p $(CORPUS)/read_python && for f in $$(find tests/fixtures/rules -name '*.py' -o -name '*.pth'); do \
		cp "$$f" $(CORPUS)/read_python/fixture-$$(sha256sum "$$f" | cut -c1-16); done

fuzz: fuzz-build fuzz-seeds
	@mkdir -p $(LOGS); failed=""; \
	for target in $(FUZZ_TARGETS); do \
		mkdir -p $(CORPUS)/$$target; \
		echo "== $$target: $(FUZZ_SECONDS) s"; \
		if (cd $(FUZZ_DIR) && $(FUZZ_CARGO) run $(FUZZ_BUILD_FLAGS) $$target $(CORPUS)/$$target \
			-- $(FUZZ_ARGS)) > $(LOGS)/$$target.log 2>&1; then :; else failed="$$failed $$target"; fi; \
		grep -E "^Done [0-9]+ runs|^stat::number_of_executed_units" $(LOGS)/$$target.log | tail -1; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "crashes in:$$failed (see $(LOGS)/<target>.log and $(FUZZ_DIR)/artifacts/)"; exit 1; \
	fi; \
	echo "no crash; logs in $(LOGS)"
