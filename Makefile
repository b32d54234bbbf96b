# The two commands the README opens with, and the rest of the developer loop.
#   make run    install what is missing, build, and run the demo (scripts/demo)
#   make test   install what is missing, build, and pass the whole test suite
#   make bench  build and run the benchmarks in bench/ (see bench/README.md)
#   make asan   the test suite under AddressSanitizer + UBSan
PRESET ?= release
BUILD_DIR := build/$(PRESET)

.PHONY: all bootstrap build run test bench asan clean format

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@cmake --preset $(PRESET) >/dev/null
	@cmake --build --preset $(PRESET)

run: build
	@scripts/demo $(BUILD_DIR)

test: build
	@ctest --preset $(PRESET)

bench: build
	@bench/run $(BUILD_DIR)

asan:
	@$(MAKE) --no-print-directory test PRESET=asan

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf build
