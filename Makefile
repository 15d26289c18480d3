# A thin layer over CMake. The two commands of the README:
#   make serve   install what is missing, build, serve examples/helloworld on 127.0.0.1:9090
#                (with a private PostgreSQL and redis-server for its /time and /visits)
#   make test    install what is missing, build, run every test (plain and ASan+UBSan builds)
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build serve test test-plain test-asan asan install bench clean

all: build

deps:
	@bash scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

serve: build
	BUILD=$(BUILD) bash scripts/serve-example

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DBP_SANITIZE=ON $(CMAKE_FLAGS)

asan: deps $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-plain: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

test: test-plain test-asan

install: build
	cmake --install $(BUILD)

bench: build
	@bash scripts/install-deps --bench
	bash bench/http-hello

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
