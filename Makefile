# A thin layer over CMake. The two commands of the README:
#   make serve   install what is missing, build, serve examples/helloworld on 127.0.0.1:9090
#                (with a private PostgreSQL and redis-server for its /time and /visits)
#   make test    install what is missing, build, run every test (plain and ASan+UBSan builds,
#                and the fuzz targets briefly over their corpus)
#   make serve-thrift  build, serve examples/thrift (a Thrift service in Lua) on 127.0.0.1:9090
#   make fuzz    build the fuzz targets and run each for FUZZ_SECONDS (docs/building.md)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build serve serve-thrift test test-plain test-asan test-fuzz asan fuzz-build fuzz install bench clean

all: build

deps:
	@bash scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

serve: build
	BUILD=$(BUILD) bash scripts/serve-example

serve-thrift: build
	cd examples/thrift && ../../$(BUILD)/bin/baseplate-serve --debug greeter.ini

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBP_SANITIZE=ON $(CMAKE_FLAGS)

asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# The fuzz targets, in a tree of their own built with clang (BP_FUZZ).
$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBP_FUZZ=ON \
	  -DBP_BUILD_TESTS=OFF -DBP_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)

fuzz-build: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers

# Each target replays its corpus and fuzzes a few seconds (ctest label fuzz).
test-fuzz: fuzz-build
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j $(JOBS) -L fuzz

# Each target for FUZZ_SECONDS; new inputs go to $(FUZZ_BUILD)/fuzz/runs/TARGET/corpus
# (not into tests/fuzz/corpus), crashes next to it. FUZZ_TARGETS="http ini" picks some.
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz-$$t: $(FUZZ_SECONDS) s"; \
	  bash tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz/fuzz-$$t $(FUZZ_SECONDS) $(FUZZ_BUILD)/fuzz/runs || exit 1; \
	done

test: test-plain test-asan test-fuzz

install: build
	cmake --install $(BUILD)

bench: build
	@bash scripts/install-deps --bench
	bash bench/http-hello

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
