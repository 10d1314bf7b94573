# The front door. All build logic lives in CMakeLists.txt.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# Where make install puts things; empty: the build's CMAKE_INSTALL_PREFIX
# (/usr/local unless CMAKE_FLAGS said otherwise when the build was made).
PREFIX ?=

.PHONY: all check demo bench install asan fuzz format clean

all: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

check: all
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

demo: all
	sh examples/demo.sh $(BUILD)

bench: all
	sh bench/run.sh $(BUILD)

# Builds only what is installed (library, command), not the tests; the prefix
# is given at install time, so it holds whenever the build was configured.
install: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS) --target mpconn_install_parts
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The test suite under AddressSanitizer and UBSan (what CI runs second).
asan:
	$(MAKE) check BUILD=build-asan CMAKE_FLAGS="-DMPCONN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# libFuzzer targets, a short run each (clang).
fuzz:
	$(MAKE) all BUILD=build-fuzz CMAKE_FLAGS="-DCMAKE_C_COMPILER=clang -DMPCONN_FUZZ=ON -DMPCONN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"
	ctest --test-dir build-fuzz -L fuzz --output-on-failure

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz build-clang
