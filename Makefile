# The two commands the README opens with, and the rest of the developer loop.
#   make run    install what is missing, build, and run the demo (scripts/demo)
#   make test   install what is missing, build, and pass the whole test suite
#   make bench  build and run the benchmarks in bench/ (see bench/README.md)
#   make asan   the test suite under AddressSanitizer + UBSan
#   make fuzz   every libFuzzer target for FUZZ_SECONDS (default 60) each (clang; scripts/fuzz)
PRESET ?= release
BUILD_DIR := build/$(PRESET)

.PHONY: all bootstrap build run test bench asan fuzz clean format

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

# Not through bootstrap, which installs the clang it needs too: the fuzz preset builds only the
# fuzz targets and the libraries they link.
FUZZ_SECONDS ?= 60
fuzz:
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz --target airlock_fuzzers
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz build/fuzz

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf build
